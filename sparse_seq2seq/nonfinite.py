"""NaN and +inf scores: one rule for every mapping and loss, whichever backend computes it.

* A row with a NaN gives NaN in the whole row (as ``torch.softmax``); so do the gradients
  flowing from it, in the scores and in α.
* A row with +inf (and no NaN) gives the limit of the mapping as those scores grow without
  bound together: the mass spread evenly over the +inf entries, zeros elsewhere. The output
  no longer moves with any finite change of the scores, so its gradient is zero.
* A row that is entirely −inf (fully masked) gives zeros (the backends do this themselves),
  and −inf entries of other rows get exact zeros.

Rows with NaN or +inf are found with one reduction over the scores (their sum is NaN or +inf
when some row has one); the backends then see those rows replaced by zeros,
and their outputs are replaced by the rule's.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch

from .layout import Alpha


class BadRows(NamedTuple):
    """Rows (X's shape with size 1 along ``dim``) that hold a NaN, or a +inf and no NaN."""
    nan: torch.Tensor
    posinf: torch.Tensor


def find(X: torch.Tensor, dim: int) -> Optional[BadRows]:
    """The rows of X along ``dim`` that hold NaN or +inf; None when there are none."""
    if X.numel() == 0:
        return None
    # the sum is NaN or +inf whenever some entry is NaN or +inf (−inf masks only pull it
    # down); a sum that overflowed on finite scores is caught by the row test below
    total = float(X.detach().sum())
    if not (math.isnan(total) or total == math.inf):
        return None
    nan = X.isnan().any(dim, keepdim=True)
    posinf = X.isposinf().any(dim, keepdim=True) & ~nan
    return BadRows(nan, posinf) if bool((nan | posinf).any()) else None


def limit(X: torch.Tensor, dim: int, bad: BadRows) -> torch.Tensor:
    """The rule's output on the bad rows (anything elsewhere): NaN, or uniform on +inf."""
    posinf = X.isposinf()
    uniform = posinf.to(X.dtype) / posinf.sum(dim, keepdim=True).clamp_min(1).to(X.dtype)
    return uniform.masked_fill(bad.nan, math.nan)


class _Override(torch.autograd.Function):
    """p with the bad rows replaced by the rule; gradients: none through the replaced rows of p,
    NaN into X (and α) from the NaN rows."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, X: torch.Tensor, alpha: Optional[torch.Tensor], dim: int,
                bad: BadRows) -> torch.Tensor:
        ctx.replaced = bad.nan | bad.posinf
        ctx.nan = bad.nan
        ctx.alpha_shape = None if alpha is None else alpha.shape
        return torch.where(ctx.replaced, limit(X, dim, bad).to(p.dtype), p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_p = grad.masked_fill(ctx.replaced, 0.0)
        nan_rows = torch.zeros(ctx.nan.shape, dtype=grad.dtype, device=grad.device).masked_fill_(
            ctx.nan, math.nan)
        grad_x = nan_rows.expand(grad.shape) if ctx.needs_input_grad[1] else None
        grad_alpha = None
        if ctx.alpha_shape is not None and ctx.needs_input_grad[2]:
            grad_alpha = nan_rows.sum_to_size(ctx.alpha_shape)
        return grad_p, grad_x, grad_alpha, None, None


def guard(mapping: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, dim: int,
          alpha: Optional[Alpha] = None) -> torch.Tensor:
    """``mapping(X)`` (a mapping along ``dim``, with α ``alpha`` when it has one) under the rule
    of this module; ``mapping`` sees no NaN and no +inf."""
    bad = find(X, dim)
    if bad is None:
        return mapping(X)
    clean = X.masked_fill(bad.nan | bad.posinf, 0.0)
    alpha_t = alpha if isinstance(alpha, torch.Tensor) else None
    return _Override.apply(mapping(clean), X, alpha_t, dim, bad)


def loss_scores(X: torch.Tensor, bad: Optional[BadRows]) -> torch.Tensor:
    """Scores for the Fenchel–Young loss value under the rule (last dim = classes): rows with
    +inf become 0 on the +inf entries and −inf elsewhere. The loss is shift-invariant, so this
    is its limit: H_α(p) for a gold score of +inf (0 when it is the only one), +inf otherwise."""
    if bad is None or not bool(bad.posinf.any()):
        return X
    limit_row = torch.where(X.isposinf(), 0.0, -math.inf).to(X.dtype)
    return torch.where(bad.posinf, limit_row, X)
