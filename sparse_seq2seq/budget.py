"""Budget sparsemax: sparsemax with a budget of B units of mass, each entry capped at 1
(``budget_bisect`` of the entmax package, 1.3; a relaxation of the k-subsets of size B):

    budget_B(x) = argmax_{p} pᵀx − ½‖p‖²  s.t.  0 ≤ p ≤ 1, Σ_i p_i = B,   0 < B ≤ d,

the Euclidean projection of x onto the capped simplex. Its KKT conditions give

    p_i = clip(x_i − τ, 0, 1),   τ the root of f(τ) = Σ_i clip(x_i − τ, 0, 1) − B.

f is piecewise linear and non-increasing with slope −|A(τ)|, A = {i : 0 < x_i − τ < 1}; on
the pieces, τ = (Σ_{i∈A} x_i + |U| − B)/|A| with U = {i : x_i − τ ≥ 1} solves f = 0 exactly,
so a Newton iteration safeguarded by the bracket [x_(⌈B⌉) − 1, max x − B/d] (x_(k) the k-th
largest score) ends on the exact root in a few steps where the package bisects ``n_iter``
times. The Jacobian is diag(a) − a aᵀ/|A| (a the indicator of A), and ∂p/∂B = a/|A|; a
tensor budget that requires grad receives it (the package gives none).

Scores follow the rule of :mod:`.nonfinite` adapted to the budget: a NaN row gives NaN, an all
−inf row zeros, −inf entries exact zeros (a row with fewer finite entries than B puts 1 on each
of them); k entries at +inf take the limit of their scores growing together: min(B/k, 1) each,
and the finite entries share what is left, max(B − k, 0), by budget sparsemax.
"""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch
from torch import nn

from . import nonfinite
from ._checks import check_input, check_n_iter, compute_dtype
from .layout import shift_by_row_max

Budget = Union[float, torch.Tensor]
"""B of budget sparsemax: a number, or a tensor broadcastable to X with size 1 along ``dim``."""

__all__ = ["budget_bisect", "BudgetBisect", "budget_threshold", "check_budget"]


def check_budget(budget: Budget, X: torch.Tensor, dim: int) -> Budget:
    """B must be in (0, d], d = X.shape[dim]: a number, or a tensor (or array) broadcastable to
    X with size 1 along ``dim`` (one budget per row); integer tensors are taken as X's dtype."""
    d = X.shape[dim]
    if isinstance(budget, np.ndarray) or (isinstance(budget, np.generic)
                                          and not isinstance(budget, np.bool_)):
        budget = torch.as_tensor(np.asarray(budget, dtype=np.float64), dtype=X.dtype,
                                 device=X.device)
    if isinstance(budget, torch.Tensor):
        if budget.dtype == torch.bool or budget.is_complex():
            raise TypeError(f"budget must be a real tensor, got dtype {budget.dtype}")
        if not budget.is_floating_point():
            budget = budget.to(X.dtype)
        if budget.dim() == 0 and not budget.requires_grad:
            return check_budget(float(budget), X, dim)
        try:
            shape = torch.broadcast_shapes(budget.shape, X.shape)
        except RuntimeError as err:
            raise ValueError(f"budget of shape {tuple(budget.shape)} does not broadcast to X of "
                             f"shape {tuple(X.shape)}") from err
        offset = X.dim() - budget.dim()
        along_dim = budget.shape[dim - offset] if dim - offset >= 0 else 1
        if tuple(shape) != tuple(X.shape) or along_dim != 1:
            raise ValueError(f"budget must broadcast to X of shape {tuple(X.shape)} with size 1 "
                             f"along dim={dim} (one budget per row), got shape "
                             f"{tuple(budget.shape)}")
        values = budget.detach()
        if not bool(torch.isfinite(values).all()) or bool((values <= 0).any()) \
                or bool((values > d).any()):
            raise ValueError(f"budget must be in (0, {d}] (the size of X along dim={dim}) "
                             f"everywhere, got values in [{float(values.min())}, "
                             f"{float(values.max())}]")
        return budget
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise TypeError(f"budget must be a number or a tensor, got {type(budget).__name__}")
    if not 0 < budget <= d:
        raise ValueError(f"budget must be in (0, {d}] (the size of X along dim={dim}), "
                         f"got {budget!r}")
    return float(budget)


def budget_threshold(Z: torch.Tensor, budget: Budget, dim: int, n_iter: int = 50) -> torch.Tensor:
    """τ with Σ_i clip(z_i − τ, 0, 1) = B for max-shifted scores Z (max 0 along ``dim``, −inf
    allowed, no all −inf row) and 0 ≤ B ≤ d; keepdim. Rows with no more finite scores than B get
    τ = (their smallest finite score) − 2, which puts 1 on each finite score."""
    d = Z.shape[dim]
    row = Z.narrow(dim, 0, 1)
    B = budget if isinstance(budget, torch.Tensor) else torch.tensor(budget, dtype=Z.dtype,
                                                                     device=Z.device)
    B = B.to(Z.dtype).expand(row.shape)
    finite = torch.isfinite(Z)
    n_finite = finite.sum(dim, keepdim=True).to(Z.dtype)
    smallest = torch.where(finite, Z, math.inf).amin(dim, keepdim=True)
    # f(x_(⌈B⌉) − 1) ≥ 0: the ⌈B⌉ largest scores are saturated there
    rank = B.ceil().long().clamp_(1, d)
    k = int(rank.max())
    top = Z.topk(k, dim).values.gather(dim, rank - 1)
    lo = torch.where(torch.isfinite(top), top, smallest) - 1
    hi = torch.minimum(-B / d, torch.zeros_like(B))  # f(max − B/d) ≤ 0
    # rows that can only saturate every finite score: τ two below the smallest (exact ones)
    full = n_finite <= B
    lo = torch.where(full, smallest - 2, torch.minimum(lo, hi))
    hi = torch.where(full, lo, hi)
    tau = hi.clone()
    # f is evaluated at every iterate; the first bracket ends are bounds only
    lo_seen = torch.zeros_like(tau, dtype=torch.bool)
    hi_seen = lo_seen.clone()
    previous = torch.full_like(tau, math.nan)
    tol = 4 * torch.finfo(Z.dtype).eps
    for _ in range(n_iter):
        gap = Z - tau
        f = gap.clamp(0, 1).sum(dim, keepdim=True) - B
        lo, lo_seen = torch.where(f >= 0, tau, lo), lo_seen | (f >= 0)
        hi, hi_seen = torch.where(f <= 0, tau, hi), hi_seen | (f <= 0)
        active = (gap > 0) & (gap < 1)
        size = active.sum(dim, keepdim=True).to(Z.dtype)
        saturated = (gap >= 1).sum(dim, keepdim=True).to(Z.dtype)
        newton = (torch.where(active, Z, 0.0).sum(dim, keepdim=True) + saturated - B) / size
        # the same sets as the last Newton iterate: newton is the exact root of their piece
        done = (newton == previous) | ((newton - tau).abs() <= tol * (1 + tau.abs()))
        # a Newton step back onto an evaluated bracket end would cycle between two kinks
        inside = ((size > 0) & (newton >= lo) & (newton <= hi)
                  & ~((newton == lo) & lo_seen) & ~((newton == hi) & hi_seen))
        take = inside | done
        new_tau = torch.where(take, newton, (lo + hi) / 2)
        previous = torch.where(take, newton, math.nan)
        moved = (new_tau - tau).abs()
        tau = new_tau
        if bool((done | (moved <= tol * (1 + tau.abs()))).all()):
            break
    return tau


def _budget(X: torch.Tensor, budget: Budget, dim: int, n_iter: int) -> torch.Tensor:
    """budget_B(X) along ``dim`` for scores without NaN or +inf; all −inf rows give zeros."""
    Z, dead = shift_by_row_max(X, dim)
    p = (Z - budget_threshold(Z, budget, dim, n_iter)).clamp_(0, 1)
    return p if dead is None else p.masked_fill_(dead, 0.0)


class BudgetBisectFunction(torch.autograd.Function):
    """Budget sparsemax with gradients in x and in a tensor budget (module docstring)."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, budget: Budget, dim: int, n_iter: int) -> torch.Tensor:
        p = _budget(X, budget, dim, n_iter)
        ctx.dim = dim
        ctx.budget_shape = budget.shape if isinstance(budget, torch.Tensor) else None
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        active = (p > 0) & (p < 1)
        size = active.sum(ctx.dim, keepdim=True).clamp_min(1).to(grad.dtype)
        masked = torch.where(active, grad, 0.0)
        mean = masked.sum(ctx.dim, keepdim=True) / size
        grad_x = torch.where(active, masked - mean, 0.0)
        grad_budget = None
        if ctx.budget_shape is not None and ctx.needs_input_grad[1]:
            grad_budget = mean.sum_to_size(ctx.budget_shape)
        return grad_x, grad_budget, None, None


def _run(Z: torch.Tensor, budget: Budget, dim: int, n_iter: int) -> torch.Tensor:
    wants_grad = torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in (Z, budget))
    if not wants_grad:
        with torch.no_grad():
            return _budget(Z, budget, dim, n_iter)
    return BudgetBisectFunction.apply(Z, budget, dim, n_iter)


def budget_bisect(X: torch.Tensor, budget: Budget = 2, dim: int = -1,
                  n_iter: int = 50) -> torch.Tensor:
    """Budget sparsemax: argmax_{0≤p≤1, Σp=B} pᵀx − ½‖p‖², i.e. p_i = clip(x_i − τ, 0, 1) with
    τ such that Σ_i p_i = B (module docstring). B = 1 is sparsemax.

    Args:
        X: scores, any shape, floating point (float16/bfloat16 are computed in float32).
        budget: B in (0, d], d = X.shape[dim]: a number, or a tensor (or array) broadcastable to
            X with size 1 along ``dim`` (one budget per row); a tensor that requires grad
            receives ∂L/∂B.
        dim: the dimension along which the budget is spent.
        n_iter: the most Newton iterations for τ (the package bisects ``n_iter`` times).

    Returns:
        p, X's shape and dtype, in [0, 1], summing to B along ``dim``. Differentiable in X
        (Jacobian diag(a) − a aᵀ/|A|, a the indicator of 0 < p < 1) and in a tensor budget.
    """
    dim = check_input(X, dim)
    n_iter = check_n_iter(n_iter)
    budget = check_budget(budget, X, dim)
    dtype = compute_dtype(X)
    Xc = X if X.dtype == dtype else X.to(dtype)
    if isinstance(budget, torch.Tensor):
        budget = budget.to(dtype)
    bad = nonfinite.find(Xc, dim)
    if bad is None or not bool(bad.posinf.any()):
        p = nonfinite.guard(lambda Z: _run(Z, budget, dim, n_iter), Xc, dim, _grad_tensor(budget))
    else:
        posinf = Xc.isposinf()
        count = posinf.sum(dim, keepdim=True).to(dtype)
        share = (budget / count.clamp_min(1)).clamp(max=1)  # each +inf entry's limit
        rest = (budget - count).clamp(min=0)  # what the finite entries share
        finite_part = Xc.masked_fill(posinf, -math.inf)
        p = nonfinite.guard(lambda Z: _run(Z, rest, dim, n_iter), finite_part, dim,
                            _grad_tensor(rest))
        p = torch.where(posinf & ~bad.nan, share.to(p.dtype), p)
    return p if p.dtype == X.dtype else p.to(X.dtype)


def _grad_tensor(budget: Budget):
    return budget if isinstance(budget, torch.Tensor) and budget.requires_grad else None


class BudgetBisect(nn.Module):
    """Module form of :func:`budget_bisect`: budget sparsemax along ``dim`` with a fixed
    ``budget`` (a number or a tensor with one budget per row, trained when it requires grad) and
    at most ``n_iter`` Newton iterations. Output X's shape, in [0, 1], summing to the budget."""

    def __init__(self, budget: Budget = 2, dim: int = -1, n_iter: int = 50):
        super().__init__()
        check_n_iter(n_iter)
        self.budget, self.dim, self.n_iter = budget, dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return budget_bisect(X, self.budget, self.dim, self.n_iter)
