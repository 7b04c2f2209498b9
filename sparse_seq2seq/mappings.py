"""Sparse alternatives to softmax: sparsemax, 1.5-entmax, α-entmax and top-k sparsemax.

Drop-in for the ``entmax`` package: same function names, signatures and modules, so
``from entmax import entmax15`` becomes ``from sparse_seq2seq import entmax15``.
Differences inside (the results agree; see tests/test_mappings.py):

* no sorting: thresholds come from the root finders in :mod:`sparse_seq2seq.thresholds`,
  so ``k`` (the partial-sort size of the entmax package) is accepted, checked and ignored;
  ``n_iter`` of the bisection functions caps Newton iterations, which stop at convergence;
* α may be any value > 0, a float or a tensor with one α per row (α = 1 is softmax);
* half-precision inputs are computed in float32 and returned in their own dtype;
* a row that is entirely −inf maps to zeros; a row with a NaN maps to NaN (as softmax), a
  row with +inf to its limit, the mass spread evenly over the +inf entries (gradients NaN,
  and zero; see :mod:`.nonfinite`);
* every mapping is computed by the first backend of :mod:`.backends` that answers: the GPU
  kernels (CUDA), the native row-wise kernels of :mod:`.native` (CPU, built on first use),
  the compiled kernels of :mod:`.fused`, the eager code.

Every mapping is π_α(x) = argmax_{p∈Δ} p·x + H^T_α(p) (Tsallis entropy; Peters, Niculae &
Martins 2019, eq. 8), p_i = [1 + (α−1)(x_i − τ)]_+^{1/(α−1)}, with Jacobian
diag(s) − s sᵀ/Σs for s = p^{2−α} (Correia et al. 2019, eq. 10).
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from . import backends, nonfinite
from ._checks import check_alpha, check_input, check_k, check_n_iter, compute_dtype
from .layout import Alpha

__all__ = [
    "sparsemax", "entmax15", "sparsemax_bisect", "entmax_bisect", "topk_sparsemax",
    "Sparsemax", "Entmax15", "SparsemaxBisect", "EntmaxBisect", "EntmaxAlpha",
]


class SparsemaxFunction(torch.autograd.Function):
    """sparsemax(x) = argmin_{p∈Δ} ‖p − x‖² (Martins & Astudillo 2016, eq. 2)."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, dim: int) -> torch.Tensor:
        p = backends.forward("sparsemax", X, dim)
        ctx.dim = dim
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        return backends.backward("sparsemax", p, grad, ctx.dim)[0], None


class Entmax15Function(torch.autograd.Function):
    """1.5-entmax: p_i = [x_i/2 − τ]_+² (Peters, Niculae & Martins 2019, eq. 10)."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, dim: int) -> torch.Tensor:
        p = backends.forward("entmax15", X, dim)
        ctx.dim = dim
        ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        return backends.backward("entmax15", p, grad, ctx.dim)[0], None


class EntmaxBisectFunction(torch.autograd.Function):
    """α-entmax with gradients in x and α (Correia, Niculae & Martins 2019, Prop. 1)."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, alpha: Alpha, dim: int, n_iter: int,
                ensure_sum_one: bool) -> torch.Tensor:
        p = backends.forward("entmax", X, dim, alpha, n_iter, ensure_sum_one)
        ctx.dim = dim
        ctx.alpha_is_tensor = isinstance(alpha, torch.Tensor)
        if ctx.alpha_is_tensor:
            ctx.save_for_backward(p, alpha)
        else:
            ctx.alpha = alpha
            ctx.save_for_backward(p)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.alpha_is_tensor:
            p, alpha = ctx.saved_tensors
        else:
            (p,) = ctx.saved_tensors
            alpha = ctx.alpha
        want_alpha = ctx.alpha_is_tensor and ctx.needs_input_grad[1]
        grad_x, grad_alpha = backends.backward("entmax", p, grad, ctx.dim, alpha, want_alpha)
        if want_alpha:
            grad_alpha = grad_alpha.sum_to_size(alpha.shape)
        return grad_x, grad_alpha, None, None, None


def _no_grad(*tensors) -> bool:
    return not torch.is_grad_enabled() or not any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in tensors)


_FUNCTIONS = {"sparsemax": SparsemaxFunction, "entmax15": Entmax15Function}


def _mapping(kind: str, X: torch.Tensor, dim: int, alpha: Optional[Alpha] = None,
             n_iter: int = 50, ensure_sum_one: bool = True) -> torch.Tensor:
    """π(X) along ``dim``, computed in float32 for half-precision X and returned in X's dtype,
    under the NaN/+inf rule of :mod:`.nonfinite`; no graph where no gradient is wanted."""
    Xc = _in_compute_dtype(X)
    if isinstance(alpha, torch.Tensor):
        alpha = alpha.to(Xc.dtype)

    def run(Z: torch.Tensor) -> torch.Tensor:
        if _no_grad(Z, alpha):
            return backends.forward(kind, Z, dim, alpha, n_iter, ensure_sum_one)
        if kind == "entmax":
            return EntmaxBisectFunction.apply(Z, alpha, dim, n_iter, ensure_sum_one)
        return _FUNCTIONS[kind].apply(Z, dim)

    p = nonfinite.guard(run, Xc, dim, alpha)
    return p if p.dtype == X.dtype else p.to(X.dtype)


def _in_compute_dtype(X: torch.Tensor) -> torch.Tensor:
    dtype = compute_dtype(X)
    return X if X.dtype == dtype else X.to(dtype)


def _softmax(X: torch.Tensor, dim: int) -> torch.Tensor:
    """softmax, with zeros for rows that are all −inf."""
    dead = torch.isneginf(X.amax(dim, keepdim=True))
    return torch.softmax(torch.where(dead, torch.zeros_like(X), X), dim).masked_fill(dead, 0.0)


def sparsemax(X: torch.Tensor, dim: int = -1, k: Optional[int] = None) -> torch.Tensor:
    """sparsemax along ``dim`` (Martins & Astudillo 2016); ``k`` is checked and unused."""
    dim = check_input(X, dim)
    check_k(k)
    return _mapping("sparsemax", X, dim)


def entmax15(X: torch.Tensor, dim: int = -1, k: Optional[int] = None) -> torch.Tensor:
    """1.5-entmax along ``dim`` (Peters et al. 2019); ``k`` is checked and unused."""
    dim = check_input(X, dim)
    check_k(k)
    return _mapping("entmax15", X, dim)


def sparsemax_bisect(X: torch.Tensor, dim: int = -1, n_iter: int = 50,
                     ensure_sum_one: bool = True) -> torch.Tensor:
    """sparsemax by root finding; here the exact finite Newton iteration of :func:`sparsemax`."""
    check_n_iter(n_iter, ignored=True)
    return sparsemax(X, dim)


def entmax_bisect(X: torch.Tensor, alpha: Alpha = 1.5, dim: int = -1, n_iter: int = 50,
                  ensure_sum_one: bool = True) -> torch.Tensor:
    """α-entmax along ``dim``: α > 0 a float, or a tensor broadcastable to X with size 1
    along ``dim`` (one α per row), differentiable. α = 1 is softmax, α = 2 sparsemax."""
    dim = check_input(X, dim)
    n_iter = check_n_iter(n_iter)
    alpha = check_alpha(alpha, X, dim)
    if not isinstance(alpha, torch.Tensor) and alpha == 1:
        return nonfinite.guard(lambda Z: _softmax(Z, dim), _in_compute_dtype(X), dim).to(X.dtype)
    return _mapping("entmax", X, dim, alpha, n_iter, ensure_sum_one)


def topk_sparsemax(X: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """sparsemax restricted to the k largest scores, zero elsewhere (Correia et al. 2020,
    §3.2). Equals sparsemax whenever the sparsemax support has at most k elements."""
    dim = check_input(X, dim)
    k = check_k(k, required=True)
    if k >= X.shape[dim]:
        return sparsemax(X, dim)

    def truncated(Z: torch.Tensor) -> torch.Tensor:
        values, index = Z.topk(k, dim)
        return torch.zeros_like(Z).scatter(dim, index, sparsemax(values, dim))

    return nonfinite.guard(truncated, X, dim)


class Sparsemax(nn.Module):
    def __init__(self, dim: int = -1, k: Optional[int] = None):
        super().__init__()
        check_k(k)
        self.dim, self.k = dim, k

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return sparsemax(X, self.dim, self.k)


class Entmax15(nn.Module):
    def __init__(self, dim: int = -1, k: Optional[int] = None):
        super().__init__()
        check_k(k)
        self.dim, self.k = dim, k

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return entmax15(X, self.dim, self.k)


class SparsemaxBisect(nn.Module):
    def __init__(self, dim: int = -1, n_iter: Optional[int] = None):
        super().__init__()
        check_n_iter(n_iter, ignored=True)
        self.dim, self.n_iter = dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return sparsemax_bisect(X, self.dim, self.n_iter)


class EntmaxBisect(nn.Module):
    def __init__(self, alpha: Alpha = 1.5, dim: int = -1, n_iter: int = 50):
        super().__init__()
        check_n_iter(n_iter)
        self.alpha, self.dim, self.n_iter = alpha, dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return entmax_bisect(X, self.alpha, self.dim, self.n_iter)


class EntmaxAlpha(nn.Module):
    """α-entmax with one learned α per head, α = 1 + sigmoid(a) ∈ (1, 2] (Correia et al.
    2019, §3.2). ``alpha_init`` is a number in (1, 2] or ``"random"`` (uniform in (1, 2));
    ``head_dim`` is the axis of X that indexes heads."""

    def __init__(self, num_heads: int, dim: int = -1, alpha_init: Union[float, str] = 1.5,
                 head_dim: int = 1, n_iter: int = 50):
        super().__init__()
        if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads <= 0:
            raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
        self.num_heads, self.dim, self.head_dim, self.n_iter = num_heads, dim, head_dim, n_iter
        self.alpha_logit = nn.Parameter(alpha_logits(num_heads, alpha_init))

    @property
    def alpha(self) -> torch.Tensor:
        return 1 + torch.sigmoid(self.alpha_logit).clamp(min=1e-4)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        shape = [1] * X.dim()
        shape[self.head_dim] = self.num_heads
        return entmax_bisect(X, self.alpha.view(shape), self.dim, self.n_iter)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, dim={self.dim}, head_dim={self.head_dim}"


def alpha_logits(num_heads: int, alpha_init: Union[float, str]) -> torch.Tensor:
    """Logits a with 1 + sigmoid(a) = alpha_init (α = 2 is approached as 1.999)."""
    if isinstance(alpha_init, str):
        if alpha_init != "random":
            try:
                alpha_init = float(alpha_init)
            except ValueError:
                raise ValueError(f"alpha_init must be a number in (1, 2] or 'random', "
                                 f"got {alpha_init!r}") from None
        else:
            return torch.logit(torch.empty(num_heads).uniform_(0.05, 0.95))
    if not 1 < float(alpha_init) <= 2:
        raise ValueError(f"alpha_init must be in (1, 2], got {alpha_init!r}")
    frac = min(float(alpha_init) - 1, 0.999)
    return torch.full((num_heads,), float(torch.logit(torch.tensor(frac, dtype=torch.float64))))
