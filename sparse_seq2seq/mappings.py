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
from .layout import Alpha, save_p_alpha, saved_p_alpha

__all__ = [
    "sparsemax", "entmax15", "sparsemax_bisect", "entmax_bisect", "topk_sparsemax",
    "Sparsemax", "Entmax15", "SparsemaxBisect", "EntmaxBisect", "EntmaxAlpha",
]


class _FixedAlphaFunction(torch.autograd.Function):
    """A mapping without parameters (``kind`` of :data:`.backends.KINDS`), forward and backward
    through the backends."""

    kind = ""

    @classmethod
    def forward(cls, ctx, X: torch.Tensor, dim: int) -> torch.Tensor:
        p = backends.forward(cls.kind, X, dim)
        ctx.dim = dim
        ctx.save_for_backward(p)
        return p

    @classmethod
    def backward(cls, ctx, grad: torch.Tensor):
        (p,) = ctx.saved_tensors
        return backends.backward(cls.kind, p, grad, ctx.dim)[0], None


class SparsemaxFunction(_FixedAlphaFunction):
    """sparsemax(x) = argmin_{p∈Δ} ‖p − x‖² (Martins & Astudillo 2016, eq. 2)."""

    kind = "sparsemax"


class Entmax15Function(_FixedAlphaFunction):
    """1.5-entmax: p_i = [x_i/2 − τ]_+² (Peters, Niculae & Martins 2019, eq. 10)."""

    kind = "entmax15"


class EntmaxBisectFunction(torch.autograd.Function):
    """α-entmax with gradients in x and α (Correia, Niculae & Martins 2019, Prop. 1)."""

    @staticmethod
    def forward(ctx, X: torch.Tensor, alpha: Alpha, dim: int, n_iter: int,
                ensure_sum_one: bool) -> torch.Tensor:
        p = backends.forward("entmax", X, dim, alpha, n_iter, ensure_sum_one)
        ctx.dim = dim
        save_p_alpha(ctx, p, alpha)
        return p

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, alpha = saved_p_alpha(ctx)
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
    """sparsemax(x) = argmin_{p∈Δ} ‖p − x‖², i.e. p_i = [x_i − τ]_+ with τ such that Σ p = 1
    (Martins & Astudillo 2016, eq. 2).

    Args:
        X: scores, any shape, floating point (float16/bfloat16 are computed in float32).
        dim: the dimension that is mapped onto the simplex.
        k: accepted for the entmax package's signature (its partial-sort size); checked
            (a positive integer or None) and unused: the threshold is found without sorting.

    Returns:
        p, X's shape and dtype: non-negative, summing to 1 along ``dim``, exact zeros below τ.
        Differentiable in X (Jacobian diag(s) − s sᵀ/|S| with s the support indicator).
    """
    dim = check_input(X, dim)
    check_k(k)
    return _mapping("sparsemax", X, dim)


def entmax15(X: torch.Tensor, dim: int = -1, k: Optional[int] = None) -> torch.Tensor:
    """1.5-entmax: p_i = [x_i/2 − τ]_+² with τ such that Σ p = 1 (Peters, Niculae & Martins
    2019, eq. 10; π_α of eq. 8 at α = 1.5).

    Args:
        X: scores, any shape, floating point (float16/bfloat16 are computed in float32).
        dim: the dimension that is mapped onto the simplex.
        k: accepted for the entmax package's signature; checked and unused.

    Returns:
        p, X's shape and dtype, on the simplex along ``dim`` (sparse). Differentiable in X
        (Jacobian diag(s) − s sᵀ/Σs with s = √p).
    """
    dim = check_input(X, dim)
    check_k(k)
    return _mapping("entmax15", X, dim)


def sparsemax_bisect(X: torch.Tensor, dim: int = -1, n_iter: int = 50,
                     ensure_sum_one: bool = True) -> torch.Tensor:
    """sparsemax by root finding (the entmax package bisects f(τ) = Σ [x_i − τ]_+ − 1); here
    the exact finite Newton iteration of :func:`sparsemax`, so the result is the same.

    Args:
        X: scores, any shape, floating point.
        dim: the dimension that is mapped onto the simplex.
        n_iter: accepted and ignored, as by the package (which always bisects 50 times);
            a non-negative integer or None.
        ensure_sum_one: accepted and ignored (the result sums to one).

    Returns:
        p = sparsemax(X) along ``dim``, X's shape and dtype.
    """
    check_n_iter(n_iter, ignored=True)
    return sparsemax(X, dim)


def entmax_bisect(X: torch.Tensor, alpha: Alpha = 1.5, dim: int = -1, n_iter: int = 50,
                  ensure_sum_one: bool = True) -> torch.Tensor:
    """α-entmax: π_α(x) = argmax_{p∈Δ} pᵀx + H^T_α(p), i.e. p_i = [1 + (α−1)(x_i − τ)]_+^{1/(α−1)}
    with τ such that Σ p = 1 (Peters, Niculae & Martins 2019, eq. 8–9; written as in Correia,
    Niculae & Martins 2019, eq. 7, with the max-shifted scores). α = 1 is softmax, α = 2 is
    sparsemax, 1 < α < 2 lies between: sparse, smooth on its support.

    Args:
        X: scores, any shape, floating point (float16/bfloat16 are computed in float32).
        alpha: α > 0, a number, or a tensor (or array) broadcastable to X with size 1 along
            ``dim`` — one α per row, e.g. (batch, heads, 1, 1) for one α per head. A tensor
            that requires grad receives ∂L/∂α (Correia et al. 2019, Prop. 1).
        dim: the dimension that is mapped onto the simplex.
        n_iter: the most Newton iterations for τ (they stop at convergence, usually after a
            handful; the package bisects exactly ``n_iter`` times).
        ensure_sum_one: renormalise p to sum to one after the iterations.

    Returns:
        p, X's shape and dtype. Differentiable in X (Jacobian diag(s) − s sᵀ/Σs,
        s = p^{2−α}; Correia et al. 2019, eq. 10) and in a tensor α.
    """
    dim = check_input(X, dim)
    n_iter = check_n_iter(n_iter)
    alpha = check_alpha(alpha, X, dim)
    if not isinstance(alpha, torch.Tensor) and alpha == 1:
        return nonfinite.guard(lambda Z: _softmax(Z, dim), _in_compute_dtype(X), dim).to(X.dtype)
    return _mapping("entmax", X, dim, alpha, n_iter, ensure_sum_one)


def topk_sparsemax(X: torch.Tensor, k: int, dim: int = -1) -> torch.Tensor:
    """Top-k sparsemax: sparsemax over the k largest scores of each row, zero elsewhere
    (Correia, Niculae, Aziz & Martins 2020, §3.2). Equals sparsemax whenever the sparsemax
    support has at most k elements.

    Args:
        X: scores, any shape, floating point.
        k: how many scores per row may carry mass (a positive integer; k ≥ X.shape[dim] is
            plain sparsemax).
        dim: the dimension that is mapped onto the simplex.

    Returns:
        p, X's shape and dtype, at most k non-zeros per row, summing to one; differentiable.
    """
    dim = check_input(X, dim)
    k = check_k(k, required=True)
    if k >= X.shape[dim]:
        return sparsemax(X, dim)

    def truncated(Z: torch.Tensor) -> torch.Tensor:
        values, index = Z.topk(k, dim)
        return torch.zeros_like(Z).scatter(dim, index, sparsemax(values, dim))

    return nonfinite.guard(truncated, X, dim)


class Sparsemax(nn.Module):
    """Module form of :func:`sparsemax` along ``dim`` (``k`` checked and unused), e.g. as an
    attention normaliser. Input any shape; output the same shape, on the simplex along dim."""

    def __init__(self, dim: int = -1, k: Optional[int] = None):
        super().__init__()
        check_k(k)
        self.dim, self.k = dim, k

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return sparsemax(X, self.dim, self.k)


class Entmax15(nn.Module):
    """Module form of :func:`entmax15` along ``dim`` (``k`` checked and unused). Input any
    shape; output the same shape, on the simplex along ``dim``."""

    def __init__(self, dim: int = -1, k: Optional[int] = None):
        super().__init__()
        check_k(k)
        self.dim, self.k = dim, k

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return entmax15(X, self.dim, self.k)


class SparsemaxBisect(nn.Module):
    """Module form of :func:`sparsemax_bisect` along ``dim`` (``n_iter`` accepted, None by
    default as in the package, and ignored). Output X's shape, on the simplex along dim."""

    def __init__(self, dim: int = -1, n_iter: Optional[int] = None):
        super().__init__()
        check_n_iter(n_iter, ignored=True)
        self.dim, self.n_iter = dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return sparsemax_bisect(X, self.dim, self.n_iter)


class EntmaxBisect(nn.Module):
    """Module form of :func:`entmax_bisect`: π_α along ``dim`` with a fixed ``alpha`` (a number
    or a tensor with one α per row; a tensor that requires grad is trained through it) and at
    most ``n_iter`` Newton iterations. Output X's shape, on the simplex along ``dim``."""

    def __init__(self, alpha: Alpha = 1.5, dim: int = -1, n_iter: int = 50):
        super().__init__()
        check_n_iter(n_iter)
        self.alpha, self.dim, self.n_iter = alpha, dim, n_iter

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return entmax_bisect(X, self.alpha, self.dim, self.n_iter)


class EntmaxAlpha(nn.Module):
    """α-entmax with one learned α per head, α = 1 + sigmoid(a) ∈ (1, 2] (Correia, Niculae &
    Martins 2019, §3.2): the adaptively sparse attention normaliser.

    Args:
        num_heads: how many heads, each with its own α (the parameter ``alpha_logit``, (H,)).
        dim: the dimension mapped onto the simplex (keys, for attention scores).
        alpha_init: initial α, a number in (1, 2] or ``"random"`` (uniform in (1, 2)).
        head_dim: the axis of X that indexes heads (X.shape[head_dim] == num_heads).
        n_iter: the most Newton iterations per call.

    Input X of shape e.g. (batch, heads, tgt, src); output the same shape, entmax_bisect(X, α)
    with α broadcast along ``head_dim``; gradients reach ``alpha_logit``.
    """

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
