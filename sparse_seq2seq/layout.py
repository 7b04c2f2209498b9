"""Row layout shared by every backend of the sparse mappings.

A mapping along ``dim`` of a tensor of any shape is computed on an (n, d) contiguous matrix
of rows, d the size of ``dim``; α, a float or a tensor with size 1 along ``dim``, becomes
one value per row, an (n, 1) column.
"""
from __future__ import annotations

from typing import Union

import torch

Alpha = Union[float, torch.Tensor]
"""α of α-entmax: a number, or a tensor broadcastable to the scores with size 1 along ``dim``."""


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
