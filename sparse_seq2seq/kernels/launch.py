"""Launch configurations of the fused attention kernels (no triton import).

Two kernel families (see :mod:`._triton_attention` and :mod:`._triton_resident`):

* streamed: one program per (BM query rows, batch·head), key blocks of BN streamed;
* row-resident: rows of at most TKP keys (a power of two) held on chip whole, RBM rows per
  program; its backward's dq too where the row fits (:func:`resident_dq`), else the
  streamed dq kernel; dk/dv always come from the streamed key-block kernel at (BM, BN).

On a GPU the tile sizes and warps are ones that compile for sm_90 without register spills
(``python benchmarks/kernel_registers.py`` compiles every entry and prints registers and
spill bytes; tests/test_kernels_compile.py checks them). float32 with head dim 128 spills in
every tiling tried (its entry spills least); float32 dk/dv without masks spills ≤ 16 bytes. Under Triton's interpreter
the tiles are small (:data:`INTERPRETER_BLOCKS`) so that tests stay quick.
"""
from __future__ import annotations

from typing import Optional

import torch

# (half precision, head dim) → (BM, BN, num_warps) of the streamed kernels on a GPU
STREAMED_GPU = {(True, 32): (64, 32, 4), (True, 64): (32, 32, 4), (True, 128): (32, 32, 8),
                (False, 32): (32, 32, 8), (False, 64): (32, 32, 8), (False, 128): (16, 32, 8)}
# (half precision, head dim) → the longest rows (keys) the resident kernels hold on a GPU:
# (forward, dq); rows between the two take the resident forward and the streamed dq kernel
RESIDENT_GPU_KEYS = {(True, 32): (512, 256), (True, 64): (512, 256), (True, 128): (256, 128),
                     (False, 32): (64, 64), (False, 64): (64, 64), (False, 128): (0, 0)}
RESIDENT_GPU_ROWS, RESIDENT_GPU_WARPS = 16, 8
RESIDENT_MAX_KEYS = 512  # caps on every device (0 turns the resident kernels off)
RESIDENT_DQ_MAX_KEYS = 512
INTERPRETER_BLOCKS = {"BM": 32, "BN": 32}  # tl.dot needs at least 16
INTERPRETER_TILE = 1024  # scores in a resident tile under the interpreter


def _half(dtype: torch.dtype) -> bool:
    return dtype in (torch.float16, torch.bfloat16)


def streamed_config(device_type: str, dtype: torch.dtype, dim: int, tq: int) -> dict:
    """BM, BN (and num_warps on a GPU) of the streamed kernels; BM = 16 for ≤ 16 queries."""
    if device_type != "cuda":
        return dict(INTERPRETER_BLOCKS)
    block_m, block_n, warps = STREAMED_GPU[(_half(dtype), dim)]
    return dict(BM=16 if tq <= 16 else block_m, BN=block_n, num_warps=warps)


def resident_config(device_type: str, dtype: torch.dtype, dim: int, tk: int,
                    streamed: dict) -> Optional[dict]:
    """RBM, TKP, num_warps of the row-resident forward when a row of ``tk`` keys fits, else
    None. TKP is the power of two ≥ tk (at least BN, so the support blocks of the streamed
    backward are whole); RBM divides BM."""
    width = _width(tk, streamed)
    if device_type == "cuda":
        limit = min(RESIDENT_MAX_KEYS, RESIDENT_GPU_KEYS[(_half(dtype), dim)][0])
        rows, warps = min(streamed["BM"], RESIDENT_GPU_ROWS), RESIDENT_GPU_WARPS
    else:
        limit = RESIDENT_MAX_KEYS
        rows, warps = min(streamed["BM"], max(16, INTERPRETER_TILE // width)), 4
    if width > limit:
        return None
    return dict(RBM=rows, TKP=width, num_warps=warps)


def resident_dq(device_type: str, dtype: torch.dtype, dim: int, tk: int, streamed: dict) -> bool:
    """Whether the backward's dq kernel may hold a row of ``tk`` keys too (it keeps more
    tiles live than the forward: g, s̃, s̃ g and the ∂α terms)."""
    limit = RESIDENT_DQ_MAX_KEYS
    if device_type == "cuda":
        limit = min(limit, RESIDENT_GPU_KEYS[(_half(dtype), dim)][1])
    return _width(tk, streamed) <= min(limit, RESIDENT_MAX_KEYS)


def launch_config(device_type: str, dtype: torch.dtype, dim: int, tq: int, tk: int,
                  resident: bool = True) -> dict:
    """The whole launch configuration of one attention call: the streamed kernels' tile sizes
    (:func:`streamed_config`), ``resident`` the resident forward's (:func:`resident_config`;
    None when the row does not fit or ``resident`` is False) and ``resident_dq`` whether the
    backward's dq kernel is resident too (:func:`resident_dq`)."""
    cfg = streamed_config(device_type, dtype, dim, tq)
    cfg["resident"] = resident_config(device_type, dtype, dim, tk, cfg) if resident else None
    cfg["resident_dq"] = (cfg["resident"] is not None
                          and resident_dq(device_type, dtype, dim, tk, cfg))
    return cfg


def _width(tk: int, streamed: dict) -> int:
    return max(streamed["BN"], 1 << max(tk - 1, 0).bit_length())
