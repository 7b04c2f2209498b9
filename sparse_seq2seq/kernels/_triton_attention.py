"""Triton kernels of the fused α-entmax attention (imports triton; loaded lazily).

Forward, one program per (query block, batch·head), key blocks streamed, nothing of size
Tq × Tk stored:
  1. one sweep for the row maxima m of the scores s = scale·q kᵀ (masked keys −inf), the key
     counts and, per key column j mod BN, the two largest scores: the root τ₀ of the entmax
     equation over those 2·BN scores alone starts the search at or just below τ;
  2. safeguarded Newton on F(τ) = (Σ_j p_j)^{α−1} over the live key blocks, each row
     stopping on its own (z = s − m, bracket [0, (1 − n^{1−α})/(α−1)], n the row's key
     count); a key block whose every score is below the support at the bracket's lower end
     is marked dead (the support only shrinks as τ grows). The sweep in which every
     searching row is expected to finish also forms O = Σ_j p_j v_j / Σ_j p_j, so no
     separate output sweep is spent.
Saved per row: τ + m and Σ p (and, for the density statistics, the support size and the
number of unmasked keys); per (query block, key block) whether the block holds support.
Backward recomputes the scores of those blocks only, once per kernel: per query block the
row sums c = Σ s̃g/Σ s̃ (s̃ = p^{2−α}, g = dO·v), the row's ∂α and dq in one sweep; per key
block dk and dv
(Correia, Niculae & Martins 2019, eq. 10 and Prop. 1).
"""
import triton
import triton.language as tl

from ._triton_common import (KIND_ENTMAX15, KIND_GENERAL, KIND_SPARSEMAX,  # noqa: F401
                             expm1_ratio, newton_update, qexp)
from ._triton_tiles import (dropout_scale, grad_sums, key_blocks, nan_count, probs_tile,
                            query_block, row_shift, saved_rows, score_tile, store_row_grads,
                            store_rows, subset_root, value_grads)


@triton.jit
def attention_fwd(Q, K, V, O, ALPHA, KPM, TAU, NORM, SUPPORT, KEYS, LIVE, SUPP, TILES,
                  H, Tq, Tk, n_qb, n_kb, scale, tol, margin, predict, seed, rate,
                  D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                  HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr,
                  MAX_ITER: tl.constexpr, START_ITER: tl.constexpr, DROPOUT: tl.constexpr):
    pid_m, bh, offs_m, offs_d, row_ok, Kb, Vb, kpm_row, live_row, tile, q, am1 = query_block(
        Q, K, V, KPM, LIVE, ALPHA, H, Tq, Tk, n_qb, n_kb, D, BM)
    supp_row = SUPP + (bh.to(tl.int64) * n_qb + pid_m) * n_kb
    rows = bh.to(tl.int64) * Tq + offs_m
    q_shift = Tk - Tq
    nb = key_blocks(pid_m, Tq, Tk, BM, BN, CAUSAL)

    # pass 1: per row and key column (j mod BN) the two largest scores, hence the row maxima,
    # the key counts and a start for τ: the root over those 2·BN scores alone
    top = tl.full((BM, BN), float("-inf"), tl.float32)
    second = tl.full((BM, BN), float("-inf"), tl.float32)
    count = tl.zeros((BM,), tl.float32)
    nans = tl.zeros((BM,), tl.float32)
    for kb in range(0, nb):
        offs_n = kb * BN + tl.arange(0, BN)
        s = score_tile(q, Kb, kpm_row, offs_m, offs_n, offs_d, Tk, q_shift, scale,
                        D, HAS_KPM, CAUSAL, PREC)
        second = tl.maximum(second, tl.minimum(top, s))
        top = tl.maximum(top, s)
        count += tl.sum((s > float("-inf")).to(tl.float32), 1)
        nans += nan_count(s)
        tl.store(live_row + kb, 1)
    # a NaN row is not searched: it outputs NaN and keeps its blocks for the backward's NaN
    nan_row = (nans > 0.0) & row_ok
    empty = (count == 0.0) | (~row_ok) | nan_row
    m = tl.where(empty, 0.0, tl.max(top, 1))
    tau = subset_root(row_shift(top, m), row_shift(second, m), am1, tol, KIND, START_ITER, True)
    tl.store(KEYS + rows, count, mask=row_ok)
    tl.debug_barrier()

    # then sweeps over the live key blocks: Newton on F(τ) = (Σp)^{α−1} for the rows still
    # searching; a sweep also forms the output when every searching row is expected to
    # finish in it (|Σp − 1| ≤ ``predict`` last time, or τ already converged); a row
    # finishes in such a sweep when τ had converged or Σp is within 2·tol of one.
    # A one-block row's start is its exact τ, so its first sweep forms the output.
    lo = tl.zeros((BM,), tl.float32)
    hi = -expm1_ratio(-tl.log(tl.maximum(count, 1.0)), am1)
    conv = empty
    finished = offs_m < 0
    miss = tl.where(nb <= 1, 0.0, 1.0) + tl.zeros((BM,), tl.float32)
    it = 0
    score_tiles = nb
    value_tiles = 0
    searching = tl.sum((~finished).to(tl.int32), 0)
    while searching > 0:
        last = it == MAX_ITER
        waiting = tl.sum((~finished & ~conv & (miss > predict)).to(tl.int32), 0)
        with_out = (waiting == 0) | last
        total = tl.zeros((BM,), tl.float32)
        slope_sum = tl.zeros((BM,), tl.float32)
        support = tl.zeros((BM,), tl.float32)
        acc = tl.zeros((BM, D), tl.float32)
        for kb in range(0, nb):
            if tl.load(live_row + kb) != 0:
                offs_n = kb * BN + tl.arange(0, BN)
                s = score_tile(q, Kb, kpm_row, offs_m, offs_n, offs_d, Tk, q_shift, scale,
                                D, HAS_KPM, CAUSAL, PREC)
                score_tiles += 1
                z = row_shift(s, m)
                p, slope = qexp(z - tau[:, None], am1, KIND)
                total += tl.sum(p, 1)
                slope_sum += tl.sum(slope, 1)
                if with_out:
                    v = tl.load(Vb + offs_n[:, None] * D + offs_d[None, :],
                                mask=(offs_n < Tk)[:, None], other=0.0)
                    kept = p
                    if DROPOUT:
                        kept = p * dropout_scale(seed, bh, offs_m, offs_n, Tk, rate)
                    acc += tl.dot(kept.to(v.dtype), v, input_precision=PREC)
                    value_tiles += 1
                    on = (p > 0.0) & ~(empty | finished)[:, None]
                    support += tl.sum(on.to(tl.float32), 1)
                    on = on | (nan_row & ~finished)[:, None]
                    hit = tl.max(tl.max(on.to(tl.int8), 1), 0)
                    tl.store(supp_row + kb, tl.maximum(tl.load(supp_row + kb), hit))
                # a block stays live while some searching row may still have support in it
                peak = 1.0 + am1 * (tl.max(z, 1) - lo)
                peak = tl.where(empty | finished, -1.0, peak)
                peak = tl.where(nan_row & ~finished, 1.0, peak)
                tl.store(live_row + kb, (tl.max(peak, 0) > -margin).to(tl.int8))
        if with_out:
            done_now = ~finished & (conv | (tl.abs(total - 1.0) <= 2.0 * tol) | last)
            norm = tl.where(empty | (total <= 0.0), 0.0, total)
            store_rows(O, TAU, NORM, SUPPORT, bh, rows, tile, row_ok & done_now, Tq, acc,
                       norm, tl.where(norm > 0.0, support, 0.0), m, tau, nan_row, D)
            finished = finished | done_now
        miss = tl.where(conv, 0.0, tl.abs(total - 1.0))
        tau, lo, hi, conv = newton_update(tau, lo, hi, total, slope_sum, am1, conv | finished,
                                          tol)
        searching = tl.sum((~finished).to(tl.int32), 0)
        it += 1
        tl.debug_barrier()
    tl.store(TILES + 2 * tl.program_id(0), score_tiles)  # the work done, for the benchmarks
    tl.store(TILES + 2 * tl.program_id(0) + 1, value_tiles)


@triton.jit
def attention_bwd_dq(Q, K, V, DO, DQ, ALPHA, KPM, TAU, NORM, LIVE, CROW, GALPHA,
                     H, Tq, Tk, n_qb, n_kb, scale, seed, rate,
                     D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                     HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr,
                     NEED_ALPHA: tl.constexpr, DROPOUT: tl.constexpr):
    pid_m, bh, offs_m, offs_d, row_ok, Kb, Vb, kpm_row, live_row, tile, q, am1 = query_block(
        Q, K, V, KPM, LIVE, ALPHA, H, Tq, Tk, n_qb, n_kb, D, BM)
    rows, do, thresh, norm, has_mass, log2_norm = saved_rows(DO, TAU, NORM, bh, offs_m, tile,
                                                             row_ok, Tq, D)
    q_shift = Tk - Tq
    nb = key_blocks(pid_m, Tq, Tk, BM, BN, CAUSAL)

    # one sweep: the row sums for c (and ∂α) and dq = Σ_j s̃_j (g_j − c) k_j, accumulated as
    # Σ s̃ g k − c Σ s̃ k since c is known only at the end
    zero = tl.zeros((BM,), tl.float32)
    slope_sum, g_slope, g_p, entropy, g_h, p_l2, g_p_l2 = zero, zero, zero, zero, zero, zero, zero
    dq_g = tl.zeros((BM, D), tl.float32)
    dq_s = tl.zeros((BM, D), tl.float32)
    for kb in range(0, nb):
        if tl.load(live_row + kb) != 0:
            offs_n = kb * BN + tl.arange(0, BN)
            s = score_tile(q, Kb, kpm_row, offs_m, offs_n, offs_d, Tk, q_shift, scale,
                           D, HAS_KPM, CAUSAL, PREC)
            k, v, g = value_grads(do, Kb, Vb, bh, offs_m, offs_n, offs_d, Tk, seed, rate, D,
                                  PREC, DROPOUT)
            slope, slope_g, a0, a1, a2, a3, a4, a5, a6 = grad_sums(
                s, thresh, log2_norm, am1, g, KIND, NEED_ALPHA)
            slope_sum += a0
            g_slope += a1
            g_p += a2
            entropy += a3
            g_h += a4
            p_l2 += a5
            g_p_l2 += a6
            dq_g += tl.dot(slope_g.to(k.dtype), k, input_precision=PREC)
            dq_s += tl.dot(slope.to(k.dtype), k, input_precision=PREC)
    c = store_row_grads(CROW, GALPHA, rows, row_ok, has_mass, thresh, am1, slope_sum, g_slope,
                        g_p, entropy, g_h, p_l2, g_p_l2, NEED_ALPHA)
    dq = dq_g - c[:, None] * dq_s
    # a non-finite c (an inf in v) leaves some s̃_j (g_j − c) NaN: the row's dq is NaN, as
    # the elementwise form gives, which the difference above need not
    dq = tl.where((tl.abs(c) < float("inf"))[:, None], dq, float("nan"))
    tl.store(DQ + bh.to(tl.int64) * Tq * D + tile, (dq * scale).to(DQ.dtype.element_ty),
             mask=row_ok[:, None])


@triton.jit
def attention_bwd_dkdv(Q, K, V, DO, DK, DV, ALPHA, KPM, TAU, NORM, LIVE, CROW,
                       H, Tq, Tk, n_qb, n_kb, scale, seed, rate,
                       D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, KIND: tl.constexpr,
                       HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr,
                       DROPOUT: tl.constexpr):
    pid_n = tl.program_id(0) % n_kb
    bh = tl.program_id(0) // n_kb
    offs_n = pid_n * BN + tl.arange(0, BN)
    offs_d = tl.arange(0, D)
    key_ok = offs_n < Tk
    kv_tile = offs_n[:, None] * D + offs_d[None, :]
    Kb = K + bh.to(tl.int64) * Tk * D
    Vb = V + bh.to(tl.int64) * Tk * D
    k = tl.load(Kb + kv_tile, mask=key_ok[:, None], other=0.0)
    v = tl.load(Vb + kv_tile, mask=key_ok[:, None], other=0.0)
    kpm_row = KPM + (bh // H).to(tl.int64) * Tk
    am1 = tl.load(ALPHA + bh % H).to(tl.float32) - 1.0
    q_shift = Tk - Tq
    first = 0
    if CAUSAL:  # query rows i with i + Tk − Tq ≥ the block's first key
        first = tl.maximum(pid_n * BN - q_shift, 0) // BM
    dk = tl.zeros((BN, D), tl.float32)
    dv = tl.zeros((BN, D), tl.float32)
    for qb in range(first, n_qb):
        if tl.load(LIVE + (bh.to(tl.int64) * n_qb + qb) * n_kb + pid_n) != 0:
            offs_m = qb * BM + tl.arange(0, BM)
            row_ok = offs_m < Tq
            tile = offs_m[:, None] * D + offs_d[None, :]
            q = tl.load(Q + bh.to(tl.int64) * Tq * D + tile, mask=row_ok[:, None], other=0.0)
            rows, do, thresh, norm, has_mass, log2_norm = saved_rows(
                DO, TAU, NORM, bh, offs_m, tile, row_ok, Tq, D)
            c = tl.load(CROW + rows, mask=row_ok, other=0.0)
            s = score_tile(q, Kb, kpm_row, offs_m, offs_n, offs_d, Tk, q_shift, scale,
                            D, HAS_KPM, CAUSAL, PREC)
            s = tl.where(has_mass[:, None], s, float("-inf"))
            p, slope = probs_tile(row_shift(s, thresh), thresh, log2_norm, am1, KIND)
            g = tl.dot(do, tl.trans(v), input_precision=PREC)
            if DROPOUT:
                drop = dropout_scale(seed, bh, offs_m, offs_n, Tk, rate)
                p = p * drop
                g = g * drop
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
            ds = slope * (g - c[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)
    tl.store(DK + bh.to(tl.int64) * Tk * D + kv_tile, (dk * scale).to(DK.dtype.element_ty),
             mask=key_ok[:, None])
    tl.store(DV + bh.to(tl.int64) * Tk * D + kv_tile, dv.to(DV.dtype.element_ty),
             mask=key_ok[:, None])


@triton.jit
def attention_dropout_mask(OUT, Tq, Tk, n_qb, n_kb, seed, rate,
                           BM: tl.constexpr, BN: tl.constexpr):
    """The dropout scale M/(1 − r) the kernels apply, written out (batch·heads, Tq, Tk): for
    tests and inspection only."""
    pid = tl.program_id(0)
    bh = pid // (n_qb * n_kb)
    offs_m = (pid // n_kb) % n_qb * BM + tl.arange(0, BM)
    offs_n = pid % n_kb * BN + tl.arange(0, BN)
    ok = (offs_m < Tq)[:, None] & (offs_n < Tk)[None, :]
    tl.store(OUT + (bh.to(tl.int64) * Tq + offs_m[:, None]) * Tk + offs_n[None, :],
             dropout_scale(seed, bh, offs_m, offs_n, Tk, rate), mask=ok)
