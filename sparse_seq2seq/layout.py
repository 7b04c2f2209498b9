"""Row layout shared by every backend of the sparse mappings.

A mapping along ``dim`` of a tensor of any shape is computed on an (n, d) contiguous matrix
of rows, d the size of ``dim``; α, a float or a tensor with size 1 along ``dim``, becomes
one value per row, an (n, 1) column. Also here: what every mapping does to its rows first
(:func:`shift_by_row_max`) and how an autograd Function keeps α for its backward
(:func:`save_p_alpha`, :func:`saved_p_alpha`).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import torch

Alpha = Union[float, torch.Tensor]
"""α of α-entmax: a number, or a tensor broadcastable to the scores with size 1 along ``dim``."""


def save_p_alpha(ctx: Any, p: torch.Tensor, alpha: Alpha) -> None:
    """Keep the output p and α of an autograd Function's forward for its backward: a tensor α
    with p through ``ctx.save_for_backward``, a float on ``ctx``; ``ctx.alpha_is_tensor`` says
    which. :func:`saved_p_alpha` gives them back."""
    ctx.alpha_is_tensor = isinstance(alpha, torch.Tensor)
    if ctx.alpha_is_tensor:
        ctx.save_for_backward(p, alpha)
    else:
        ctx.alpha = alpha
        ctx.save_for_backward(p)


def saved_p_alpha(ctx: Any) -> Tuple[torch.Tensor, Alpha]:
    """(p, α) as :func:`save_p_alpha` kept them, in backward."""
    if ctx.alpha_is_tensor:
        p, alpha = ctx.saved_tensors
        return p, alpha
    (p,) = ctx.saved_tensors
    return p, ctx.alpha


def shift_by_row_max(X: torch.Tensor, dim: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(X − max X along ``dim``, dead): the max-shifted scores every mapping starts from (the
    mappings are invariant to it), for X without NaN or +inf. Rows that are all −inf are taken
    as zeros so they shift to zeros, not NaN; ``dead`` is their keepdim mask, None when there
    are none, for the caller to zero those rows of its output."""
    top = X.amax(dim, keepdim=True)
    dead = torch.isneginf(top)
    if not bool(dead.any()):
        return X - top, None
    return X.masked_fill(dead, 0.0) - top.masked_fill(dead, 0.0), dead


def to_rows(X: torch.Tensor, dim: int) -> torch.Tensor:
    """(n, d) contiguous view of X with ``dim`` last (a copy only when ``dim`` is not last or X
    is not contiguous)."""
    if dim % X.dim() == X.dim() - 1 and X.is_contiguous():
        return X.view(-1, X.shape[-1])
    return X.movedim(dim, -1).contiguous().view(-1, X.shape[dim])


def from_rows(rows: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    """Undo :func:`to_rows`: rows back to ``like``'s shape, ``dim`` in its place."""
    if dim % like.dim() == like.dim() - 1:
        return rows.view(like.shape)
    shape = list(like.movedim(dim, -1).shape)
    return rows.view(shape).movedim(-1, dim)


def row_shape(X: torch.Tensor, dim: int) -> list:
    """X's shape with size 1 along ``dim``: the shape of one value per row."""
    shape = list(X.shape)
    shape[dim] = 1
    return shape


def alpha_rows(alpha: Alpha, X: torch.Tensor, dim: int) -> Alpha:
    """α as the backends take it: a float stays a float; a tensor becomes an (n, 1) column of
    X's dtype, detached (the gradient in α is returned per row and summed by the caller)."""
    if not isinstance(alpha, torch.Tensor):
        return float(alpha)
    return to_rows(alpha.detach().to(X.dtype).expand(row_shape(X, dim)), dim)
