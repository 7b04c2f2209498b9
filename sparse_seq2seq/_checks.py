"""Argument checks and dtype handling shared by the mappings and the losses.

They accept what the ``entmax`` package accepts (numpy scalars and one-element tensors where it
takes an integer or a float, integer tensors and arrays for α) and return plain values.
"""
from __future__ import annotations

import numbers
import operator
from typing import Optional, Union

import numpy as np
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
    dim = as_int(dim, "dim", error=ValueError)
    if not -X.dim() <= dim < X.dim():
        raise ValueError(f"dim={dim!r} is out of range for X with {X.dim()} dimensions")
    if X.shape[dim] == 0:
        raise ValueError(f"X has size 0 along dim={dim}")
    return dim % X.dim()


def as_int(value, name: str, integral_floats: bool = False, error=TypeError) -> int:
    """``value`` as an int: an int, a numpy integer or a one-element integer tensor (and, with
    ``integral_floats``, a float or float tensor holding a whole number); not a bool."""
    item = value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        item = value.item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        item = value.item()
    if not isinstance(item, (bool, np.bool_)):
        try:
            return operator.index(item)
        except TypeError:
            if integral_floats and isinstance(item, numbers.Real) and float(item).is_integer():
                return int(item)
    raise error(f"{name} must be an integer, got {value!r}")


def check_k(k, required: bool = False) -> Optional[int]:
    """``k`` must be a positive integer (or None where it is optional)."""
    if k is None:
        if required:
            raise ValueError("k must be a positive integer, got None")
        return None
    value = as_int(k, "k", error=ValueError)
    if value <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return value


def check_n_iter(n_iter, ignored: bool = False) -> Optional[int]:
    """``n_iter`` must be a positive integer; where it is ``ignored`` (sparsemax by bisection,
    which the package also solves with its own fixed count) None and 0 pass too."""
    if ignored and n_iter is None:
        return None
    value = as_int(n_iter, "n_iter", error=ValueError)
    if value <= 0 and not (ignored and value == 0):
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    return value


def check_ignore_index(ignore_index) -> int:
    """An integer class index to leave out of the loss (a number, numpy scalar or one-element
    tensor holding a whole number, as ``torch.nn`` losses and the package take)."""
    return as_int(ignore_index, "ignore_index", integral_floats=True)


def check_alpha(alpha: Union[float, torch.Tensor], X: torch.Tensor, dim: int) -> Union[float, torch.Tensor]:
    """α must be > 0: a number, or a tensor (or array) broadcastable to X with size 1 along
    ``dim``; integer tensors and arrays are taken as X's dtype."""
    if isinstance(alpha, np.ndarray) or (isinstance(alpha, np.generic) and not isinstance(alpha, np.bool_)):
        alpha = torch.as_tensor(np.asarray(alpha, dtype=np.float64), dtype=X.dtype, device=X.device)
    if isinstance(alpha, torch.Tensor):
        if alpha.dtype == torch.bool or alpha.is_complex():
            raise TypeError(f"alpha must be a real tensor, got dtype {alpha.dtype}")
        if not alpha.is_floating_point():
            alpha = alpha.to(X.dtype)
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
