// Forward row kernels: sparsemax, 1.5-entmax and alpha-entmax (see common.h, rowwise.cpp).
#pragma once
#include "common.h"

namespace {

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
  // Newton converges quadratically and the last pass is corrected to first order below, so a
  // step of h leaves an error of O(h^2): stop once h^2 is far below tol
  const T stop = std::sqrt(tol) / 16;
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
    if (!(moved > stop * (1 + new_tau))) {
      // settled: p at new_tau from the last pass to first order, dp/dtau = -s; the error
      // is O(step^2), step <= stop (1 + tau)
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
}  // namespace
