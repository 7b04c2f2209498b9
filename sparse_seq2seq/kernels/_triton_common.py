"""Triton device helpers shared by the attention and row kernels (imports triton).

Every mapping here is p_j = [1 + (α−1)(z_j − τ)]_+^{1/(α−1)} (Peters, Niculae & Martins
2019, eq. 9 in q-exponential form), with dp_j/dτ = −p_j^{2−α}. ``KIND`` selects a closed
form where one exists: 1 = sparsemax (α = 2, p = b), 2 = 1.5-entmax (p = b²), 0 = any α.
"""
import triton
import triton.language as tl

KIND_GENERAL = 0
KIND_SPARSEMAX = 1
KIND_ENTMAX15 = 2
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def log2_1p(x):
    """log2(1 + x), accurate for small x (Kahan: log(u)·x/(u − 1) with u = 1 + x)."""
    u = 1.0 + x
    positive = u > 0.0
    safe_u = tl.where(positive, u, 1.0)
    den = tl.where(u == 1.0, 1.0, u - 1.0)
    value = tl.where(u == 1.0, x * 1.4426950408889634, tl.log2(safe_u) * (x / den))
    return tl.where(positive, value, float("-inf"))


@triton.jit
def expm1_ratio(log_s, am1):
    """(S^{α−1} − 1)/(α−1) from ln S, accurate for small (α−1)·ln S (Kahan's expm1)."""
    x = am1 * log_s
    u = tl.exp(x)
    den = tl.where(u == 1.0, 1.0, tl.log(tl.where(u == 1.0, 2.0, u)))
    em1 = tl.where(u == 1.0, x, (u - 1.0) * (x / den))
    return em1 / am1


@triton.jit
def qexp(shift, am1, KIND: tl.constexpr):
    """p and its τ-slope p^{2−α} at ``shift`` = z − τ (−inf where masked)."""
    t = am1 * shift
    b = 1.0 + t
    on = b > 0.0
    if KIND == 1:
        p = tl.where(on, b, 0.0)
        slope = tl.where(on, 1.0, 0.0)
    elif KIND == 2:
        b = tl.where(on, b, 0.0)
        p = b * b
        slope = b
    else:
        log2_p = log2_1p(tl.where(on, t, 0.0)) / am1
        p = tl.where(on, tl.exp2(log2_p), 0.0)
        slope = tl.where(on, p / tl.where(on, b, 1.0), 0.0)
    return p, slope


@triton.jit
def log2_prob(shift, am1, KIND: tl.constexpr):
    """log2 of the unnormalised p at ``shift`` (only read on the support)."""
    t = am1 * shift
    on = (1.0 + t) > 0.0
    if KIND == 1:
        value = tl.log2(tl.where(on, 1.0 + t, 1.0))
    elif KIND == 2:
        value = 2.0 * tl.log2(tl.where(on, 1.0 + t, 1.0))
    else:
        value = log2_1p(tl.where(on, t, 0.0)) / am1
    return tl.where(on, value, 0.0)


@triton.jit
def newton_update(tau, lo, hi, total, slope_sum, am1, done, tol):
    """One safeguarded Newton step on F(τ) = S(τ)^{α−1} (S = Σ p) inside [lo, hi];
    rows already ``done`` keep their τ. Returns (τ, lo, hi, done)."""
    f = total - 1.0
    lo = tl.where(f >= 0.0, tau, lo)
    hi = tl.where(f < 0.0, tau, hi)
    log_s = tl.log(tl.maximum(total, 1e-30))
    numer = expm1_ratio(log_s, am1) * tl.exp((1.0 - am1) * log_s)
    step = numer / tl.maximum(slope_sum, 1e-30)
    new_tau = tau + step
    inside = (new_tau >= lo) & (new_tau <= hi)
    new_tau = tl.where(inside, new_tau, 0.5 * (lo + hi))
    moved = tl.abs(new_tau - tau)
    new_tau = tl.where(done, tau, new_tau)
    # stop when the step is below tol, or the mass is within 2·tol of one: the step just
    # taken then leaves |Σp − 1| ≈ f² (quadratic convergence), so no pass is spent to confirm
    done = done | (moved <= tol * (1.0 + tl.abs(new_tau))) | (tl.abs(f) <= 2.0 * tol)
    return new_tau, lo, hi, done
