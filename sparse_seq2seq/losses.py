"""Fenchel–Young losses of the sparse mappings (Blondel et al. 2020; Peters et al. 2019, eq. 11).

L_Ω(x; y) = Ω*(x) − x_y = pᵀx + H_α(p) − x_y with p = π_α(x) and the Tsallis entropy
H_α(p) = (1 − Σ p_i^α)/(α(α−1)) (Shannon at α = 1). Its gradient in x is p − e_y, and in α
it is ∂H_α/∂α at p (Danskin). Same functions and modules as the ``entmax`` package, with
``ignore_index`` that may be any integer (negative too) and ``reduction`` in
{"none", "sum", "mean", "elementwise_mean"}.

Every loss function takes scores X (..., n_classes), floating point (float16/bfloat16 computed in
float32), and gold class indices target (...), int64 or int32 in [0, n_classes), and returns the
loss per row, shape (...), in X's dtype, ≥ 0, with gradient p − e_y in X.

NaN scores give a NaN loss (and gradient). A row with +inf scores gives the loss's limit (it is
invariant to shifting the scores): H_α(p) with p uniform on the +inf entries when the gold is
one of them (0 when it is the only one), +inf when it is not; the gradient p − e_y stays finite.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from . import nonfinite
from ._checks import (check_alpha, check_ignore_index, check_input, check_k, check_n_iter,
                      compute_dtype)
from .layout import Alpha
from .mappings import entmax15, entmax_bisect, sparsemax
from .normmax import (check_normmax_alpha, norm_entropy, norm_entropy_alpha_derivative,
                      normmax_bisect)

REDUCTIONS = ("none", "sum", "mean", "elementwise_mean")

__all__ = ["sparsemax_loss", "entmax15_loss", "sparsemax_bisect_loss", "entmax_bisect_loss",
           "normmax_bisect_loss", "SparsemaxLoss", "Entmax15Loss", "SparsemaxBisectLoss",
           "EntmaxBisectLoss", "NormmaxBisectLoss", "tsallis_entropy"]


def tsallis_entropy(p: torch.Tensor, alpha: Alpha, dim: int = -1) -> torch.Tensor:
    """H_α(p) = (1 − Σ p^α)/(α(α−1)); −Σ p log p where α = 1."""
    if isinstance(alpha, (int, float)):
        if alpha == 1:
            return -torch.special.xlogy(p, p).sum(dim)
        if alpha == 2:
            return (1 - p.square().sum(dim)) / 2
        return (1 - p.pow(alpha).sum(dim)) / (alpha * (alpha - 1))
    am1 = (alpha - 1).squeeze(dim)
    safe = torch.where(am1 == 0, torch.ones_like(am1), am1)
    tsallis = (1 - p.pow(alpha).sum(dim)) / ((safe + 1) * safe)
    return torch.where(am1 == 0, -torch.special.xlogy(p, p).sum(dim), tsallis)


def _entropy_alpha_derivative(p: torch.Tensor, alpha: torch.Tensor, dim: int) -> torch.Tensor:
    """∂H_α(p)/∂α = −Σ p^α log p / (α(α−1)) − (1 − Σ p^α)(2α − 1)/(α(α−1))²."""
    a = alpha.squeeze(dim)
    scale = a * (a - 1)
    p_alpha = p.pow(alpha)
    first = -torch.where(p > 0, p_alpha * torch.where(p > 0, p, 1.0).log(), 0.0).sum(dim) / scale
    return first - (1 - p_alpha.sum(dim)) * (2 * a - 1) / scale.square()


TSALLIS = (tsallis_entropy, _entropy_alpha_derivative)
NORM = (norm_entropy, norm_entropy_alpha_derivative)
"""The entropy −Ω(p) of a loss and its α-derivative, each called as (p, α, dim)."""


class FenchelYoungLossFunction(torch.autograd.Function):
    """Loss values per row and the (non-differentiable) probabilities p = π_α(x); the
    mapping runs once, without building a graph. ``entropy`` is :data:`TSALLIS` (the α-entmax
    losses) or :data:`NORM` (the normmax loss)."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, target: torch.Tensor, alpha: Alpha,
                mapping: Callable[[torch.Tensor], torch.Tensor], entropy=TSALLIS) -> torch.Tensor:
        with torch.no_grad():
            p = mapping(X)
            X = nonfinite.loss_scores(X, nonfinite.find(X, -1))  # +inf rows: their limit
            gold = X.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            finite_x = torch.where(p > 0, X, 0.0)  # −inf scores carry no mass
            loss = (p * finite_x).sum(-1) - gold + entropy[0](p, alpha, -1)
        ctx.entropy_alpha_derivative = entropy[1]
        ctx.alpha_is_tensor = isinstance(alpha, torch.Tensor)
        ctx.save_for_backward(p, target, *([alpha] if ctx.alpha_is_tensor else []))
        ctx.mark_non_differentiable(p)
        return loss.clamp_min(0), p

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_p: torch.Tensor):
        p, target, *rest = ctx.saved_tensors
        grad_x = p.clone()
        grad_x.scatter_add_(-1, target.unsqueeze(-1), -torch.ones_like(p[..., :1]))
        grad_x.mul_(grad.unsqueeze(-1))
        grad_alpha = None
        if ctx.alpha_is_tensor and ctx.needs_input_grad[2]:
            (alpha,) = rest
            a = alpha.expand(*p.shape[:-1], 1)
            grad_alpha = (grad * ctx.entropy_alpha_derivative(p, a, -1)).unsqueeze(-1)
            grad_alpha = grad_alpha.sum_to_size(alpha.shape)
        return grad_x, None, grad_alpha, None, None


def _fy_loss(X: torch.Tensor, target: torch.Tensor, alpha: Alpha,
             mapping: Callable[[torch.Tensor], torch.Tensor], entropy=TSALLIS) -> torch.Tensor:
    return loss_and_probs(X, target, alpha, mapping, entropy)[0]


def loss_and_probs(X: torch.Tensor, target: torch.Tensor, alpha: Alpha,
                   mapping: Callable[[torch.Tensor], torch.Tensor], entropy=TSALLIS):
    """(loss per row in X's dtype, p = mapping(X) in the compute dtype, no gradient)."""
    check_input(X, -1)
    if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int64, torch.int32):
        raise TypeError("target must be an integer (long) tensor of class indices")
    if tuple(target.shape) != tuple(X.shape[:-1]):
        raise ValueError(f"target of shape {tuple(target.shape)} must match X of shape "
                         f"{tuple(X.shape)} without its last (class) dimension")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= X.shape[-1]):
        raise ValueError(f"target values must be in [0, {X.shape[-1]}), got "
                         f"[{int(target.min())}, {int(target.max())}]")
    Xc = X.to(compute_dtype(X))
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(Xc.dtype)
    loss, p = FenchelYoungLossFunction.apply(Xc, target.long(), alpha, mapping, entropy)
    return loss.to(X.dtype), p


def sparsemax_loss(X: torch.Tensor, target: torch.Tensor, k: Optional[int] = None) -> torch.Tensor:
    """Sparsemax loss L(x; y) = pᵀx − x_y + ½(1 − ‖p‖²), p = sparsemax(x) (Martins &
    Astudillo 2016, eq. 18; the Fenchel–Young loss of α = 2).

    Args (X, target and the result as in the module docstring):
        k: accepted for the package's signature; checked and unused.
    """
    check_k(k)
    return _fy_loss(X, target, 2.0, sparsemax)


def entmax15_loss(X: torch.Tensor, target: torch.Tensor, k: Optional[int] = None) -> torch.Tensor:
    """1.5-entmax loss L(x; y) = pᵀx − x_y + H_{1.5}(p), p = entmax15(x) (Peters, Niculae &
    Martins 2019, eq. 11 at α = 1.5; H_α(p) = (1 − Σ p_i^α)/(α(α−1))).

    Args (X, target and the result as in the module docstring):
        k: accepted for the package's signature; checked and unused.
    """
    check_k(k)
    return _fy_loss(X, target, 1.5, entmax15)


def sparsemax_bisect_loss(X: torch.Tensor, target: torch.Tensor, n_iter: int = 50) -> torch.Tensor:
    """The sparsemax loss (:func:`sparsemax_loss`); the package computes its sparsemax by
    bisection, ours exactly.

    Args (X, target and the result as in the module docstring):
        n_iter: accepted and ignored, as by the package (a non-negative integer or None).
    """
    check_n_iter(n_iter, ignored=True)
    return _fy_loss(X, target, 2.0, sparsemax)


def entmax_bisect_loss(X: torch.Tensor, target: torch.Tensor, alpha: Alpha = 1.5,
                       n_iter: int = 50) -> torch.Tensor:
    """α-entmax loss L(x; y) = pᵀx − x_y + H_α(p), p = entmax_bisect(x, α), with the Tsallis
    entropy H_α(p) = (1 − Σ p_i^α)/(α(α−1)) (Shannon at α = 1; Peters, Niculae & Martins 2019,
    eq. 11).

    Args (X, target and the result as in the module docstring):
        alpha: α > 0, a number or a tensor with one α per row ((..., 1), or broadcastable to
            it); a tensor that requires grad gets ∂L/∂α = ∂H_α(p)/∂α (Danskin).
        n_iter: the most Newton iterations for the mapping's threshold.
    """
    n_iter = check_n_iter(n_iter)
    check_input(X, -1)
    alpha = check_alpha(alpha, X, X.dim() - 1)
    return _fy_loss(X, target, alpha, lambda Z: entmax_bisect(Z, alpha, -1, n_iter))


def normmax_bisect_loss(X: torch.Tensor, target: torch.Tensor, alpha: Alpha = 2,
                        n_iter: int = 50) -> torch.Tensor:
    """α-normmax loss L(x; y) = pᵀx − x_y + 1 − ‖p‖_α, p = normmax_bisect(x, α): the
    Fenchel–Young loss of Ω(p) = ‖p‖_α (Blondel, Martins & Niculae 2020), as in the package.

    Args (X, target and the result as in the module docstring):
        alpha: α > 1, a number or a tensor with one α per row ((..., 1), or broadcastable to
            it); a tensor that requires grad gets ∂L/∂α = −∂‖p‖_α/∂α (Danskin).
        n_iter: the most Newton iterations for the mapping's threshold.
    """
    n_iter = check_n_iter(n_iter)
    check_input(X, -1)
    alpha = check_normmax_alpha(alpha, X, X.dim() - 1)
    return _fy_loss(X, target, alpha, lambda Z: normmax_bisect(Z, alpha, -1, n_iter), NORM)


class _FYLoss(nn.Module):
    """A Fenchel–Young loss module: per-row losses reduced over the rows.

    Args:
        ignore_index: target value whose rows are left out (any integer, negative too; an
            integer tensor or numpy scalar is taken as well, as by ``torch.nn`` losses).
        reduction: "none" (per row, ignored rows 0), "sum", or "mean" / "elementwise_mean"
            (sum over the rows not ignored divided by their number).

    Called with X (..., n_classes) and target (...), it returns a scalar, or (...) for "none".
    """

    def __init__(self, ignore_index: int = -100, reduction: str = "elementwise_mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.ignore_index, self.reduction = check_ignore_index(ignore_index), reduction

    def loss(self, X: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, X: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ignored = target == self.ignore_index
        loss = self.loss(X, torch.where(ignored, torch.zeros_like(target), target))
        loss = loss.masked_fill(ignored, 0.0)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / (ignored.numel() - int(ignored.sum())) if not bool(ignored.all()) \
            else loss.sum()


class SparsemaxLoss(_FYLoss):
    """Module form of :func:`sparsemax_loss` (``k`` checked and unused); ``ignore_index`` and
    ``reduction`` as in :class:`_FYLoss`. Call with X (..., n_classes) and target (...)."""

    def __init__(self, k: Optional[int] = None, ignore_index: int = -100,
                 reduction: str = "elementwise_mean"):
        check_k(k)
        super().__init__(ignore_index, reduction)
        self.k = k

    def loss(self, X, target):
        return sparsemax_loss(X, target, self.k)


class Entmax15Loss(_FYLoss):
    """Module form of :func:`entmax15_loss` (``k``, 100 by default as in the package, checked
    and unused); ``ignore_index`` and ``reduction`` as in :class:`_FYLoss`. Call with
    X (..., n_classes) and target (...)."""

    def __init__(self, k: Optional[int] = 100, ignore_index: int = -100,
                 reduction: str = "elementwise_mean"):
        check_k(k)
        super().__init__(ignore_index, reduction)
        self.k = k

    def loss(self, X, target):
        return entmax15_loss(X, target, self.k)


class SparsemaxBisectLoss(_FYLoss):
    """Module form of :func:`sparsemax_bisect_loss` (``n_iter`` accepted and ignored);
    ``ignore_index`` and ``reduction`` as in :class:`_FYLoss`. Call with X (..., n_classes)
    and target (...)."""

    def __init__(self, n_iter: int = 50, ignore_index: int = -100,
                 reduction: str = "elementwise_mean"):
        check_n_iter(n_iter, ignored=True)
        super().__init__(ignore_index, reduction)
        self.n_iter = n_iter

    def loss(self, X, target):
        return sparsemax_bisect_loss(X, target, self.n_iter)


class EntmaxBisectLoss(_FYLoss):
    """Module form of :func:`entmax_bisect_loss`: ``alpha`` a number or a tensor with one α per
    row (trained when it requires grad), at most ``n_iter`` Newton iterations;
    ``ignore_index`` and ``reduction`` as in :class:`_FYLoss`. Call with X (..., n_classes)
    and target (...)."""

    def __init__(self, alpha: Alpha = 1.5, n_iter: int = 50, ignore_index: int = -100,
                 reduction: str = "elementwise_mean"):
        check_n_iter(n_iter)
        super().__init__(ignore_index, reduction)
        self.alpha, self.n_iter = alpha, n_iter

    def loss(self, X, target):
        return entmax_bisect_loss(X, target, self.alpha, self.n_iter)


class NormmaxBisectLoss(_FYLoss):
    """Module form of :func:`normmax_bisect_loss`: ``alpha`` > 1 a number or a tensor with one α
    per row (trained when it requires grad), at most ``n_iter`` Newton iterations;
    ``ignore_index`` and ``reduction`` as in :class:`_FYLoss`. Call with X (..., n_classes)
    and target (...)."""

    def __init__(self, alpha: Alpha = 2, n_iter: int = 50, ignore_index: int = -100,
                 reduction: str = "elementwise_mean"):
        check_n_iter(n_iter)
        super().__init__(ignore_index, reduction)
        self.alpha, self.n_iter = alpha, n_iter

    def loss(self, X, target):
        return normmax_bisect_loss(X, target, self.alpha, self.n_iter)
