"""Fused α-entmax attention for rows that fit on chip (imports triton; loaded lazily).

When every key of a query row fits in one (RBM × TKP) tile (Tk ≤ TKP, a power of two), the
scores are computed once and kept in registers while τ is found, so the forward costs one
q kᵀ and one p v product per key, as softmax flash attention does, instead of one q kᵀ per
Newton sweep:
  * forward: s = scale·q kᵀ, the row root τ by safeguarded Newton in registers (the same
    step as the streamed kernels), O = Σ_j p_j v_j / Σ_j p_j; it records which (BM, BN)
    blocks of the streamed backward hold support;
  * backward, per query tile: g = dO vᵀ, the row sums c = Σ s̃g/Σ s̃ and ∂α, then
    dq = Σ_j s̃_j (g_j − c) k_j with c already known: three products, not four. dk and dv
    come from the streamed key-block kernel over the recorded blocks.
(Correia, Niculae & Martins 2019, eq. 10 and Prop. 1.)
"""
import triton
import triton.language as tl

from ._triton_common import qexp
from ._triton_tiles import (dropout_scale, grad_sums, nan_count, query_block, row_shift,
                            saved_rows, score_tile, store_row_grads, store_rows, subset_root,
                            value_grads)


@triton.jit
def attention_fwd_resident(Q, K, V, O, ALPHA, KPM, TAU, NORM, SUPPORT, KEYS, SUPP,
                           H, Tq, Tk, n_rb, n_qb, n_kb, scale, tol, seed, rate,
                           D: tl.constexpr, RBM: tl.constexpr, TKP: tl.constexpr,
                           BM: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                           HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr,
                           MAX_ITER: tl.constexpr, DROPOUT: tl.constexpr):
    pid_m, bh, offs_m, offs_d, row_ok, Kb, Vb, kpm_row, _, tile, q, am1 = query_block(
        Q, K, V, KPM, SUPP, ALPHA, H, Tq, Tk, n_rb, 1, D, RBM)
    rows = bh.to(tl.int64) * Tq + offs_m
    offs_n = tl.arange(0, TKP)
    s = score_tile(q, Kb, kpm_row, offs_m, offs_n, offs_d, Tk, Tk - Tq, scale,
                   D, HAS_KPM, CAUSAL, PREC)
    count = tl.sum((s > float("-inf")).to(tl.float32), 1)
    nan_row = (nan_count(s) > 0.0) & row_ok  # not searched: NaN out, every block kept
    empty = (count == 0.0) | (~row_ok) | nan_row
    m = tl.where(empty, 0.0, tl.max(s, 1))
    z = row_shift(s, m)
    tau = subset_root(z, z, am1, tol, KIND, MAX_ITER, False)  # the whole row: its exact τ
    p, _ = qexp(z - tau[:, None], am1, KIND)
    p = tl.where(empty[:, None], 0.0, p)
    total = tl.sum(p, 1)
    norm = tl.where(total > 0.0, total, 0.0)
    v = tl.load(Vb + offs_n[:, None] * D + offs_d[None, :], mask=(offs_n < Tk)[:, None],
                other=0.0)
    kept = p
    if DROPOUT:
        kept = p * dropout_scale(seed, bh, offs_m, offs_n, Tk, rate)
    acc = tl.dot(kept.to(v.dtype), v, input_precision=PREC)
    store_rows(O, TAU, NORM, SUPPORT, bh, rows, tile, row_ok, Tq, acc, norm,
               tl.sum((p > 0.0).to(tl.float32), 1), m, tau, nan_row, D)
    tl.store(KEYS + rows, count, mask=row_ok)
    # the (BM, BN) blocks of the streamed dk/dv kernel that hold support (a NaN row: all of
    # its blocks): only ones are written (SUPP starts at zero), so tiles sharing a block
    # cannot undo each other
    column = tl.max(((p > 0.0) | nan_row[:, None]).to(tl.int32), 0)
    hit = tl.max(tl.reshape(column, (TKP // BN, BN)), 1)
    kbs = tl.arange(0, TKP // BN)
    block_row = SUPP + (bh.to(tl.int64) * n_qb + (pid_m * RBM) // BM) * n_kb
    tl.store(block_row + kbs, hit.to(tl.int8), mask=(kbs < n_kb) & (hit > 0))


@triton.jit
def attention_bwd_dq_resident(Q, K, V, DO, DQ, ALPHA, KPM, TAU, NORM, CROW, GALPHA,
                              H, Tq, Tk, n_rb, scale, seed, rate,
                              D: tl.constexpr, RBM: tl.constexpr, TKP: tl.constexpr,
                              KIND: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr,
                              PREC: tl.constexpr, NEED_ALPHA: tl.constexpr,
                              DROPOUT: tl.constexpr):
    pid_m, bh, offs_m, offs_d, row_ok, Kb, Vb, kpm_row, _, tile, q, am1 = query_block(
        Q, K, V, KPM, KPM, ALPHA, H, Tq, Tk, n_rb, 1, D, RBM)
    rows, do, thresh, norm, has_mass, log2_norm = saved_rows(DO, TAU, NORM, bh, offs_m, tile,
                                                             row_ok, Tq, D)
    offs_n = tl.arange(0, TKP)
    s = score_tile(q, Kb, kpm_row, offs_m, offs_n, offs_d, Tk, Tk - Tq, scale,
                   D, HAS_KPM, CAUSAL, PREC)
    s = tl.where(has_mass[:, None], s, float("-inf"))
    k, v, g = value_grads(do, Kb, Vb, bh, offs_m, offs_n, offs_d, Tk, seed, rate, D, PREC,
                          DROPOUT)
    slope, slope_g, slope_sum, g_slope, g_p, entropy, g_h, p_l2, g_p_l2 = grad_sums(
        s, thresh, log2_norm, am1, g, KIND, NEED_ALPHA)
    c = store_row_grads(CROW, GALPHA, rows, row_ok, has_mass, thresh, am1, slope_sum, g_slope,
                        g_p, entropy, g_h, p_l2, g_p_l2, NEED_ALPHA)
    ds = slope_g - c[:, None] * slope
    dq = tl.dot(ds.to(k.dtype), k, input_precision=PREC)
    tl.store(DQ + bh.to(tl.int64) * Tq * D + tile, (dq * scale).to(DQ.dtype.element_ty),
             mask=row_ok[:, None])
