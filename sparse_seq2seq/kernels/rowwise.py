"""Row-wise sparsemax, 1.5-entmax and α-entmax (α per row, with ∂α) as Triton kernels.

The contract :mod:`sparse_seq2seq.backends` calls on CUDA rows: ``x2d`` contiguous (N, d),
the mapping along the last dim, computed in float32 with each row held on chip while its
threshold is found (kernels in :mod:`._triton_rowwise`). Importing this module imports
triton; on a CPU the kernels run only under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import os
from typing import Tuple

import torch
from torch import Tensor

from . import _triton_rowwise as kernels
from ._triton_common import KIND_ENTMAX15, KIND_GENERAL, KIND_SPARSEMAX

MAX_BLOCK = 16384  # the longest row held on chip
MAX_ITER = 40
STEP_TOL = 4 * torch.finfo(torch.float32).eps
DTYPES = (torch.float32, torch.float16, torch.bfloat16)

__all__ = ["applies", "sparsemax_fwd", "entmax15_fwd", "entmax_alpha_fwd", "sparsemax_bwd",
           "entmax15_bwd", "entmax_alpha_bwd"]


def applies(x2d: Tensor) -> bool:
    """CUDA (or CPU under the interpreter) float32/16/bf16 rows of at most 16384 entries."""
    device_ok = x2d.is_cuda or (x2d.device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1")
    return (device_ok and x2d.dim() == 2 and x2d.dtype in DTYPES and 1 <= x2d.shape[1] <= MAX_BLOCK
            and x2d.shape[0] >= 1)


def _tiles(x2d: Tensor) -> dict:
    block = max(16, 1 << (x2d.shape[1] - 1).bit_length())
    rows = max(1, min(16, 2048 // block))
    warps = 4 if block <= 2048 else (8 if block <= 8192 else 16)
    cfg = dict(ROWS=rows, BLOCK=block)
    if x2d.is_cuda:
        cfg["num_warps"] = warps
    return cfg


def _check(x2d: Tensor, name: str = "x2d") -> Tensor:
    if x2d.dim() != 2:
        raise ValueError(f"{name} must be (N, d), got shape {tuple(x2d.shape)}")
    return x2d.contiguous()


def _forward(x2d: Tensor, am1: Tensor, kind: int) -> Tensor:
    x2d = _check(x2d)
    n, d = x2d.shape
    p = torch.empty_like(x2d)
    cfg = _tiles(x2d)
    kernels.rows_fwd[(-(-n // cfg["ROWS"]),)](x2d, p, am1, n, d, STEP_TOL, KIND=kind,
                                              MAX_ITER=MAX_ITER, **cfg)
    return p


def _backward(p2d: Tensor, g2d: Tensor, am1: Tensor, kind: int, need_alpha: bool):
    p2d, g2d = _check(p2d, "p2d"), _check(g2d.to(p2d.dtype), "g2d")
    if p2d.shape != g2d.shape:
        raise ValueError(f"p2d {tuple(p2d.shape)} and g2d {tuple(g2d.shape)} differ")
    n, d = p2d.shape
    gx = torch.empty_like(p2d)
    galpha = torch.zeros(n, device=p2d.device, dtype=torch.float32)
    cfg = _tiles(p2d)
    kernels.rows_bwd[(-(-n // cfg["ROWS"]),)](p2d, g2d, gx, am1, galpha, n, d, KIND=kind,
                                              NEED_ALPHA=need_alpha, **cfg)
    return gx, galpha


def _constant_am1(x2d: Tensor, value: float) -> Tensor:
    return torch.full((x2d.shape[0],), value, device=x2d.device, dtype=torch.float32)


def _alpha_am1(alpha_rows: Tensor, n: int) -> Tensor:
    am1 = alpha_rows.reshape(-1).to(torch.float32) - 1
    if am1.numel() != n:
        raise ValueError(f"alpha_rows must hold one α per row ({n}), got {am1.numel()}")
    return am1.contiguous()


def sparsemax_fwd(x2d: Tensor) -> Tensor:
    return _forward(x2d, _constant_am1(x2d, 1.0), KIND_SPARSEMAX)


def entmax15_fwd(x2d: Tensor) -> Tensor:
    return _forward(x2d, _constant_am1(x2d, 0.5), KIND_ENTMAX15)


def entmax_alpha_fwd(x2d: Tensor, alpha_rows: Tensor) -> Tensor:
    """α-entmax with one α ∈ (1, 2] per row (``alpha_rows`` of N values)."""
    return _forward(x2d, _alpha_am1(alpha_rows, x2d.shape[0]), KIND_GENERAL)


def sparsemax_bwd(p2d: Tensor, g2d: Tensor) -> Tensor:
    return _backward(p2d, g2d, _constant_am1(p2d, 1.0), KIND_SPARSEMAX, False)[0]


def entmax15_bwd(p2d: Tensor, g2d: Tensor) -> Tensor:
    return _backward(p2d, g2d, _constant_am1(p2d, 0.5), KIND_ENTMAX15, False)[0]


def entmax_alpha_bwd(p2d: Tensor, g2d: Tensor, alpha_rows: Tensor) -> Tuple[Tensor, Tensor]:
    """(gx2d, galpha_rows[N]) for p2d = α-entmax(x2d) and upstream gradient g2d."""
    return _backward(p2d, g2d, _alpha_am1(alpha_rows, p2d.shape[0]), KIND_GENERAL, True)
