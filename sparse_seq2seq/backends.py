"""One contract for the code that computes the sparse mappings: the backends, tried in order.

Every mapping is computed on (n, d) rows (:mod:`.layout`) by the first backend that applies
to the rows and answers:

1. ``triton`` — the GPU kernels of :mod:`sparse_seq2seq.kernels.rowwise` (CUDA tensors, when
   Triton is installed and the module imports; otherwise skipped without a word);
2. ``native`` — the C++ CPU kernels of :mod:`.native` (CPU float32/float64);
3. ``fused`` — the ``torch.compile`` kernels of :mod:`.fused` (large float32/float64 inputs);
4. ``eager`` — tensor code over :mod:`.thresholds` (anything; always answers).

A backend is ``Backend(name, applies, forward, backward)``:

* ``applies(rows) -> bool`` — a cheap test of device, dtype, size and availability;
* ``forward(kind, rows, alpha, n_iter, ensure_sum_one) -> p_rows or None``;
* ``backward(kind, p_rows, grad_rows, alpha, want_alpha) -> (grad_x_rows, grad_alpha or None)
  or None``;

with ``kind`` one of :data:`KINDS` and ``alpha`` None (sparsemax, 1.5-entmax), a float or an
(n, 1) column of α (α-entmax). ``None`` is the one way of saying "not here" (the α is outside
the kernel's range, the kernel is not built, it did not converge): the next backend is tried.
Kernels that iterate a fixed number of times report the largest |Σ p − 1| over rows before
normalisation, and their answer stands when :func:`converged` holds (one rule for all).
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch

from . import fused, native
from .jacobians import alpha_gradient, jacobian_vector
from .layout import Alpha, alpha_rows, from_rows, to_rows
from .thresholds import entmax15_threshold, entmax_threshold, qexp_probs, sparsemax_threshold

KINDS = ("sparsemax", "entmax15", "entmax")
CONVERGED_ULPS = 100
"""A kernel's answer stands when every row's mass is within 100 ε of one (ε of the dtype)."""

GradRows = Tuple[torch.Tensor, Optional[torch.Tensor]]


class Backend(NamedTuple):
    name: str
    applies: Callable[[torch.Tensor], bool]
    forward: Callable[[str, torch.Tensor, Optional[Alpha], int, bool], Optional[torch.Tensor]]
    backward: Callable[[str, torch.Tensor, torch.Tensor, Optional[Alpha], bool], Optional[GradRows]]


def converged(residual: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the largest |Σ p − 1| over rows, ``residual``, is small enough (NaN is not)."""
    return bool(residual <= CONVERGED_ULPS * torch.finfo(dtype).eps)


def _alpha_within(alpha: Alpha, low: float, high: float, strict_low: bool = True) -> bool:
    """Whether every α lies in (low, high] (or [low, high] when ``strict_low`` is False)."""
    if isinstance(alpha, torch.Tensor):
        lo, hi = torch.aminmax(alpha)
        lo, hi = float(lo), float(hi)
    else:
        lo = hi = alpha
    return (lo > low if strict_low else lo >= low) and hi <= high


# -- triton (GPU) ------------------------------------------------------------------------
_TRITON = {"module": None, "tried": False}


def _triton_module():
    """sparse_seq2seq.kernels.rowwise, or None when Triton or the module is missing."""
    if not _TRITON["tried"]:
        _TRITON["tried"] = True
        try:
            if importlib.util.find_spec("triton") is not None:
                _TRITON["module"] = importlib.import_module("sparse_seq2seq.kernels.rowwise")
        except Exception:  # not written yet, or Triton unusable here: the next backend runs
            _TRITON["module"] = None
    return _TRITON["module"]


def _triton_applies(rows: torch.Tensor) -> bool:
    if not rows.is_cuda:
        return False
    module = _triton_module()
    return module is not None and bool(module.applies(rows))


def _triton_alpha(alpha: Alpha, rows: torch.Tensor) -> torch.Tensor:
    if isinstance(alpha, torch.Tensor):
        return alpha.reshape(-1).to(torch.float32).expand(rows.shape[0]).contiguous()
    return torch.full((rows.shape[0],), float(alpha), dtype=torch.float32, device=rows.device)


def _triton_forward(kind, rows, alpha, n_iter, ensure_sum_one):
    module = _triton_module()
    if kind != "entmax":
        return getattr(module, f"{kind}_fwd")(rows)
    if not ensure_sum_one or not _alpha_within(alpha, 1.0, 2.0):
        return None
    return module.entmax_alpha_fwd(rows, _triton_alpha(alpha, rows))


def _triton_backward(kind, p, grad, alpha, want_alpha):
    module = _triton_module()
    if kind != "entmax":
        return getattr(module, f"{kind}_bwd")(p, grad), None
    if not _alpha_within(alpha, 1.0, 2.0):
        return None
    grad_x, grad_alpha = module.entmax_alpha_bwd(p, grad, _triton_alpha(alpha, p))
    return grad_x, (grad_alpha.view(-1, 1).to(p.dtype) if want_alpha else None)


# -- fused (torch.compile) ---------------------------------------------------------------
_FUSED_FORWARD = {"sparsemax": fused.sparsemax_rows, "entmax15": fused.entmax15_rows}
_FUSED_BACKWARD = {"sparsemax": fused.sparsemax_backward_rows,
                   "entmax15": fused.entmax15_backward_rows}


def _fused_am1(alpha: Alpha, rows: torch.Tensor) -> Optional[torch.Tensor]:
    """α − 1 as an (n, 1) column, or None outside [1.001, 2] (where the fixed Newton start and
    the closed forms lose precision)."""
    if not _alpha_within(alpha, 1.001, 2.0, strict_low=False):
        return None
    if isinstance(alpha, torch.Tensor):
        return (alpha - 1).expand(rows.shape[0], 1)
    return torch.full((rows.shape[0], 1), alpha - 1.0, dtype=rows.dtype, device=rows.device)


def _fused_forward(kind, rows, alpha, n_iter, ensure_sum_one):
    if kind == "entmax":
        am1 = _fused_am1(alpha, rows)
        if am1 is None or not ensure_sum_one:
            return None
        out = fused.run("entmax", fused.entmax_rows, rows, am1)
    else:
        out = fused.run(kind, _FUSED_FORWARD[kind], rows)
    return out[0] if out is not None and converged(out[1], rows.dtype) else None


def _fused_backward(kind, p, grad, alpha, want_alpha):
    if kind != "entmax":
        out = fused.run(f"{kind}_bwd", _FUSED_BACKWARD[kind], p, grad)
        return None if out is None else (out, None)
    am1 = _fused_am1(alpha, p)
    out = None if am1 is None else fused.run("entmax_bwd", fused.entmax_backward_rows, p, grad, am1)
    return None if out is None else (out[0], out[1] if want_alpha else None)


# -- eager (reference) -------------------------------------------------------------------
def _shift(Z: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Subtract the row max; rows that are all −inf become zeros and are reported."""
    top = Z.amax(1, keepdim=True)
    dead = torch.isneginf(top)
    if bool(dead.any()):
        return torch.where(dead, 0.0, Z - torch.where(dead, 0.0, top)), dead
    return Z - top, None


def _eager_forward(kind, rows, alpha, n_iter, ensure_sum_one):
    Z, dead = _shift(rows)
    if kind == "sparsemax":
        tau = sparsemax_threshold(Z, 1)
        p = torch.where(Z > tau, Z - tau, 0.0)
    elif kind == "entmax15":
        Z = Z.mul_(0.5)
        p = (Z - entmax15_threshold(Z, 1)).clamp_(min=0).square_()
    else:
        tau = entmax_threshold(Z, alpha, 1, n_iter)
        p = qexp_probs(Z, tau, alpha - 1)
        if ensure_sum_one:
            p = p.div_(p.sum(1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny))
    return p if dead is None else p.masked_fill_(dead, 0.0)


def _eager_backward(kind, p, grad, alpha, want_alpha):
    if kind == "sparsemax":
        support = p > 0
        size = support.sum(1, keepdim=True).clamp_min(1)
        masked = torch.where(support, grad, 0.0)
        mean = masked.sum(1, keepdim=True) / size
        return torch.where(support, masked - mean, 0.0), None
    if kind == "entmax15":
        return jacobian_vector(p.sqrt(), grad, 1), None
    am1 = alpha - 1
    support = p > 0
    log_p = torch.where(support, p, 1.0).log_()
    slope = torch.where(support, torch.exp((1 - am1) * log_p), 0.0)  # p^{2−α}
    grad_alpha = alpha_gradient(p, log_p, slope, grad, am1, 1) if want_alpha else None
    return jacobian_vector(slope, grad, 1), grad_alpha


# -- the order and the dispatch ----------------------------------------------------------
TRITON = Backend("triton", _triton_applies, _triton_forward, _triton_backward)
NATIVE = Backend("native", native.applies, native.rows_forward, native.rows_backward)
FUSED = Backend("fused", fused.applies, _fused_forward, _fused_backward)
EAGER = Backend("eager", lambda rows: True, _eager_forward, _eager_backward)
BACKENDS: Tuple[Backend, ...] = (TRITON, NATIVE, FUSED, EAGER)


def select(rows: torch.Tensor, backends: Sequence[Backend] = BACKENDS) -> List[Backend]:
    """The backends that apply to ``rows``, in the order they are tried."""
    return [backend for backend in backends if backend.applies(rows)]


def forward(kind: str, X: torch.Tensor, dim: int, alpha: Optional[Alpha] = None, n_iter: int = 50,
            ensure_sum_one: bool = True, backends: Sequence[Backend] = BACKENDS) -> torch.Tensor:
    """p = π(X) along ``dim`` from the first backend that answers (see the module docstring)."""
    rows = to_rows(X, dim)
    a = None if alpha is None else alpha_rows(alpha, X, dim)
    for backend in backends:  # select(rows, backends), one backend at a time
        p = backend.forward(kind, rows, a, n_iter, ensure_sum_one) if backend.applies(rows) else None
        if p is not None:
            return from_rows(p, X, dim)
    raise RuntimeError(f"no backend computed {kind} for {tuple(X.shape)} {X.dtype} on {X.device}")


def backward(kind: str, p: torch.Tensor, grad: torch.Tensor, dim: int, alpha: Optional[Alpha] = None,
             want_alpha: bool = False, backends: Sequence[Backend] = BACKENDS
             ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(∂L/∂X, ∂L/∂α per row shaped like p with size 1 along ``dim``, or None) for the output
    ``p`` and the incoming gradient ``grad``, from the first backend that answers."""
    rows, grad_rows = to_rows(p, dim), to_rows(grad.to(p.dtype), dim)
    a = None if alpha is None else alpha_rows(alpha, p, dim)
    for backend in backends:
        out = backend.backward(kind, rows, grad_rows, a, want_alpha) if backend.applies(rows) else None
        if out is not None:
            grad_alpha = None if out[1] is None else from_rows(out[1], p.narrow(dim, 0, 1), dim)
            return from_rows(out[0], p, dim), grad_alpha
    raise RuntimeError(f"no backend differentiated {kind} for {tuple(p.shape)} {p.dtype}")
