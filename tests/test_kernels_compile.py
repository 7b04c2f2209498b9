"""The Triton kernels compile to a CUDA binary (sm_90, Hopper) without a GPU.

The interpreter runs kernels as Python and would not notice code the GPU compiler rejects
(loop-carried types, scalar branches, dot shapes); ahead-of-time compilation to cubin does.
Runs in a subprocess without TRITON_INTERPRET (the interpreter replaces @triton.jit).
"""
import os
import subprocess
import sys
import textwrap

import pytest

import triton  # noqa: F401  (CI installs triton: a missing triton fails this test)

SCRIPT = textwrap.dedent("""
    import sys
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile
    from sparse_seq2seq.kernels import _triton_attention as A, _triton_rowwise as R

    def build(fn, pointers, scalars, options, **constexprs):
        types = {**pointers, **scalars, **{name: "constexpr" for name in constexprs}}
        signature = {name: types[name] for name in fn.arg_names}  # in the kernel's order
        src = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
        return compile(src, target=GPUTarget("cuda", 90, 32), options=options)

    def attention(dtype, kind, dim, causal, has_kpm, need_alpha):
        t, prec = "*" + dtype, "ieee" if dtype == "fp32" else "tf32"
        tiles = dict(D=dim, BM=64, BN=64, KIND=kind, HAS_KPM=has_kpm, CAUSAL=causal, PREC=prec)
        ints = {n: "i32" for n in ("H", "Tq", "Tk", "n_qb", "n_kb")}
        rows = {n: "*fp32" for n in ("ALPHA", "TAU", "NORM")}
        opts = {"num_warps": 8 if dim == 128 else 4}
        build(A.attention_fwd, dict(Q=t, K=t, V=t, O=t, KPM="*i8", SUPPORT="*fp32", KEYS="*fp32",
                                    LIVE="*i8", SUPP="*i8", TILES="*i32", **rows),
              dict(ints, scale="fp32", tol="fp32", margin="fp32", predict="fp32"), opts,
              MAX_ITER=30, START_ITER=12, **tiles)
        build(A.attention_bwd_dq, dict(Q=t, K=t, V=t, DO=t, DQ=t, KPM="*i8", LIVE="*i8",
                                       CROW="*fp32", GALPHA="*fp32", **rows),
              dict(ints, scale="fp32"), opts, NEED_ALPHA=need_alpha, **tiles)
        build(A.attention_bwd_dkdv, dict(Q=t, K=t, V=t, DO=t, DK=t, DV=t, KPM="*i8", LIVE="*i8",
                                         CROW="*fp32", **rows),
              dict(ints, scale="fp32"), opts, **tiles)

    attention("fp16", 0, 64, True, True, True)
    attention("bf16", 1, 128, False, True, False)
    attention("fp32", 2, 32, True, False, False)
    for kind in (0, 1, 2):
        R.compile_check(build, kind)
    print("compiled")
""")


@pytest.mark.slow
def test_kernels_compile_for_hopper():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0 and "compiled" in run.stdout, run.stderr[-4000:]
