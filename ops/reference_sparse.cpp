// Reference kernels for the sparse products (ops/sparse.cpp): the operator densified, plain
// triple loops, float64 accumulation.
#include "ops/reference_sparse.hpp"

#include <vector>

#include "engine/error.hpp"

namespace cmdr::ops::ref {

namespace {

// c [M, N] = a [M, K] · b [K, N], with optional transposes given as (rows, cols) readers.
Tensor dense_product(const std::vector<double>& a, int64_t M, int64_t K,
                     const std::vector<double>& b, int64_t N) {
  Tensor y = Tensor::empty({M, N});
  float* p = y.data();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0.0;
      for (int64_t k = 0; k < K; ++k)
        s += a[static_cast<std::size_t>(m * K + k)] * b[static_cast<std::size_t>(k * N + n)];
      p[m * N + n] = static_cast<float>(s);
    }
  return y;
}

std::vector<double> as_double(const Tensor& t, bool transpose) {
  const Tensor c = transpose ? t.transpose(0, 1).contiguous() : t.contiguous();
  const std::vector<float> v = c.to_vector();
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace

Tensor spmm_forward(const CsrMatrix& a, const Tensor& x) {
  CMDR_CHECK(x.dim() == 2 && x.size(0) == a.cols, "ref spmm: x ", x.str());
  return dense_product(as_double(a.to_dense(), false), a.rows, a.cols, as_double(x, false),
                       x.size(1));
}

Tensor spmm_backward(const CsrMatrix& a, const Tensor& dy) {
  CMDR_CHECK(dy.dim() == 2 && dy.size(0) == a.rows, "ref spmm_backward: dy ", dy.str());
  return dense_product(as_double(a.to_dense(), true), a.cols, a.rows, as_double(dy, false),
                       dy.size(1));
}

Tensor dense_spmm_forward(const Tensor& x, const CsrMatrix& a) {
  CMDR_CHECK(x.dim() == 2 && x.size(1) == a.rows, "ref dense_spmm: x ", x.str());
  return dense_product(as_double(x, false), x.size(0), a.rows, as_double(a.to_dense(), false),
                       a.cols);
}

Tensor dense_spmm_backward(const Tensor& dy, const CsrMatrix& a) {
  CMDR_CHECK(dy.dim() == 2 && dy.size(1) == a.cols, "ref dense_spmm_backward: dy ", dy.str());
  return dense_product(as_double(dy, false), dy.size(0), a.cols, as_double(a.to_dense(), true),
                       a.rows);
}

}  // namespace cmdr::ops::ref
