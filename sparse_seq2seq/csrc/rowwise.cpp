// Row-wise CPU kernels for sparsemax, 1.5-entmax and alpha-entmax (alpha - 1 in (0, 1]).
//
// Each row is processed on its own: max-shift, all Newton steps while the row sits in L1,
// a per-row stopping test, then one output pass. The root finders are those of
// sparse_seq2seq/thresholds.py (read its docstring); after a step, entries that can no
// longer be on the support (the iterates only grow, or stay above the bracket's lower end)
// are dropped from the working copy, so wide, sparse rows get cheap fast.
// Rows are spread over threads with at::parallel_for. Built by sparse_seq2seq/native.py.
//
// Built with -ffast-math -fno-finite-math-only (infinities are kept: -inf scores are masks).
// That combination leaves __FAST_MATH__ undefined, and glibc only declares the SIMD
// variants of expf/logf/log1pf (libmvec) under it: define it around <math.h> so that the
// transcendental loops vectorise.
#ifndef __FAST_MATH__
#define __FAST_MATH__ 1
#define SPARSE_SEQ2SEQ_UNDEF_FAST_MATH
#endif
#include <math.h>
#ifdef SPARSE_SEQ2SEQ_UNDEF_FAST_MATH
#undef __FAST_MATH__
#undef SPARSE_SEQ2SEQ_UNDEF_FAST_MATH
#endif

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace {

// -ffast-math lets the compiler rewrite (x - max) - tau as x - (max + tau), which loses
// everything for scores of magnitude 1e4 + O(1) (GCC 12 ignores __builtin_assoc_barrier in
// vectorised loops): outputs are written in two loops, x - max first, through memory.
template <typename T>
inline void write_shifted(const T* x, T* out, int64_t d, T m, T scale) {
  for (int64_t i = 0; i < d; ++i) out[i] = (x[i] - m) * scale;
}

// The root finders work on per-chunk scratch copies of a row's candidate entries, padded
// with -inf to a whole number of 32-byte vectors (padding adds nothing to any sum below),
// so their loops run without a scalar tail: for short rows (d = 15, say) the tail would
// otherwise cost more than the vector body.
template <typename T>
constexpr int64_t lanes() { return 32 / sizeof(T); }

template <typename T>
inline int64_t padded(int64_t n) { return (n + lanes<T>() - 1) / lanes<T>() * lanes<T>(); }

// per-chunk scratch: three padded rows and one of indices, allocated once per
// at::parallel_for chunk
template <typename T>
struct Scratch {
  explicit Scratch(int64_t d) : np(padded<T>(d)), buf(3 * np), idx(np) {}
  T* operator()(int slot) { return buf.data() + slot * np; }
  int64_t np;
  std::vector<T> buf;
  std::vector<int64_t> idx;
};

template <typename T>
inline void pad(T* z, int64_t from, int64_t to, T value) {
  for (int64_t i = from; i < to; ++i) z[i] = value;
}

// max over a row, in 32-byte lanes (a plain max reduction does not vectorise without
// -ffinite-math-only)
template <typename T>
inline T row_max(const T* x, int64_t d) {
  constexpr int L = 32 / sizeof(T);
  const T ninf = -std::numeric_limits<T>::infinity();
  T acc[L];
  for (int j = 0; j < L; ++j) acc[j] = ninf;
  int64_t i = 0;
  for (; i + L <= d; i += L)
    for (int j = 0; j < L; ++j) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  T m = ninf;
  for (; i < d; ++i) m = x[i] > m ? x[i] : m;
  for (int j = 0; j < L; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}

template <typename T>
constexpr T step_tol() { return 4 * std::numeric_limits<T>::epsilon(); }

int64_t grain(int64_t d, int64_t per_elem = 1) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, d * per_elem));
}

// copy the entries of z[0, n) that satisfy keep to the front of z (and their indices, when
// idx is given), pad with -inf to whole vectors; returns the number kept (unpadded)
template <typename T, typename Keep>
inline int64_t compact(T* z, int64_t* idx, int64_t n, Keep keep) {
  int64_t k = 0;
  if (idx == nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      const T v = z[i];
      z[k] = v;
      k += keep(v) ? 1 : 0;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const T v = z[i];
      const int64_t j = idx[i];
      z[k] = v;
      idx[k] = j;
      k += keep(v) ? 1 : 0;
    }
  }
  pad(z, k, padded<T>(k), -std::numeric_limits<T>::infinity());
  return k;
}

// z = (x - max) * scale for the entries that satisfy keep (those that can be on the
// support at the root finder's first iterate), with their indices when idx is given,
// -inf padded; returns the count, or -1 for a row that is entirely -inf (out is zeroed)
template <typename T, typename Keep>
inline int64_t candidates(const T* x, T* out, int64_t d, T scale, T* z, int64_t* idx, T& m,
                          Keep keep) {
  m = row_max(x, d);
  if (m == -std::numeric_limits<T>::infinity()) {
    std::fill(out, out + d, T(0));
    return -1;
  }
  int64_t k = 0;
  for (int64_t i = 0; i < d; ++i) {
    const T v = (x[i] - m) * scale;
    z[k] = v;
    if (idx != nullptr) idx[k] = i;
    k += keep(v) ? 1 : 0;
  }
  pad(z, k, padded<T>(k), -std::numeric_limits<T>::infinity());
  return k;
}

// -- sparsemax -------------------------------------------------------------------------
template <typename T>
void sparsemax_row(const T* x, T* out, int64_t d, Scratch<T>& scratch) {
  T* z = scratch(0);
  T m;
  T tau = -1;
  const int64_t k = candidates(x, out, d, T(1), z, (int64_t*)nullptr, m,
                               [tau](T v) { return v > tau; });
  if (k < 0) return;
  int64_t n = padded<T>(k);
  for (int64_t it = 0; it <= d; ++it) {
    T sum = 0, cnt = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool on = z[i] > tau;
      sum += on ? z[i] : T(0);
      cnt += on ? T(1) : T(0);
    }
    const T new_tau = std::max((sum - 1) / std::max(cnt, T(1)), tau);
    if (new_tau == tau) break;
    if (2 * cnt < n)  // tau only grows: entries at or below it never come back
      n = padded<T>(compact(z, (int64_t*)nullptr, n, [tau](T v) { return v > tau; }));
    tau = new_tau;
  }
  write_shifted(x, out, d, m, T(1));
  for (int64_t i = 0; i < d; ++i) {
    const T v = out[i] - tau;
    out[i] = v > 0 ? v : T(0);
  }
}

// -- 1.5-entmax ------------------------------------------------------------------------
// p_i = [z_i/2 - t]_+^2 with z = x - max: Newton on sqrt(sum p) (convex, decreasing) from
// t = -1, then t in closed form on the final support (thresholds.entmax15_threshold).
template <typename T>
void entmax15_row(const T* x, T* out, int64_t d, Scratch<T>& scratch) {
  T* w = scratch(0);
  T m;
  T t = -1;
  const int64_t k = candidates(x, out, d, T(0.5), w, (int64_t*)nullptr, m,
                               [t](T v) { return v > t; });
  if (k < 0) return;
  int64_t n = padded<T>(k);
  const T tol = step_tol<T>();
  // Each pass also solves sum_i (g_i - delta)^2 = 1 on the current support S (g = z - t > 0):
  // the candidate t + delta is the exact threshold when S is its support, i.e. when every
  // entry of S is >= it; that is checked (by counting) during the next pass.
  T cand = std::numeric_limits<T>::infinity(), cand_size = -1;
  for (int it = 0; it < 100; ++it) {
    T sq = 0, lin = 0, cnt = 0, above = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T g = w[i] - t;
      const T gp = g > 0 ? g : T(0);
      lin += gp;
      sq += gp * gp;
      cnt += g > 0 ? T(1) : T(0);
      above += w[i] >= cand ? T(1) : T(0);
    }
    if (above == cand_size) {
      t = cand;
      write_shifted(x, out, d, m, T(0.5));
      for (int64_t i = 0; i < d; ++i) {
        const T g = out[i] - t;
        out[i] = g > 0 ? g * g : T(0);
      }
      return;
    }
    const T disc = lin * lin - cnt * (sq - 1);
    if (sq >= 1 && disc >= 0) {  // the smaller root, in a cancellation-free form
      cand = t + (sq - 1) / (lin + std::sqrt(disc));
      cand_size = cnt;
    } else {
      cand = std::numeric_limits<T>::infinity();
      cand_size = -1;
    }
    T step = sq > 0 ? (sq - std::sqrt(sq)) / std::max(lin, std::numeric_limits<T>::min()) : T(0);
    step = step > 0 ? step : T(0);
    if (2 * cnt < n) n = padded<T>(compact(w, (int64_t*)nullptr, n, [t](T v) { return v > t; }));
    t += step;
    if (!(step > tol * (1 + std::abs(t)))) break;
  }
  // Newton settled first: t in closed form on its support, as in thresholds.py
  T size = 0, total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool on = w[i] > t;
    size += on ? T(1) : T(0);
    total += on ? w[i] : T(0);
  }
  size = std::max(size, T(1));
  const T mean = total / size;
  T spread = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T c = w[i] - mean;
    spread += w[i] > t ? c * c : T(0);
  }
  const T delta = (1 - spread) / size;
  const T exact = mean - std::sqrt(std::max(delta, T(0)));
  if (delta >= 0 && std::abs(exact - t) <= T(1e3) * tol * (1 + std::abs(t))) t = exact;
  write_shifted(x, out, d, m, T(0.5));
  for (int64_t i = 0; i < d; ++i) {
    const T g = out[i] - t;
    out[i] = g > 0 ? g * g : T(0);
  }
}

// -- alpha-entmax ----------------------------------------------------------------------
// The vector expf/log1pf/logf of libmvec send lanes outside their fast range (log1p(x <= -1),
// log(0), exp underflow) to the scalar libm, one lane at a time and ~20x slower. Off the
// support, results are discarded by a select, so arguments are clamped into the fast range:
// the clamps never bind on the support (except p < e^-87 / e^-708, i.e. ~1e-38 / ~1e-308,
// rounded up to that). The clamp values are read from volatile globals: as compile-time
// constants the compiler proves the clamps redundant wherever the result is kept, and
// drops them.
template <typename T>
struct Clamps {
  static volatile T above_minus_one;  // smallest float > -1: log1p argument on the support
  static volatile T min_log;          // exp argument floor (exp's fast range)
  static volatile T min_positive;     // log argument floor
  T am1, ml, mp;
  Clamps() : am1(above_minus_one), ml(min_log), mp(min_positive) {}
};
template <typename T>
volatile T Clamps<T>::above_minus_one = T(-1) + std::numeric_limits<T>::epsilon() / 2;
template <typename T>
volatile T Clamps<T>::min_log = sizeof(T) == 4 ? T(-87) : T(-708);
template <typename T>
volatile T Clamps<T>::min_positive = std::numeric_limits<T>::min();

// p_i = [1 + a (z_i - tau)]_+^{1/a}, a = alpha - 1 in (0, 1]; KIND 1: a = 1, 2: a = 1/2,
// 0: general (log1p/exp). Returns p and s = p^{2-alpha} = p / base.
template <typename T, int KIND>
inline void qexp(T z, T tau, T a, T inv_a, const Clamps<T>& c, T& p, T& s) {
  const T u = a * (z - tau);
  const bool on = u > T(-1);
  const T base = on ? 1 + u : T(1);
  if (KIND == 1) {
    p = on ? base : T(0);
    s = on ? T(1) : T(0);
  } else if (KIND == 2) {
    p = on ? base * base : T(0);
    s = on ? base : T(0);
  } else {
    const T lp = std::max(std::log1p(std::max(u, c.am1)) * inv_a, c.ml);
    const T e = std::exp(lp);
    p = on ? e : T(0);
    s = on ? e / base : T(0);
  }
}

// [(S^a - 1)/a] S^{1-a}; in double for float rows (exp - 1 is then accurate enough, and
// glibc's expm1f is slow), with expm1 for double rows
template <typename T, int KIND>
inline T newton_numerator(T S, T a) {
  if (KIND == 1) return S - 1;
  if (KIND == 2) {
    const T r = std::sqrt(S);
    return 2 * (S - r);
  }
  if (sizeof(T) == 4) {
    const double L = std::log(double(S)), ad = a;
    const double Ea = std::exp(ad * L);
    return T((Ea - 1) / ad * (double(S) / Ea));
  }
  const T L = std::log(S);
  return std::expm1(a * L) / a * std::exp((1 - a) * L);
}

// safeguarded Newton on F(tau) = (sum p)^a in the bracket [0, (1 - d^{-a})/a]
// (thresholds.entmax_threshold), then p normalised to sum to one
template <typename T, int KIND>
void entmax_row_k(const T* x, T* out, int64_t d, T a, int64_t n_iter, bool normalize,
                  Scratch<T>& scratch) {
  T* w = scratch(0);
  T* pw = scratch(1);
  T* sw = scratch(2);
  int64_t* idx = scratch.idx.data();
  T m;
  // tau >= lo = 0 throughout: entries off the support at tau = 0 never come on it
  int64_t k = candidates(x, out, d, T(1), w, idx, m, [a](T v) { return a * v > T(-1); });
  if (k < 0) return;
  int64_t n = padded<T>(k);
  const T tiny = std::numeric_limits<T>::min();
  const T tol = step_tol<T>();
  const T inv_a = 1 / a;
  const Clamps<T> clamps;
  // (1 - d^{-a}) / a, in double for float rows (glibc's expm1f is slow)
  T hi = sizeof(T) == 4 ? T(-std::expm1(-double(a) * std::log(double(d))) / double(a))
                        : -std::expm1(-a * std::log(T(d))) / a;
  T lo = 0, tau = 0;
  bool settled = false;
  T total = 0;
  for (int64_t it = 0; it < n_iter; ++it) {
    T slope = 0, cnt = 0;
    total = 0;
    for (int64_t i = 0; i < n; ++i) {
      T p, s;
      qexp<T, KIND>(w[i], tau, a, inv_a, clamps, p, s);
      pw[i] = p;
      sw[i] = s;
      total += p;
      slope += s;
      cnt += a * (w[i] - tau) > T(-1) ? T(1) : T(0);
    }
    const bool below = total - 1 >= 0;
    if (below) lo = tau; else hi = tau;
    // Newton on F = S^{a}:  step = [(S^a - 1)/a] S^{1-a} / sum p^{2-alpha}
    const T numer = newton_numerator<T, KIND>(std::max(total, tiny), a);
    T new_tau = tau + numer / std::max(slope, tiny);
    if (!(new_tau >= lo && new_tau <= hi)) new_tau = (lo + hi) / 2;
    const T moved = std::abs(new_tau - tau);
    if (!(moved > tol * (1 + new_tau))) {
      // settled: p at new_tau from the last pass to first order, dp/dtau = -s; the error
      // is O(step^2), step <= tol (1 + tau)
      const T step = new_tau - tau;
      total = 0;
      for (int64_t i = 0; i < n; ++i) {
        const T p = std::max(pw[i] - step * sw[i], T(0));
        pw[i] = p;
        total += p;
      }
      settled = true;
      tau = new_tau;
      break;
    }
    if (below && 2 * cnt < n) {  // entries off the support at lo stay off for tau >= lo
      k = compact(w, idx, n, [a, tau](T v) { return a * (v - tau) > T(-1); });
      n = padded<T>(k);
    }
    tau = new_tau;
  }
  if (!settled) {  // p on the candidates at the final tau
    total = 0;
    for (int64_t i = 0; i < n; ++i) {
      T p, s;
      qexp<T, KIND>(w[i], tau, a, inv_a, clamps, p, s);
      pw[i] = p;
      total += p;
    }
  }
  const T scale = normalize ? 1 / std::max(total, tiny) : T(1);
  std::fill(out, out + d, T(0));  // scattered into a zeroed row
  for (int64_t i = 0; i < k; ++i) out[idx[i]] = pw[i] * scale;
}

template <typename T>
void entmax_row(const T* x, T* out, int64_t d, T a, int64_t n_iter, bool normalize,
                Scratch<T>& scratch) {
  if (a == T(1)) entmax_row_k<T, 1>(x, out, d, a, n_iter, normalize, scratch);
  else if (a == T(0.5)) entmax_row_k<T, 2>(x, out, d, a, n_iter, normalize, scratch);
  else entmax_row_k<T, 0>(x, out, d, a, n_iter, normalize, scratch);
}

// -- backward passes -------------------------------------------------------------------
template <typename T>
void sparsemax_bwd_row(const T* p, const T* g, T* gx, int64_t d) {
  T sum = 0, cnt = 0;
  for (int64_t i = 0; i < d; ++i) {
    const bool on = p[i] > 0;
    sum += on ? g[i] : T(0);
    cnt += on ? T(1) : T(0);
  }
  const T mean = sum / std::max(cnt, T(1));
  for (int64_t i = 0; i < d; ++i) gx[i] = p[i] > 0 ? g[i] - mean : T(0);
}

template <typename T>
void entmax15_bwd_row(const T* p, const T* g, T* gx, int64_t d) {
  T S = 0, W = 0;
  for (int64_t i = 0; i < d; ++i) {
    const T s = std::sqrt(p[i]);
    S += s;
    W += s * g[i];
  }
  const T mean = W / std::max(S, std::numeric_limits<T>::min());
  for (int64_t i = 0; i < d; ++i) {
    const T s = std::sqrt(p[i]);
    gx[i] = s * g[i] - s * mean;
  }
}

// (diag(s) - s s^T / sum s) g with s = p^{2-alpha}, and g^T dp/dalpha (jacobians.py)
template <typename T, int KIND>
void entmax_bwd_row_k(const T* p, const T* g, T* gx, int64_t d, T a, bool want_alpha,
                      T* galpha) {
  const T tiny = std::numeric_limits<T>::min();
  const Clamps<T> c;
  auto slope = [a, &c](T pi, T lp) -> T {
    if (KIND == 1) return pi > 0 ? T(1) : T(0);
    if (KIND == 2) return std::sqrt(pi);
    return pi > 0 ? std::exp(std::max((1 - a) * lp, c.ml)) : T(0);
  };
  T S = 0, W = 0;
  if (!want_alpha) {
    for (int64_t i = 0; i < d; ++i) {
      const T lp = p[i] > 0 ? std::log(std::max(p[i], c.mp)) : T(0);
      const T s = slope(p[i], lp);
      gx[i] = s;  // kept for the second pass
      S += s;
      W += s * g[i];
    }
  } else {
    T gp = 0, gh = 0, H = 0, gl2 = 0, l2 = 0;
    for (int64_t i = 0; i < d; ++i) {
      const T lp = p[i] > 0 ? std::log(std::max(p[i], c.mp)) : T(0);
      const T s = slope(p[i], lp);
      gx[i] = s;
      S += s;
      W += s * g[i];
      const T plp = p[i] * lp;
      gp += g[i] * p[i];
      H -= plp;
      gh -= g[i] * plp;
      gl2 += g[i] * plp * lp;
      l2 += plp * lp;
    }
    const T gsk = W / std::max(S, tiny);
    const T near = sizeof(T) == 8 ? T(1e-7) : T(1e-4);
    if (std::abs(a) < near) *galpha = T(-0.5) * (gl2 - gp * l2);
    else *galpha = (gp - gsk) / (a * a) + (gh - gsk * H) / a;
  }
  const T mean = W / std::max(S, tiny);
  for (int64_t i = 0; i < d; ++i) gx[i] = gx[i] * g[i] - gx[i] * mean;
}

template <typename T>
inline void entmax_bwd_dispatch(const T* p, const T* g, T* gx, int64_t d, T a, bool want_alpha,
                                T* ga) {
  if (a == T(1)) entmax_bwd_row_k<T, 1>(p, g, gx, d, a, want_alpha, ga);
  else if (a == T(0.5)) entmax_bwd_row_k<T, 2>(p, g, gx, d, a, want_alpha, ga);
  else entmax_bwd_row_k<T, 0>(p, g, gx, d, a, want_alpha, ga);
}

// on zero-padded copies of the row when d is not a whole number of vectors (no scalar
// tail for the log/exp loops); on the support only (p = 0 gives s = 0, no contribution,
// zero gradient) when that saves the log/exp of at least half the row
template <typename T>
void entmax_bwd_row(const T* p, const T* g, T* gx, int64_t d, T a, bool want_alpha, T* ga,
                    Scratch<T>& scratch) {
  const int64_t np = padded<T>(d);
  if (a != T(1) && a != T(0.5) && d >= 2 * lanes<T>()) {
    T size = 0;
    for (int64_t i = 0; i < d; ++i) size += p[i] > 0 ? T(1) : T(0);
    if (2 * size <= T(d)) {
      T* pp = scratch(0);
      T* gg = scratch(1);
      T* out = scratch(2);
      int64_t* idx = scratch.idx.data();
      int64_t k = 0;
      for (int64_t i = 0; i < d; ++i) {
        pp[k] = p[i];
        gg[k] = g[i];
        idx[k] = i;
        k += p[i] > 0 ? 1 : 0;
      }
      const int64_t nk = padded<T>(k);
      pad(pp, k, nk, T(0));
      pad(gg, k, nk, T(0));
      entmax_bwd_dispatch(pp, gg, out, nk, a, want_alpha, ga);
      std::fill(gx, gx + d, T(0));
      for (int64_t i = 0; i < k; ++i) gx[idx[i]] = out[i];
      return;
    }
  }
  if (np == d) return entmax_bwd_dispatch(p, g, gx, d, a, want_alpha, ga);
  T* pp = scratch(0);
  T* gg = scratch(1);
  T* out = scratch(2);
  std::copy(p, p + d, pp);
  std::copy(g, g + d, gg);
  pad(pp, d, np, T(0));
  pad(gg, d, np, T(0));
  entmax_bwd_dispatch(pp, gg, out, np, a, want_alpha, ga);
  std::copy(out, out + d, gx);
}

void check_rows(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), name, " must be a contiguous (n, d) tensor");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              name, " must be float32 or float64");
}

void check_am1(const torch::Tensor& am1, const torch::Tensor& x) {
  check_rows(am1, "am1");
  TORCH_CHECK((am1.size(0) == x.size(0) || am1.size(0) == 1) && am1.size(1) == 1 &&
              am1.scalar_type() == x.scalar_type(), "am1 must be (n, 1) or (1, 1) of x's dtype");
}

// -- bindings --------------------------------------------------------------------------
torch::Tensor sparsemax_forward(const torch::Tensor& x) {
  check_rows(x, "x");
  auto out = torch::empty_like(x);
  const int64_t n = x.size(0), d = x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparsemax_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain(d, 4), [&](int64_t b, int64_t e) {
      Scratch<scalar_t> scratch(d);
      for (int64_t r = b; r < e; ++r) sparsemax_row(xp + r * d, op + r * d, d, scratch);
    });
  });
  return out;
}

torch::Tensor entmax15_forward(const torch::Tensor& x) {
  check_rows(x, "x");
  auto out = torch::empty_like(x);
  const int64_t n = x.size(0), d = x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entmax15_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain(d, 4), [&](int64_t b, int64_t e) {
      Scratch<scalar_t> scratch(d);
      for (int64_t r = b; r < e; ++r) entmax15_row(xp + r * d, op + r * d, d, scratch);
    });
  });
  return out;
}

torch::Tensor entmax_forward(const torch::Tensor& x, const torch::Tensor& am1, int64_t n_iter,
                             bool normalize) {
  check_rows(x, "x");
  check_am1(am1, x);
  const int64_t n = x.size(0), d = x.size(1);
  const int64_t astride = am1.size(0) == 1 ? 0 : 1;
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entmax_range", [&] {
    const scalar_t* ap = am1.data_ptr<scalar_t>();
    for (int64_t r = 0; r < am1.size(0); ++r) ok = ok && ap[r] > 0 && ap[r] <= 1;
  });
  if (!ok) return torch::Tensor();  // None: alpha - 1 outside (0, 1], the caller falls back
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entmax_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* ap = am1.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain(d, 16), [&](int64_t b, int64_t e) {
      Scratch<scalar_t> scratch(d);
      for (int64_t r = b; r < e; ++r)
        entmax_row(xp + r * d, op + r * d, d, ap[r * astride], n_iter, normalize, scratch);
    });
  });
  return out;
}

torch::Tensor sparsemax_backward(const torch::Tensor& p, const torch::Tensor& g) {
  check_rows(p, "p");
  check_rows(g, "grad");
  auto gx = torch::empty_like(p);
  const int64_t n = p.size(0), d = p.size(1);
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "sparsemax_backward", [&] {
    const scalar_t* pp = p.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* op = gx.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain(d), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) sparsemax_bwd_row(pp + r * d, gp + r * d, op + r * d, d);
    });
  });
  return gx;
}

torch::Tensor entmax15_backward(const torch::Tensor& p, const torch::Tensor& g) {
  check_rows(p, "p");
  check_rows(g, "grad");
  auto gx = torch::empty_like(p);
  const int64_t n = p.size(0), d = p.size(1);
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "entmax15_backward", [&] {
    const scalar_t* pp = p.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* op = gx.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain(d, 2), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) entmax15_bwd_row(pp + r * d, gp + r * d, op + r * d, d);
    });
  });
  return gx;
}

std::vector<torch::Tensor> entmax_backward(const torch::Tensor& p, const torch::Tensor& g,
                                           const torch::Tensor& am1, bool want_alpha) {
  check_rows(p, "p");
  check_rows(g, "grad");
  check_am1(am1, p);
  auto gx = torch::empty_like(p);
  const int64_t n = p.size(0), d = p.size(1);
  const int64_t astride = am1.size(0) == 1 ? 0 : 1;
  auto ga = want_alpha ? torch::empty({n, 1}, p.options()) : torch::empty({0}, p.options());
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "entmax_backward", [&] {
    const scalar_t* pp = p.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* ap = am1.data_ptr<scalar_t>();
    scalar_t* op = gx.data_ptr<scalar_t>();
    scalar_t* gap = want_alpha ? ga.data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, n, grain(d, 8), [&](int64_t b, int64_t e) {
      Scratch<scalar_t> scratch(d);
      for (int64_t r = b; r < e; ++r)
        entmax_bwd_row(pp + r * d, gp + r * d, op + r * d, d, ap[r * astride], want_alpha,
                       want_alpha ? gap + r : nullptr, scratch);
    });
  });
  return {gx, ga};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sparsemax_forward", &sparsemax_forward, "sparsemax over the rows of an (n, d) tensor");
  m.def("entmax15_forward", &entmax15_forward, "1.5-entmax over the rows of an (n, d) tensor");
  m.def("entmax_forward", &entmax_forward, "alpha-entmax over rows, alpha - 1 in (0, 1] per row");
  m.def("sparsemax_backward", &sparsemax_backward, "sparsemax Jacobian-vector product");
  m.def("entmax15_backward", &entmax15_backward, "1.5-entmax Jacobian-vector product");
  m.def("entmax_backward", &entmax_backward, "alpha-entmax Jacobian-vector product and d/d alpha");
}
