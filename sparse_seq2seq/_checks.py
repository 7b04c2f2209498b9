"""Argument checks and dtype handling shared by the mappings and the losses."""
from __future__ import annotations

from typing import Optional, Union

import torch

HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_input(X: torch.Tensor, dim: int) -> int:
    """Validate ``X`` and ``dim``; return ``dim`` as a non-negative index."""
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")
    if not X.is_floating_point():
        raise TypeError(f"X must be a floating-point tensor, got dtype {X.dtype}")
    if X.dim() == 0:
        raise ValueError("X must have at least one dimension, got a 0-d tensor")
    if not isinstance(dim, int) or not -X.dim() <= dim < X.dim():
        raise ValueError(f"dim={dim!r} is out of range for X with {X.dim()} dimensions")
    if X.shape[dim] == 0:
        raise ValueError(f"X has size 0 along dim={dim}")
    return dim % X.dim()


def check_k(k: Optional[int], required: bool = False) -> None:
    """``k`` must be a positive integer (or None where it is optional)."""
    if k is None:
        if required:
            raise ValueError("k must be a positive integer, got None")
        return
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def check_n_iter(n_iter: int) -> None:
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter <= 0:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")


def check_alpha(alpha: Union[float, torch.Tensor], X: torch.Tensor, dim: int) -> Union[float, torch.Tensor]:
    """α must be > 0: a number, or a tensor broadcastable to X with size 1 along ``dim``."""
    if isinstance(alpha, torch.Tensor):
        if not alpha.is_floating_point():
            raise TypeError(f"alpha must be a floating-point tensor, got dtype {alpha.dtype}")
        if alpha.dim() == 0:
            return _check_alpha_value(float(alpha)) if not alpha.requires_grad else _positive(alpha)
        try:
            shape = torch.broadcast_shapes(alpha.shape, X.shape)
        except RuntimeError as err:
            raise ValueError(f"alpha of shape {tuple(alpha.shape)} does not broadcast to X of shape "
                             f"{tuple(X.shape)}") from err
        if tuple(shape) != tuple(X.shape):
            raise ValueError(f"alpha of shape {tuple(alpha.shape)} would broadcast X of shape "
                             f"{tuple(X.shape)} to {tuple(shape)}")
        offset = X.dim() - alpha.dim()
        if dim - offset >= 0 and alpha.shape[dim - offset] != 1:
            raise ValueError(f"alpha must have size 1 along dim={dim} (one alpha per row), "
                             f"got shape {tuple(alpha.shape)}")
        return _positive(alpha)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a float or a tensor, got {type(alpha).__name__}")
    return _check_alpha_value(float(alpha))


def _check_alpha_value(alpha: float) -> float:
    if not alpha > 0 or alpha != alpha or alpha == float("inf"):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return alpha


def _positive(alpha: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(alpha).all()) or bool((alpha <= 0).any()):
        raise ValueError(f"alpha must be finite and > 0 everywhere, got min {float(alpha.min())}")
    return alpha


def compute_dtype(X: torch.Tensor) -> torch.dtype:
    """Half-precision inputs are computed in float32 (they lose probability mass otherwise)."""
    return torch.float32 if X.dtype in HALF_DTYPES else X.dtype
