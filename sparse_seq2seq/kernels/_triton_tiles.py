"""Tile helpers shared by the fused attention kernels (imports triton): score tiles, the
program's query block, the threshold root of a row held in registers, and the per-row sums
of the backward (Correia, Niculae & Martins 2019, eq. 10 and Prop. 1).

Non-finite scores follow the library's rule (:mod:`sparse_seq2seq.nonfinite`) inside the
kernels, so no caller has to look for them first: a row with a NaN score gets a NaN output
and NaN gradients (saved τ + m = NaN); a row whose maximum is +inf puts its mass evenly on
its +inf scores (saved τ + m = +inf, Σp = their number) and passes no gradient to its scores
or to α."""
import triton
import triton.language as tl

from ._triton_common import LN2, expm1_ratio, log2_prob, newton_update, qexp


@triton.jit
def score_tile(q, K, kpm_row, offs_m, offs_n, offs_d, Tk, q_shift, scale,
                D: tl.constexpr, HAS_KPM: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr):
    """(BM, BN) scores of the query tile against keys offs_n; masked entries −inf."""
    key_ok = offs_n < Tk
    kt = tl.load(K + offs_n[None, :] * D + offs_d[:, None], mask=key_ok[None, :], other=0.0)
    s = tl.dot(q, kt, input_precision=PREC) * scale
    if HAS_KPM:
        pad = tl.load(kpm_row + offs_n, mask=key_ok, other=1)
        key_ok = key_ok & (pad == 0)
    ok = key_ok[None, :]
    if CAUSAL:
        ok = ok & (offs_n[None, :] <= offs_m[:, None] + q_shift)
    return tl.where(ok, s, float("-inf"))


@triton.jit
def row_shift(s, m):
    """s − m per row, with the +inf rule: an entry equal to its row's m gives 0, so a row
    whose m is +inf keeps its +inf scores at 0 and the rest at −inf (finite rows: s − m)."""
    return tl.where(s == m[:, None], 0.0, s - m[:, None])


@triton.jit
def nan_count(s):
    """Per row of a score tile, how many of its scores are NaN (float32)."""
    return tl.sum((s != s).to(tl.float32), 1)


@triton.jit
def key_blocks(pid_m, Tq, Tk, BM: tl.constexpr, BN: tl.constexpr, CAUSAL: tl.constexpr):
    """Number of key blocks a query block can see."""
    n_end = Tk
    if CAUSAL:
        n_end = tl.minimum(Tk, (pid_m + 1) * BM + (Tk - Tq))
        n_end = tl.maximum(n_end, 0)
    return tl.cdiv(n_end, BN)


@triton.jit
def query_block(Q, K, V, KPM, LIVE, ALPHA, H, Tq, Tk, n_qb, n_kb,
                 D: tl.constexpr, BM: tl.constexpr):
    """Offsets and base pointers of this program's query block and batch·head."""
    pid_m = tl.program_id(0) % n_qb  # one flat grid: the blocks of a head are neighbours
    bh = tl.program_id(0) // n_qb
    offs_m = pid_m * BM + tl.arange(0, BM)
    offs_d = tl.arange(0, D)
    row_ok = offs_m < Tq
    Kb = K + bh.to(tl.int64) * Tk * D
    Vb = V + bh.to(tl.int64) * Tk * D
    kpm_row = KPM + (bh // H).to(tl.int64) * Tk
    live_row = LIVE + (bh.to(tl.int64) * n_qb + pid_m) * n_kb
    tile = offs_m[:, None] * D + offs_d[None, :]
    q = tl.load(Q + bh.to(tl.int64) * Tq * D + tile, mask=row_ok[:, None], other=0.0)
    am1 = tl.load(ALPHA + bh % H).to(tl.float32) - 1.0
    return pid_m, bh, offs_m, offs_d, row_ok, Kb, Vb, kpm_row, live_row, tile, q, am1


@triton.jit
def subset_root(z, z2, am1, tol, KIND: tl.constexpr, ITERS: tl.constexpr, PAIR: tl.constexpr):
    """τ solving Σ_{j∈A} p_j(τ) = 1 over a subset A of a row's keys held in registers: the
    tile z (z − m, −inf outside A) and, with PAIR, the tile z2 too. Since Σ_A p ≤ Σ p, it lies
    at or below the row's τ (up to rounding), so Newton over all keys starts close, from the
    side it converges from; for the whole row it is the row's τ."""
    n = tl.sum((z > float("-inf")).to(tl.float32), 1)
    if PAIR:
        n += tl.sum((z2 > float("-inf")).to(tl.float32), 1)
    lo = tl.zeros_like(n)
    hi = -expm1_ratio(-tl.log(tl.maximum(n, 1.0)), am1)
    tau = lo
    done = n == 0.0
    it = 0
    while (it < ITERS) & (tl.sum((~done).to(tl.int32), 0) > 0):
        p, slope = qexp(z - tau[:, None], am1, KIND)
        total = tl.sum(p, 1)
        slope_sum = tl.sum(slope, 1)
        if PAIR:
            p2, slope2 = qexp(z2 - tau[:, None], am1, KIND)
            total += tl.sum(p2, 1)
            slope_sum += tl.sum(slope2, 1)
        tau, lo, hi, done = newton_update(tau, lo, hi, total, slope_sum, am1, done, tol)
        it += 1
    return tau


@triton.jit
def store_rows(O, TAU, NORM, SUPPORT, bh, rows, tile, keep, Tq, acc, norm, support, m, tau,
               nan_row, D: tl.constexpr):
    """The forward's per-row results, under the NaN/+inf rule: O = Σ p v / Σ p (NaN rows:
    NaN), τ + m (NaN rows: NaN; +inf rows: +inf), Σ p (+inf rows: their number of +inf
    scores, the backward's normaliser of p = 1 on them) and the support size (0 without mass)."""
    out = acc / tl.where(norm > 0.0, norm, 1.0)[:, None]
    out = tl.where(nan_row[:, None], float("nan"), out)
    tl.store(O + bh.to(tl.int64) * Tq * D + tile, out.to(O.dtype.element_ty), mask=keep[:, None])
    tl.store(TAU + rows, tl.where(nan_row, float("nan"), m + tau), mask=keep)
    tl.store(NORM + rows, tl.where(m == float("inf"), support, norm), mask=keep)
    tl.store(SUPPORT + rows, support, mask=keep)


@triton.jit
def probs_tile(shift, thresh, log2_norm, am1, KIND: tl.constexpr):
    """Normalised p and s̃ = p^{2−α} of a score tile, given ``shift`` = row_shift(s, τ + m)
    from the saved τ + m (rows with no mass give zeros; +inf rows: p uniform on their +inf
    scores and s̃ = 0; NaN rows: NaN)."""
    p_raw, slope_raw = qexp(shift, am1, KIND)
    # the rule through per-row factors (no extra tile work): NaN rows scale by NaN, +inf
    # rows' slopes by 0 (p_raw and slope_raw are finite there)
    bad = thresh != thresh
    inv_norm = tl.where(bad, float("nan"), tl.exp2(-log2_norm))
    slope_scale = tl.where(thresh == float("inf"), 0.0, tl.exp2((am1 - 1.0) * log2_norm))
    slope_scale = tl.where(bad, float("nan"), slope_scale)
    return p_raw * inv_norm[:, None], slope_raw * slope_scale[:, None]




@triton.jit
def dropout_scale(seed, bh, offs_m, offs_n, Tk, rate):
    """Attention dropout of a (query, key) tile: M/(1 − r) with M_ij kept (1) with probability
    1 − r, from Philox counters (seed + batch·head, i·Tk + j), so every kernel that visits the
    tile, forward or backward, draws the same mask."""
    keep = tl.rand(seed + bh, offs_m[:, None] * Tk + offs_n[None, :]) >= rate
    return tl.where(keep, 1.0 / (1.0 - rate), 0.0)


@triton.jit
def value_grads(do, Kb, Vb, bh, offs_m, offs_n, offs_d, Tk, seed, rate, D: tl.constexpr,
                PREC: tl.constexpr, DROPOUT: tl.constexpr):
    """A key tile's k and v and the gradient reaching p: g = dO vᵀ (⊙ the dropout scale
    with attention dropout). Returns (k, v, g)."""
    kv_tile = offs_n[:, None] * D + offs_d[None, :]
    key_ok = (offs_n < Tk)[:, None]
    v = tl.load(Vb + kv_tile, mask=key_ok, other=0.0)
    k = tl.load(Kb + kv_tile, mask=key_ok, other=0.0)
    g = tl.dot(do, tl.trans(v), input_precision=PREC)
    if DROPOUT:
        g = g * dropout_scale(seed, bh, offs_m, offs_n, Tk, rate)
    return k, v, g


@triton.jit
def saved_rows(DO, TAU, NORM, bh, offs_m, tile, row_ok, Tq, D: tl.constexpr):
    """A query tile's upstream gradient dO and what its forward saved: τ + m and Σ p (with
    log2 Σ p; rows of no mass keep Σ p = 0). Returns (rows, dO, τ + m, Σp, has mass, log2 Σp)."""
    rows = bh.to(tl.int64) * Tq + offs_m
    do = tl.load(DO + bh.to(tl.int64) * Tq * D + tile, mask=row_ok[:, None], other=0.0)
    thresh = tl.load(TAU + rows, mask=row_ok, other=0.0)
    norm = tl.load(NORM + rows, mask=row_ok, other=0.0)
    has_mass = norm > 0.0
    return rows, do, thresh, norm, has_mass, tl.log2(tl.where(has_mass, norm, 1.0))


@triton.jit
def grad_sums(s, thresh, log2_norm, am1, g, KIND: tl.constexpr, NEED_ALPHA: tl.constexpr):
    """The backward's view of a score tile, given g = dO·vᵀ: s̃ = p^{2−α} (the τ-slope), s̃ g,
    and the per-row sums Σ s̃, Σ s̃ g (for c) and, when ∂α is needed, Σ g p, −Σ p ln p,
    −Σ g p ln p, Σ p ln²p and Σ g p ln²p (zeros otherwise)."""
    shift = row_shift(s, thresh)
    p, slope = probs_tile(shift, thresh, log2_norm, am1, KIND)
    slope_g = slope * g
    zero = tl.zeros_like(thresh)
    g_p, entropy, g_h, p_l2, g_p_l2 = zero, zero, zero, zero, zero
    if NEED_ALPHA:
        ln_p = LN2 * (log2_prob(shift, am1, KIND) - log2_norm[:, None])
        p_ln_p = p * ln_p
        g_p = tl.sum(g * p, 1)
        entropy = -tl.sum(p_ln_p, 1)
        g_h = -tl.sum(g * p_ln_p, 1)
        p_l2 = tl.sum(p_ln_p * ln_p, 1)
        g_p_l2 = tl.sum(g * p_ln_p * ln_p, 1)
    return (slope, slope_g, tl.sum(slope, 1), tl.sum(slope_g, 1),
            g_p, entropy, g_h, p_l2, g_p_l2)


@triton.jit
def store_row_grads(CROW, GALPHA, rows, row_ok, has_mass, thresh, am1, slope_sum, g_slope,
                    g_p, entropy, g_h, p_l2, g_p_l2, NEED_ALPHA: tl.constexpr):
    """From a row's sums: c = Σ s̃ g / Σ s̃ (stored, for dk) and the row's ∂α (stored when
    needed; the closed form of Correia et al. 2019, Prop. 1, and its α → 1 limit; 0 for a
    +inf row, NaN for a NaN row). Returns c."""
    c = tl.where(has_mass, g_slope / tl.where(slope_sum > 0.0, slope_sum, 1.0), 0.0)
    tl.store(CROW + rows, c, mask=row_ok)
    if NEED_ALPHA:
        safe = tl.where(am1 < 1e-4, 1.0, am1)
        closed = (g_p - c) / (safe * safe) + (g_h - c * entropy) / safe
        limit = -0.5 * (g_p_l2 - g_p * p_l2)
        grad_alpha = tl.where(am1 < 1e-4, limit, closed)
        grad_alpha = tl.where(has_mass & (thresh < float("inf")), grad_alpha, 0.0)
        tl.store(GALPHA + rows, tl.where(thresh != thresh, float("nan"), grad_alpha),
                 mask=row_ok)
    return c
