// Row-wise CPU kernels for sparsemax, 1.5-entmax and alpha-entmax (alpha - 1 in (0, 1]).
//
// Each row is processed on its own: max-shift, all Newton steps while the row sits in L1,
// a per-row stopping test, then one output pass. The root finders are those of
// sparse_seq2seq/thresholds.py (read its docstring); after a step, entries that can no
// longer be on the support (the iterates only grow, or stay above the bracket's lower end)
// are dropped from the working copy, so wide, sparse rows get cheap fast.
// Rows are spread over threads with at::parallel_for. Built by sparse_seq2seq/native.py.
//
#include "forward.h"
#include "backward.h"

namespace {

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
// Calls row(r, scratch) for every row r of an (n, d) problem, rows spread over threads;
// work_per_elem sizes the parallel grain.
template <typename T, typename Row>
void for_rows(int64_t n, int64_t d, int64_t work_per_elem, Row row) {
  at::parallel_for(0, n, grain(d, work_per_elem), [&](int64_t b, int64_t e) {
    Scratch<T> scratch(d);
    for (int64_t r = b; r < e; ++r) row(r, scratch);
  });
}

// a forward kernel kernel(x_row, out_row, d, scratch) over the rows of x
template <template <typename> class Kernel>
torch::Tensor map_rows(const torch::Tensor& x, int64_t work_per_elem) {
  check_rows(x, "x");
  auto out = torch::empty_like(x);
  const int64_t n = x.size(0), d = x.size(1);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "rowwise_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for_rows<scalar_t>(n, d, work_per_elem, [&](int64_t r, Scratch<scalar_t>& s) {
      Kernel<scalar_t>::run(xp + r * d, op + r * d, d, s);
    });
  });
  return out;
}

// a backward kernel kernel(p_row, g_row, gx_row, d) over the rows of p and grad
template <template <typename> class Kernel>
torch::Tensor map_rows_bwd(const torch::Tensor& p, const torch::Tensor& g, int64_t work_per_elem) {
  check_rows(p, "p");
  check_rows(g, "grad");
  auto gx = torch::empty_like(p);
  const int64_t n = p.size(0), d = p.size(1);
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "rowwise_backward", [&] {
    const scalar_t* pp = p.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    scalar_t* op = gx.data_ptr<scalar_t>();
    for_rows<scalar_t>(n, d, work_per_elem, [&](int64_t r, Scratch<scalar_t>&) {
      Kernel<scalar_t>::run(pp + r * d, gp + r * d, op + r * d, d);
    });
  });
  return gx;
}

template <typename T> struct SparsemaxFwd {
  static void run(const T* x, T* o, int64_t d, Scratch<T>& s) { sparsemax_row(x, o, d, s); }
};
template <typename T> struct Entmax15Fwd {
  static void run(const T* x, T* o, int64_t d, Scratch<T>& s) { entmax15_row(x, o, d, s); }
};
template <typename T> struct SparsemaxBwd {
  static void run(const T* p, const T* g, T* o, int64_t d) { sparsemax_bwd_row(p, g, o, d); }
};
template <typename T> struct Entmax15Bwd {
  static void run(const T* p, const T* g, T* o, int64_t d) { entmax15_bwd_row(p, g, o, d); }
};

torch::Tensor sparsemax_forward(const torch::Tensor& x) { return map_rows<SparsemaxFwd>(x, 4); }
torch::Tensor entmax15_forward(const torch::Tensor& x) { return map_rows<Entmax15Fwd>(x, 4); }
torch::Tensor sparsemax_backward(const torch::Tensor& p, const torch::Tensor& g) {
  return map_rows_bwd<SparsemaxBwd>(p, g, 1);
}
torch::Tensor entmax15_backward(const torch::Tensor& p, const torch::Tensor& g) {
  return map_rows_bwd<Entmax15Bwd>(p, g, 2);
}

// The kernels take alpha - 1 in (0, 1] only; outside it they return None and the caller falls back.
bool am1_in_range(const torch::Tensor& am1) {
  bool ok = true;
  AT_DISPATCH_FLOATING_TYPES(am1.scalar_type(), "entmax_range", [&] {
    const scalar_t* ap = am1.data_ptr<scalar_t>();
    for (int64_t r = 0; r < am1.size(0); ++r) ok = ok && ap[r] > 0 && ap[r] <= 1;
  });
  return ok;
}

torch::Tensor entmax_forward(const torch::Tensor& x, const torch::Tensor& am1, int64_t n_iter,
                             bool normalize) {
  check_rows(x, "x");
  check_am1(am1, x);
  const int64_t n = x.size(0), d = x.size(1);
  const int64_t astride = am1.size(0) == 1 ? 0 : 1;
  if (!am1_in_range(am1)) return torch::Tensor();
  auto out = torch::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entmax_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* ap = am1.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    for_rows<scalar_t>(n, d, 16, [&](int64_t r, Scratch<scalar_t>& s) {
      entmax_row(xp + r * d, op + r * d, d, ap[r * astride], n_iter, normalize, s);
    });
  });
  return out;
}

std::vector<torch::Tensor> entmax_backward(const torch::Tensor& p, const torch::Tensor& g,
                                           const torch::Tensor& am1, bool want_alpha) {
  check_rows(p, "p");
  check_rows(g, "grad");
  check_am1(am1, p);
  if (!am1_in_range(am1)) return {};
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
    for_rows<scalar_t>(n, d, 8, [&](int64_t r, Scratch<scalar_t>& s) {
      entmax_bwd_row(pp + r * d, gp + r * d, op + r * d, d, ap[r * astride], want_alpha,
                     want_alpha ? gap + r : nullptr, s);
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
