// Shared by the row-wise kernels (forward.h, backward.h, rowwise.cpp): math headers,
// per-chunk scratch rows, candidate selection and the clamps of the vector exp/log.
#pragma once
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
}  // namespace
