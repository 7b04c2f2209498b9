"""Ahead-of-time compilation of the attention kernels for a GPU target, without a GPU.

Compiles the kernels of one launch configuration (:mod:`.launch`) to a cubin through Triton
and reads the registers per thread and spill bytes that ``ptxas -v`` (bundled with Triton)
reports. Used by ``benchmarks/kernel_registers.py`` and tests/test_kernels_compile.py: the
interpreter runs kernels as Python and notices neither code the GPU compiler rejects nor
tiles that do not fit in registers. Imports triton.
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
from typing import Dict, NamedTuple

import torch

TRITON_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_ROW_POINTERS = ("ALPHA", "TAU", "NORM", "SUPPORT", "KEYS", "CROW", "GALPHA")
_MASKS = ("KPM", "LIVE", "SUPP")
_INTS = ("H", "Tq", "Tk", "n_qb", "n_kb", "n_rb", "seed")
_FLOATS = ("scale", "tol", "margin", "predict", "rate")


class Usage(NamedTuple):
    """What ptxas reports for one compiled kernel."""

    registers: int
    spill_bytes: int


def _signature(fn, dtype: str, constexprs: dict) -> Dict[str, str]:
    types = {}
    for name in fn.arg_names:
        if name in constexprs:
            types[name] = "constexpr"
        elif name in _ROW_POINTERS:
            types[name] = "*fp32"
        elif name in _MASKS:
            types[name] = "*i8"
        elif name == "TILES":
            types[name] = "*i32"
        elif name in _INTS:
            types[name] = "i32"
        elif name in _FLOATS:
            types[name] = "fp32"
        else:  # Q, K, V, O, DO, DQ, DK, DV
            types[name] = "*" + dtype
    return types


def compile_kernel(fn, dtype: torch.dtype, num_warps: int, arch: int = 90, **constexprs):
    """Compile the @triton.jit ``fn`` for sm_``arch`` with these constexprs; returns the
    compiled kernel (its ``asm`` holds the PTX and cubin)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile

    signature = _signature(fn, TRITON_TYPES[dtype], constexprs)
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    return triton_compile(source, target=GPUTarget("cuda", arch, 32),
                          options={"num_warps": num_warps})


def ptxas_usage(kernel, arch: int = 90) -> Usage:
    """Registers per thread and spill-store bytes of a compiled kernel, by ``ptxas -v``."""
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as folder:
        ptx = os.path.join(folder, "kernel.ptx")
        with open(ptx, "w") as handle:
            handle.write(kernel.asm["ptx"])
        run = subprocess.run([ptxas, "-v", f"-arch=sm_{arch}a", ptx, "-o",
                              os.path.join(folder, "kernel.cubin")],
                             capture_output=True, text=True, check=True)
    registers = re.findall(r"Used (\d+) registers", run.stderr)
    spills = re.findall(r"(\d+) bytes spill stores", run.stderr)
    if not registers:
        raise RuntimeError(f"ptxas -v printed no register count: {run.stderr[-500:]}")
    return Usage(int(registers[0]), int(spills[0]) if spills else 0)


def attention_kernels(dtype: torch.dtype, dim: int, kind: int, cfg: dict,
                      need_alpha: bool = True, causal: bool = True,
                      has_kpm: bool = True, dropout: bool = False) -> Dict[str, Usage]:
    """Compile the kernels one launch runs (``cfg`` from :func:`.launch.launch_config`) and
    report each one's :class:`Usage`."""
    from . import _triton_attention as streamed, _triton_resident as resident

    flags = dict(D=dim, KIND=kind, HAS_KPM=has_kpm, CAUSAL=causal, DROPOUT=dropout,
                 PREC="ieee" if dtype == torch.float32 else "tf32")
    tiles = dict(BM=cfg["BM"], BN=cfg["BN"])
    warps = cfg.get("num_warps", 4)
    built = {}
    res = cfg["resident"]
    if res is not None:
        shape = dict(RBM=res["RBM"], TKP=res["TKP"])
        built["fwd_resident"] = compile_kernel(resident.attention_fwd_resident, dtype,
                                               res["num_warps"], MAX_ITER=30, **flags,
                                               **shape, **tiles)
    else:
        built["fwd"] = compile_kernel(streamed.attention_fwd, dtype, warps, MAX_ITER=30,
                                      START_ITER=12, **flags, **tiles)
    if cfg["resident_dq"]:
        built["dq_resident"] = compile_kernel(resident.attention_bwd_dq_resident, dtype,
                                              res["num_warps"], NEED_ALPHA=need_alpha,
                                              **flags, **shape)
    else:
        built["dq"] = compile_kernel(streamed.attention_bwd_dq, dtype, warps,
                                     NEED_ALPHA=need_alpha, **flags, **tiles)
    built["dkdv"] = compile_kernel(streamed.attention_bwd_dkdv, dtype, warps, **flags, **tiles)
    return {name: ptxas_usage(kernel) for name, kernel in built.items()}
