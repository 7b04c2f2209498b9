"""Thresholds τ of the sparse mappings, found without sorting.

Every mapping here has the form p_i = [1 + (α−1)(x_i − τ)]_+^{1/(α−1)} (α-entmax,
Peters et al. 2019, eq. 9, written with the q-exponential so that α → 1 is softmax),
with τ the unique root of f(τ) = Σ_i p_i(τ) − 1. The entmax package sorts each row
(sparsemax, 1.5-entmax) or halves a bracket 50 times (α-entmax); we use root finders
that converge in a handful of passes over the row:

* sparsemax (α = 2): Newton from below on the piecewise-linear f. Each step solves f
  exactly on the current support, the support only shrinks, and the iteration stops,
  exactly, when it no longer changes (at most d steps; typically 3–6).
* 1.5-entmax: Newton from below on the convex piecewise-quadratic f, then τ solved in
  closed form on the final support (the quadratic of Peters et al. 2019, Alg. 2).
* α-entmax, any α > 0: safeguarded Newton on F(τ) = (Σ p)^{α−1}, which is exact for
  one-element supports, linear for sparsemax and log-linear (one step) for softmax;
  a bisection bracket keeps every iterate inside [τ_lo, τ_hi].

All functions take scores already shifted so that their max along ``dim`` is 0 and
return τ with ``keepdim=True``; rows that are entirely −inf are the caller's business.
"""
from __future__ import annotations

import torch

from .layout import Alpha


def _step_tolerance(dtype: torch.dtype) -> float:
    return 4 * torch.finfo(dtype).eps


def sparsemax_threshold(Z: torch.Tensor, dim: int) -> torch.Tensor:
    """τ with Σ_i [z_i − τ]_+ = 1 for max-shifted scores Z (max along dim = 0)."""
    tau = torch.full_like(Z.narrow(dim, 0, 1), -1.0)
    for _ in range(Z.shape[dim] + 1):
        support = Z > tau
        size = support.sum(dim, keepdim=True).to(Z.dtype)
        total = torch.where(support, Z, 0.0).sum(dim, keepdim=True)
        new_tau = torch.maximum((total - 1) / size.clamp_min(1), tau)
        if torch.equal(new_tau, tau):
            break
        tau = new_tau
    return tau


def entmax15_threshold(Z: torch.Tensor, dim: int, n_iter: int = 100) -> torch.Tensor:
    """τ with Σ_i [z_i − τ]_+² = 1 for max-shifted, halved scores Z (max along dim = 0).

    Newton from τ = −1 (where f ≥ 0) increases monotonically to the root because f is
    convex and decreasing; the final τ is recomputed in closed form on its support.
    """
    tol = _step_tolerance(Z.dtype)
    tau = torch.full_like(Z.narrow(dim, 0, 1), -1.0)
    for _ in range(n_iter):
        gap = (Z - tau).clamp_(min=0)
        linear = gap.sum(dim, keepdim=True)
        f = gap.square_().sum(dim, keepdim=True) - 1
        step = (f / (2 * linear)).clamp_(min=0)
        tau = tau + step
        if not bool((step > tol * (1 + tau.abs())).any()):
            break
    support = Z > tau
    size = support.sum(dim, keepdim=True).to(Z.dtype).clamp_min(1)
    mean = torch.where(support, Z, 0.0).sum(dim, keepdim=True) / size
    spread = torch.where(support, (Z - mean).square(), 0.0).sum(dim, keepdim=True)
    delta = (1 - spread) / size
    exact = mean - delta.clamp_min(0).sqrt()
    # keep Newton's τ where the closed form does not apply (support off by a tie)
    ok = (delta >= 0) & ((exact - tau).abs() <= 1e3 * tol * (1 + tau.abs()))
    return torch.where(ok, exact, tau)


def qexp_probs(Z: torch.Tensor, tau: torch.Tensor, am1: Alpha) -> torch.Tensor:
    """p_i = [1 + (α−1)(z_i − τ)]_+^{1/(α−1)}, with α − 1 = ``am1`` (0 gives exp)."""
    if isinstance(am1, torch.Tensor):
        if bool((am1 == 0).any()):
            return _qexp_general(Z, tau, am1)[0]
    elif am1 == 0:
        return torch.exp(Z - tau)
    base = (Z - tau).mul_(am1).add_(1).clamp_(min=0)
    return base.log_().div_(am1).exp_()


def _qexp_general(Z: torch.Tensor, tau: torch.Tensor, am1: torch.Tensor):
    """q-exponential and its τ-derivative magnitude p^{2−α}, valid also where α − 1 = 0."""
    shifted = Z - tau
    is_one = am1 == 0
    safe = torch.where(is_one, torch.ones_like(am1), am1)
    log_p = torch.where(is_one, shifted, torch.log1p((shifted * safe).clamp_(min=-1)).div_(safe))
    p = torch.exp(log_p)
    # p^{2-α} = p^{1-(α-1)} = p · exp(-(α-1) log p); zero off the support
    slope = torch.where(p > 0, p * torch.exp(-am1 * log_p), 0.0)
    return p, slope


def _qexp_fast(Z: torch.Tensor, tau: torch.Tensor, am1: Alpha):
    """Same as :func:`_qexp_general` for α ≠ 1, with two full-size temporaries."""
    base = (Z - tau).mul_(am1).add_(1).clamp_(min=0)
    p = torch.log(base).div_(am1).exp_()
    slope = base.clamp_(min=torch.finfo(Z.dtype).tiny).reciprocal_().mul_(p)
    return p, slope


def entmax_threshold(Z: torch.Tensor, alpha: Alpha, dim: int, n_iter: int = 50) -> torch.Tensor:
    """τ of α-entmax for max-shifted scores Z; α a float or a tensor broadcast to rows.

    Safeguarded Newton on F(τ) = (Σ_i p_i)^{α−1} − 1 inside the bracket
    [τ_lo, τ_hi] = [0, (1 − d^{1−α})/(α−1)], on which f changes sign (f(τ_lo) ≥ 0 because
    the top score gets p = 1; f(τ_hi) ≤ 0 because every p ≤ 1/d there).
    """
    d = Z.shape[dim]
    tol = _step_tolerance(Z.dtype)
    if isinstance(alpha, torch.Tensor):
        am1 = (alpha - 1).to(Z.dtype)
        row = torch.broadcast_shapes(am1.shape, Z.narrow(dim, 0, 1).shape)
        am1 = am1.expand(row)
        has_one = bool((am1 == 0).any())
        safe = torch.where(am1 == 0, torch.ones_like(am1), am1)
        hi = torch.where(am1 == 0, torch.full_like(am1, float(torch.log(torch.tensor(float(d))))),
                         -torch.expm1(-safe * torch.log(torch.tensor(float(d), dtype=Z.dtype))) / safe)
        lo = torch.zeros_like(hi)
        tau = torch.where(am1 > 1, hi, lo)  # F is convex for α ≤ 2: start on the left
    else:
        am1 = alpha - 1.0
        has_one = am1 == 0
        hi_val = float(torch.log(torch.tensor(float(d)))) if has_one else (1 - d ** (-am1)) / am1
        lo = torch.zeros_like(Z.narrow(dim, 0, 1))
        hi = torch.full_like(lo, hi_val)
        tau = (hi if am1 > 1 else lo).clone()
    qexp = _qexp_general if has_one else _qexp_fast
    for _ in range(n_iter):
        p, slope = qexp(Z, tau, am1)
        total = p.sum(dim, keepdim=True)
        f = total - 1
        lo = torch.where(f >= 0, tau, lo)
        hi = torch.where(f < 0, tau, hi)
        # Newton step on F = S^{α−1}:  Δτ = [(S^{α−1} − 1)/(α−1)] · S^{2−α} / Σ p^{2−α}
        log_total = total.clamp_min(torch.finfo(Z.dtype).tiny).log()
        numer = _expm1_ratio(log_total, am1) * torch.exp((1 - am1) * log_total)
        step = numer / slope.sum(dim, keepdim=True).clamp_min(torch.finfo(Z.dtype).tiny)
        new_tau = tau + step
        outside = ~((new_tau >= lo) & (new_tau <= hi))  # NaN and inf too
        new_tau = torch.where(outside, (lo + hi) / 2, new_tau)
        moved = (new_tau - tau).abs()
        tau = new_tau
        if not bool((moved > tol * (1 + tau.abs())).any()):
            break
    return tau


def _expm1_ratio(log_total: torch.Tensor, am1: Alpha) -> torch.Tensor:
    """(e^{(α−1)L} − 1)/(α−1), equal to L at α = 1."""
    if isinstance(am1, torch.Tensor):
        safe = torch.where(am1 == 0, torch.ones_like(am1), am1)
        return torch.where(am1 == 0, log_total, torch.expm1(safe * log_total) / safe)
    if am1 == 0:
        return log_total
    return torch.expm1(am1 * log_total) / am1
