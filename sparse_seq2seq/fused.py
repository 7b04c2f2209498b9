"""Fused kernels for large inputs: the same root finders as :mod:`thresholds`, written as
fixed-length Newton loops over rows and compiled with ``torch.compile`` (one pass over each
row per step, vectorised, no temporaries), plus fused backward passes.

They are used for float32/float64 tensors with at least ``min_numel`` elements on CPU or
CUDA; anything else goes to the eager code, and so does a call in which some row's mass
is not yet one (each kernel reports max |Σ p − 1| over rows; :func:`.backends.converged`).
``SPARSE_SEQ2SEQ_FUSED=0`` (or :func:`configure`) turns them off; if compilation fails (no
C++ compiler, say) they turn themselves off with a warning.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, Optional, Tuple

import torch

from .jacobians import alpha_gradient, jacobian_vector

_STATE = {"enabled": os.environ.get("SPARSE_SEQ2SEQ_FUSED", "1") != "0", "min_numel": 1 << 13}
_COMPILED: Dict[str, Callable] = {}
NEWTON_STEPS = 8


def configure(enabled: Optional[bool] = None, min_numel: Optional[int] = None) -> None:
    """Turn the fused path on/off and set the smallest input it is used for."""
    if enabled is not None:
        _STATE["enabled"] = bool(enabled)
    if min_numel is not None:
        _STATE["min_numel"] = int(min_numel)


def applies(X: torch.Tensor) -> bool:
    return (_STATE["enabled"] and X.numel() >= _STATE["min_numel"]
            and X.dtype in (torch.float32, torch.float64) and X.device.type in ("cpu", "cuda"))


def _compiled(name: str, fn: Callable) -> Callable:
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _COMPILED[name]


def run(name: str, fn: Callable, *args):
    """Call the compiled ``fn``; on a compilation error disable the fused path and return None."""
    try:
        return _compiled(name, fn)(*args)
    except Exception as err:  # compiler missing or unsupported platform
        warnings.warn(f"sparse_seq2seq: fused kernels disabled ({type(err).__name__}: {err}); "
                      "using the eager implementation")
        _STATE["enabled"] = False
        return None


def _shifted(X: torch.Tensor) -> torch.Tensor:
    top = X.amax(1, keepdim=True)
    return X - torch.where(torch.isneginf(top), torch.zeros_like(top), top)


# -- forward kernels ------------------------------------------------------------------------
def _residual(p: torch.Tensor) -> torch.Tensor:
    """max |Σ p − 1| over the rows that carry mass (all −inf rows carry none)."""
    total = p.sum(1, keepdim=True)
    return torch.where(total > 0, (total - 1).abs(), 0.0).amax()


def sparsemax_rows(X: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Newton from below (see thresholds.sparsemax_threshold); also max |Σ p − 1|."""
    Z = _shifted(X)
    tau = torch.full_like(Z[:, :1], -1.0)
    for _ in range(NEWTON_STEPS):
        support = Z > tau
        size = support.sum(1, keepdim=True).to(Z.dtype)
        total = torch.where(support, Z, 0.0).sum(1, keepdim=True)
        tau = torch.maximum((total - 1) / size.clamp_min(1), tau)
    p = (Z - tau).clamp_min(0)
    return p, _residual(p)


def entmax15_rows(X: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """1.5-entmax p_i = [1 + (z_i − τ)/2]² for z = x − max: Newton on (Σ p)^{1/2} from τ = 0
    (no transcendental function), then τ in closed form on the support (the quadratic of
    Peters et al. 2019, Alg. 2); also max |Σ p − 1|."""
    Z = _shifted(X)
    tau = torch.zeros_like(Z[:, :1])
    for _ in range(NEWTON_STEPS - 2):
        base = (1 + 0.5 * (Z - tau)).clamp_min(0)
        total = base.square().sum(1, keepdim=True)
        root = total.sqrt()
        step = 2 * (total - root) / base.sum(1, keepdim=True).clamp_min(1e-30)
        tau = tau + torch.where(total > 0, step, 0.0)
    # on the support, p_i = (z_i/2 − t)² with t = τ/2 − 1: solve Σ (z_i/2 − t)² = 1 exactly
    half = Z * 0.5
    t = tau * 0.5 - 1
    support = half > t
    size = support.sum(1, keepdim=True).to(Z.dtype).clamp_min(1)
    mean = torch.where(support, half, 0.0).sum(1, keepdim=True) / size
    spread = torch.where(support, (half - mean).square(), 0.0).sum(1, keepdim=True)
    delta = (1 - spread) / size
    exact = mean - delta.clamp_min(0).sqrt()
    tol = 4e3 * torch.finfo(Z.dtype).eps
    ok = (delta >= 0) & ((exact - t).abs() <= tol * (1 + t.abs()))
    t = torch.where(ok, exact, t)
    p = (half - t).clamp_min(0).square()
    return p, _residual(p)


def entmax_rows(X: torch.Tensor, am1: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """α-entmax for α − 1 = am1 ∈ (0, 1] per row: Newton on (Σ p)^{α−1} from τ = max
    (thresholds.entmax_threshold without the bracket), normalised; also max |Σ p − 1|."""
    tiny = torch.finfo(X.dtype).tiny
    Z = _shifted(X)
    tau = torch.zeros_like(Z[:, :1])
    for _ in range(NEWTON_STEPS - 2):
        base = (1 + am1 * (Z - tau)).clamp_min(0)
        p = torch.exp(torch.log(base) / am1)
        total = p.sum(1, keepdim=True)
        slope = (p / base.clamp_min(tiny)).sum(1, keepdim=True)
        log_total = torch.log(total.clamp_min(tiny))
        numer = torch.expm1(am1 * log_total) / am1 * torch.exp((1 - am1) * log_total)
        tau = tau + torch.where(slope > 0, numer / slope.clamp_min(tiny), 0.0)
    p = torch.exp(torch.log((1 + am1 * (Z - tau)).clamp_min(0)) / am1)
    return p / p.sum(1, keepdim=True).clamp_min(tiny), _residual(p)


# -- backward kernels -----------------------------------------------------------------------
def sparsemax_backward_rows(p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    support = p > 0
    size = support.sum(1, keepdim=True).clamp_min(1)
    mean = torch.where(support, grad, 0.0).sum(1, keepdim=True) / size
    return torch.where(support, grad - mean, 0.0)


def entmax15_backward_rows(p: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return jacobian_vector(p.sqrt(), grad, 1)


def entmax_backward_rows(p: torch.Tensor, grad: torch.Tensor, am1: torch.Tensor):
    """Jacobian-vector product in x and gᵀ∂p/∂α (see :mod:`.jacobians`)."""
    support = p > 0
    log_p = torch.log(torch.where(support, p, 1.0))
    slope = torch.where(support, torch.exp((1 - am1) * log_p), 0.0)  # p^{2−α}
    return jacobian_vector(slope, grad, 1), alpha_gradient(p, log_p, slope, grad, am1, 1)
