// Constant sparse operators (ops/sparse.cpp, SPEC 10): spmm and dense_spmm forward and
// backward against the plain reference kernels, the bilinear operator against
// upsample_bilinear2d, and row selection / transpose against the dense matrix.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "ops/ops.hpp"
#include "ops/reference.hpp"

using namespace cmdr;

namespace {

// A random CSR [rows, cols] with some empty rows (the invalid positions of P).
ops::CsrMatrix random_csr(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  ops::CsrMatrix a;
  a.rows = rows;
  a.cols = cols;
  a.row_ptr.push_back(0);
  for (int64_t r = 0; r < rows; ++r) {
    if (rng.uniform01() < 0.3) {
      a.row_ptr.push_back(a.nnz());
      continue;
    }
    for (int64_t c = 0; c < cols; ++c) {
      if (rng.uniform01() < 0.25) {
        a.col.push_back(static_cast<int32_t>(c));
        a.val.push_back(static_cast<float>(rng.uniform01() * 2.0 - 0.5));
      }
    }
    a.row_ptr.push_back(a.nnz());
  }
  a.check();
  return a;
}

Tensor randn(const Shape& s, uint64_t seed) {
  Rng rng(seed);
  Tensor t = Tensor::empty(s);
  rng.fill_normal(t, 0.0f, 1.0f);
  return t;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  double m = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(double(x[i]) - y[i]));
  return m;
}

}  // namespace

TEST_CASE("sparse: spmm and dense_spmm forward/backward match the reference kernels") {
  const ops::CsrMatrix a = random_csr(37, 23, 5);
  const Tensor x = randn({23, 19}, 6), dy = randn({37, 19}, 7);
  CHECK(max_abs_diff(ops::spmm_forward(a, x), ops::ref::spmm_forward(a, x)) < 1e-5);
  CHECK(max_abs_diff(ops::spmm_backward(a, dy), ops::ref::spmm_backward(a, dy)) < 1e-5);
  const Tensor w = randn({11, 37}, 8), dz = randn({11, 23}, 9);
  CHECK(max_abs_diff(ops::dense_spmm_forward(w, a), ops::ref::dense_spmm_forward(w, a)) < 1e-5);
  CHECK(max_abs_diff(ops::dense_spmm_backward(dz, a), ops::ref::dense_spmm_backward(dz, a)) < 1e-5);
  // The backward is the adjoint: <A·x, dy> = <x, Aᵀ·dy>.
  const Tensor ax = ops::spmm_forward(a, x), atdy = ops::spmm_backward(a, dy);
  double l = 0, r = 0;
  for (int64_t i = 0; i < ax.numel(); ++i) l += double(ax.data()[i]) * dy.data()[i];
  for (int64_t i = 0; i < x.numel(); ++i) r += double(x.data()[i]) * atdy.data()[i];
  CHECK(std::abs(l - r) <= 1e-4 * std::abs(l));
  // Deterministic.
  CHECK(ops::spmm_backward(a, dy).to_vector() == ops::spmm_backward(a, dy).to_vector());
  CHECK_THROWS_AS(ops::spmm_forward(a, randn({22, 19}, 1)), Error);
  CHECK_THROWS_AS(ops::dense_spmm_forward(randn({3, 36}, 1), a), Error);
}

TEST_CASE("sparse: row selection and transpose agree with the dense matrix") {
  const ops::CsrMatrix a = random_csr(20, 9, 11);
  const Tensor d = a.to_dense();
  const std::vector<int64_t> rows{3, 0, 17, 17, 5};
  const Tensor s = a.select_rows(rows).to_dense();
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (int64_t c = 0; c < 9; ++c) CHECK(s.at({int64_t(i), c}) == d.at({rows[i], c}));
  const ops::CsrMatrix t = a.transpose();
  t.check();
  const Tensor td = t.to_dense();
  for (int64_t r = 0; r < 20; ++r)
    for (int64_t c = 0; c < 9; ++c) CHECK(td.at({c, r}) == d.at({r, c}));
}

TEST_CASE("sparse: bilinear operator reproduces upsample_bilinear2d, rows sum to 1") {
  for (auto [g, s] : {std::pair<int64_t, int64_t>{4, 16}, {7, 24}, {5, 5}, {3, 10}}) {
    const ops::CsrMatrix u = ops::bilinear_operator(g, g, s, s);
    u.check();
    CHECK(u.rows == s * s);
    CHECK(u.cols == g * g);
    for (int64_t r = 0; r < u.rows; ++r) {
      double sum = 0;
      CHECK(u.row_ptr[r + 1] - u.row_ptr[r] <= 4);
      for (int64_t e = u.row_ptr[r]; e < u.row_ptr[r + 1]; ++e) sum += u.val[e];
      CHECK(std::abs(sum - 1.0) < 1e-6);
    }
    const int64_t C = 6;
    const Tensor tokens = randn({g * g, C}, 3);  // [g², C] row-major grid
    const Tensor up = ops::upsample_bilinear2d_forward(
        tokens.transpose(0, 1).contiguous().reshape({1, C, g, g}), s, s);
    const Tensor lit = up.reshape({C, s * s}).transpose(0, 1).contiguous();
    CHECK(max_abs_diff(u.matmul(tokens), lit) < 1e-5);
  }
}
