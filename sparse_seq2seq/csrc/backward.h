// Backward row kernels: Jacobian-vector products and the gradient in alpha.
#pragma once
#include "common.h"

namespace {

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
}  // namespace
