"""α-normmax: the sparse mapping regularised by the α-norm (``normmax_bisect`` of the entmax
package, 1.3).

    normmax_α(x) = argmax_{p∈Δ} pᵀx − ‖p‖_α,   α > 1,

the regularised prediction map of Ω(p) = ‖p‖_α in the Fenchel–Young framework of Blondel,
Martins & Niculae (2020, "Learning with Fenchel–Young losses"). Its KKT conditions give, with
q = p/‖p‖_α,

    q_i = [x_i − τ]_+^{1/(α−1)},   τ such that Σ_i q_i^α = 1,   p = q / Σ_i q_i.

The threshold needs no root finder of its own: Σ_i [x_i − τ]_+^{α/(α−1)} = 1 is the threshold
equation of β-entmax with β = 2 − 1/α on the scores x/(β−1), so τ comes from
:func:`.thresholds.entmax_threshold`. α = 2 is the ℓ2 case; α → ∞ tends to uniform on the
support, α → 1 to argmax.

Gradients (differentiating q^{α−1} = x − τ and Σ q^α = 1), with s = p^{2−α}, g the incoming
gradient and h = g − (gᵀp)·1:

    ∂/∂x:  ‖p‖_α^{α−1}/(α−1) · (s ⊙ h − p·sᵀh),
    ∂/∂α:  −1/(α−1) · Σ_i h_i [p_i log p_i − s_i Σ_j p_j^α · m/α],
           m = Σ_j p_j^α log p_j / Σ_j p_j^α − log(Σ_j p_j^α)/α.

The package's gradient in X is the same; it gives none in α, here a tensor α that requires
grad receives it. Scores follow the rule of :mod:`.nonfinite` (NaN row → NaN, +inf → uniform
on the +inf entries, all −inf → zeros), half precision is computed in float32.
"""
from __future__ import annotations

import torch
from torch import nn

from . import nonfinite
from ._checks import check_alpha, check_input, check_n_iter, compute_dtype
from .layout import Alpha, save_p_alpha, saved_p_alpha, shift_by_row_max
from .thresholds import entmax_threshold

__all__ = ["normmax_bisect", "NormmaxBisect", "norm_entropy", "norm_entropy_alpha_derivative"]


def check_normmax_alpha(alpha: Alpha, X: torch.Tensor, dim: int) -> Alpha:
    """α of normmax: as :func:`._checks.check_alpha` (a number, or a tensor with one α per row),
    and > 1 everywhere."""
    alpha = check_alpha(alpha, X, dim)
    low = float(alpha.detach().min()) if isinstance(alpha, torch.Tensor) else alpha
    if not low > 1:
        raise ValueError(f"alpha must be > 1 for normmax_bisect (α = 1 is argmax), got "
                         f"{'min ' if isinstance(alpha, torch.Tensor) else ''}{low!r}")
    return alpha


def _normmax(X: torch.Tensor, alpha: Alpha, dim: int, n_iter: int) -> torch.Tensor:
    """normmax_α(X) along ``dim`` for scores without NaN or +inf; all −inf rows give zeros."""
    shifted, dead = shift_by_row_max(X, dim)
    bm1 = 1 - 1 / alpha  # β − 1 of the equivalent β-entmax, in (0, 1)
    tau = entmax_threshold(shifted / bm1, 1 + bm1, dim, n_iter)
    # x − τ_x = 1 + (β−1)(z − τ) with z = shifted/(β−1): the base of q
    base = (shifted - bm1 * tau).add_(1).clamp_(min=0)
    q = base.log_().div_(alpha - 1).exp_()
    p = q.div_(q.sum(dim, keepdim=True).clamp_min(torch.finfo(X.dtype).tiny))
    return p if dead is None else p.masked_fill_(dead, 0.0)


def _log_terms(p: torch.Tensor, alpha: Alpha, dim: int):
    """(log p, −inf off the support; L = log Σ p^α per row; the weights p^α/Σ p^α), in log
    space so that large α neither underflows Σ p^α nor overflows p^{2−α}."""
    log_p = torch.where(p > 0, p, 1.0).log().masked_fill(p <= 0, -float("inf"))
    scaled = alpha * log_p
    log_norm = torch.logsumexp(scaled, dim, keepdim=True)
    return log_p, log_norm, torch.exp(scaled - log_norm)


class NormmaxBisectFunction(torch.autograd.Function):
    """α-normmax with gradients in x and in a tensor α (module docstring)."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, alpha: Alpha, dim: int, n_iter: int) -> torch.Tensor:
        p = _normmax(X, alpha, dim, n_iter)
        ctx.dim = dim
        save_p_alpha(ctx, p, alpha)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, alpha = saved_p_alpha(ctx)
        dim = ctx.dim
        log_p, log_norm, weights = _log_terms(p, alpha, dim)
        # ‖p‖_α^{α−1} p^{2−α} = exp((2−α) log p + (α−1)/α · log Σ p^α)
        slope = torch.where(p > 0, torch.exp((2 - alpha) * log_p + (alpha - 1) / alpha * log_norm),
                            0.0)
        centred = grad - (grad * p).sum(dim, keepdim=True)
        weighted = slope * centred
        grad_x = (weighted - p * weighted.sum(dim, keepdim=True)) / (alpha - 1)
        grad_alpha = None
        if ctx.alpha_is_tensor and ctx.needs_input_grad[1]:
            plogp = torch.where(p > 0, p * log_p, 0.0)
            m = (weights * torch.where(p > 0, log_p, 0.0)).sum(dim, keepdim=True) - log_norm / alpha
            # s_i Σ p^α = ‖p‖_α^{α−1} p^{2−α} · ‖p‖_α
            dq = plogp - slope * torch.exp(log_norm / alpha) * m / alpha
            grad_alpha = -(centred * dq).sum(dim, keepdim=True) / (alpha - 1)
            grad_alpha = grad_alpha.sum_to_size(alpha.shape)
        return grad_x, grad_alpha, None, None


def _no_grad(*tensors) -> bool:
    return not torch.is_grad_enabled() or not any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


def normmax_bisect(X: torch.Tensor, alpha: Alpha = 2, dim: int = -1,
                   n_iter: int = 50) -> torch.Tensor:
    """α-normmax: argmax_{p∈Δ} pᵀx − ‖p‖_α, i.e. p ∝ [x − τ]_+^{1/(α−1)} with τ such that
    Σ_i [x_i − τ]_+^{α/(α−1)} = 1 (module docstring).

    Args:
        X: scores, any shape, floating point (float16/bfloat16 are computed in float32).
        alpha: α > 1, a number, or a tensor (or array) broadcastable to X with size 1 along
            ``dim`` (one α per row); a tensor that requires grad receives ∂L/∂α.
        dim: the dimension that is mapped onto the simplex.
        n_iter: the most Newton iterations for τ (the package bisects ``n_iter`` times).

    Returns:
        p, X's shape and dtype, on the simplex along ``dim`` (sparse). Differentiable in X and
        in a tensor α.
    """
    dim = check_input(X, dim)
    n_iter = check_n_iter(n_iter)
    alpha = check_normmax_alpha(alpha, X, dim)
    dtype = compute_dtype(X)
    Xc = X if X.dtype == dtype else X.to(dtype)
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(dtype)

    def run(Z: torch.Tensor) -> torch.Tensor:
        if _no_grad(Z, alpha):
            with torch.no_grad():
                return _normmax(Z, alpha, dim, n_iter)
        return NormmaxBisectFunction.apply(Z, alpha, dim, n_iter)

    p = nonfinite.guard(run, Xc, dim, alpha)
    return p if p.dtype == X.dtype else p.to(X.dtype)


def norm_entropy(p: torch.Tensor, alpha: Alpha, dim: int = -1) -> torch.Tensor:
    """1 − ‖p‖_α = Ω(e_i) − Ω(p), the entropy term of the normmax Fenchel–Young loss."""
    _, log_norm, _ = _log_terms(p, alpha, dim)
    return 1 - torch.exp(log_norm / alpha).squeeze(dim)


def norm_entropy_alpha_derivative(p: torch.Tensor, alpha: torch.Tensor, dim: int) -> torch.Tensor:
    """∂(1 − ‖p‖_α)/∂α = −‖p‖_α (Σ_i w_i log p_i − log(Σ p^α)/α)/α, w = p^α/Σ p^α."""
    log_p, log_norm, weights = _log_terms(p, alpha, dim)
    mean_log = (weights * torch.where(p > 0, log_p, 0.0)).sum(dim, keepdim=True)
    derivative = -torch.exp(log_norm / alpha) * (mean_log - log_norm / alpha) / alpha
    return derivative.squeeze(dim)


class NormmaxBisect(nn.Module):
    """Module form of :func:`normmax_bisect`: α-normmax along ``dim`` with a fixed ``alpha`` (a
    number > 1 or a tensor with one α per row, trained when it requires grad) and at most
    ``n_iter`` Newton iterations. Output X's shape, on the simplex along ``dim``."""

    def __init__(self, alpha: Alpha = 2, dim: int = -1, n_iter: int = 50):
        super().__init__()
        check_n_iter(n_iter)
        self.alpha, self.dim, self.n_iter = alpha, dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return normmax_bisect(X, self.alpha, self.dim, self.n_iter)
