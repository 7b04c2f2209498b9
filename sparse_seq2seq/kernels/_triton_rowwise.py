"""Triton kernels of the row-wise sparse mappings (imports triton; loaded lazily).

Each program holds ROWS whole rows on chip: the max, then safeguarded Newton on
F(τ) = (Σ p)^{α−1} (each row stopping on its own), then p = q-exp(z − τ)/Σ p, in float32.
Special rows: any NaN → NaN; +inf entries → uniform mass on them; all −inf → zeros.
Backward: gx = s̃ (g − Σ s̃g/Σ s̃) with s̃ = p^{2−α}, and gᵀ∂p/∂α (Correia et al. 2019, Prop. 1).
"""
import triton
import triton.language as tl

from ._triton_common import LN2, expm1_ratio, newton_update, qexp


@triton.jit
def _row_tile(X, n, d, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    ok = (rows < n)[:, None] & (cols < d)[None, :]
    offs = rows.to(tl.int64)[:, None] * d + cols[None, :]
    return rows, ok, offs


@triton.jit
def rows_fwd(X, P, AM1, n, d, tol, ROWS: tl.constexpr, BLOCK: tl.constexpr, KIND: tl.constexpr,
             MAX_ITER: tl.constexpr):
    rows, ok, offs = _row_tile(X, n, d, ROWS, BLOCK)
    x = tl.load(X + offs, mask=ok, other=float("-inf")).to(tl.float32)
    am1 = tl.load(AM1 + rows, mask=rows < n, other=1.0)
    top = tl.max(x, 1)
    has_nan = tl.sum((x != x).to(tl.int32), 1) > 0
    pos_inf = x == float("inf")
    n_inf = tl.sum(pos_inf.to(tl.float32), 1)
    dead = top == float("-inf")
    special = has_nan | (n_inf > 0) | dead | (rows >= n)
    z = tl.where(special[:, None], float("-inf"), x - tl.where(special, 0.0, top)[:, None])
    count = tl.sum((z > float("-inf")).to(tl.float32), 1)
    lo = tl.zeros((ROWS,), tl.float32)
    hi = -expm1_ratio(-tl.log(tl.maximum(count, 1.0)), am1)
    tau = lo
    done = special
    it = 0
    active = tl.sum((~done).to(tl.int32), 0)
    while (it < MAX_ITER) & (active > 0):
        p, slope = qexp(z - tau[:, None], am1[:, None], KIND)
        tau, lo, hi, done = newton_update(tau, lo, hi, tl.sum(p, 1), tl.sum(slope, 1), am1,
                                          done, tol)
        active = tl.sum((~done).to(tl.int32), 0)
        it += 1
    p, slope = qexp(z - tau[:, None], am1[:, None], KIND)
    total = tl.sum(p, 1)
    p = p / tl.where(total > 0.0, total, 1.0)[:, None]
    uniform = tl.where(pos_inf, 1.0, 0.0) / tl.maximum(n_inf, 1.0)[:, None]
    p = tl.where((n_inf > 0)[:, None], uniform, p)
    p = tl.where(has_nan[:, None], float("nan"), p)
    tl.store(P + offs, p.to(P.dtype.element_ty), mask=ok)


@triton.jit
def rows_bwd(P, G, GX, AM1, GALPHA, n, d, ROWS: tl.constexpr, BLOCK: tl.constexpr,
             KIND: tl.constexpr, NEED_ALPHA: tl.constexpr):
    rows, ok, offs = _row_tile(P, n, d, ROWS, BLOCK)
    p = tl.load(P + offs, mask=ok, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=ok, other=0.0).to(tl.float32)
    am1 = tl.load(AM1 + rows, mask=rows < n, other=1.0)
    on = p > 0.0
    log2_p = tl.log2(tl.where(on, p, 1.0))
    if KIND == 1:
        slope = tl.where(on, 1.0, 0.0)
    elif KIND == 2:
        slope = tl.sqrt(p)
    else:
        slope = tl.where(on, tl.exp2((1.0 - am1[:, None]) * log2_p), 0.0)
    slope_sum = tl.sum(slope, 1)
    c = tl.sum(g * slope, 1) / tl.where(slope_sum > 0.0, slope_sum, 1.0)
    gx = slope * (g - c[:, None])
    tl.store(GX + offs, gx.to(GX.dtype.element_ty), mask=ok)
    if NEED_ALPHA:
        ln_p = LN2 * log2_p
        p_ln_p = p * ln_p
        g_p = tl.sum(g * p, 1)
        entropy = -tl.sum(p_ln_p, 1)
        g_h = -tl.sum(g * p_ln_p, 1)
        safe = tl.where(am1 < 1e-4, 1.0, am1)
        closed = (g_p - c) / (safe * safe) + (g_h - c * entropy) / safe
        limit = -0.5 * (tl.sum(g * p_ln_p * ln_p, 1) - g_p * tl.sum(p_ln_p * ln_p, 1))
        tl.store(GALPHA + rows, tl.where(am1 < 1e-4, limit, closed), mask=rows < n)


def compile_check(build, kind: int) -> None:
    """Compile both kernels ahead of time with ``build(fn, pointers, scalars, options, **constexprs)``
    (used by the tests to check the GPU compiler accepts them without a GPU)."""
    build(rows_fwd, dict(X="*fp32", P="*fp32", AM1="*fp32"), dict(n="i32", d="i32", tol="fp32"),
          {"num_warps": 4}, ROWS=4, BLOCK=1024, KIND=kind, MAX_ITER=30)
    build(rows_bwd, dict(P="*fp32", G="*fp32", GX="*fp32", AM1="*fp32", GALPHA="*fp32"),
          dict(n="i32", d="i32"), {"num_warps": 4}, ROWS=4, BLOCK=1024, KIND=kind,
          NEED_ALPHA=kind == 0)
