// Constant sparse (CSR) operators and their products with dense matrices (SPEC 10): the
// bilinear upsampling U of the DINO tokens and the 3D assembly P of SPEC 4.3 are fixed
// linear maps, so the first Linear of a network can run on the compact features and the
// operator be applied after (spmm), and Decoder3D's Linear over positions W·(P·G) becomes
// (W·P)·G (dense_spmm). No gradient flows into the operator itself.
#include <algorithm>
#include <vector>

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "ops/ops.hpp"
#include "ops/pointwise_detail.hpp"

namespace cmdr::ops {

void CsrMatrix::check() const {
  CMDR_CHECK(rows >= 0 && cols >= 0, "csr: [", rows, ", ", cols, "] has a negative extent");
  CMDR_CHECK(static_cast<int64_t>(row_ptr.size()) == rows + 1, "csr: row_ptr has ", row_ptr.size(),
             " entries, expected rows + 1 = ", rows + 1);
  CMDR_CHECK(row_ptr.front() == 0 && row_ptr.back() == nnz() && val.size() == col.size(),
             "csr: row_ptr ends [", row_ptr.front(), ", ", row_ptr.back(), "] vs ", nnz(),
             " column indices and ", val.size(), " values");
  for (int64_t r = 0; r < rows; ++r) {
    const auto b = static_cast<std::size_t>(row_ptr[static_cast<std::size_t>(r)]);
    const auto e = static_cast<std::size_t>(row_ptr[static_cast<std::size_t>(r + 1)]);
    CMDR_CHECK(b <= e, "csr: row ", r, " has a decreasing row_ptr");
    for (std::size_t i = b; i < e; ++i) {
      CMDR_CHECK(col[i] >= 0 && col[i] < cols && (i == b || col[i] > col[i - 1]), "csr: row ", r,
                 " column ", col[i], " out of [0, ", cols, ") or not ascending");
    }
  }
}

Tensor CsrMatrix::matmul(const Tensor& dense) const {
  return spmm_forward(*this, dense);
}

CsrMatrix CsrMatrix::select_rows(const std::vector<int64_t>& idx) const {
  CsrMatrix s;
  s.rows = static_cast<int64_t>(idx.size());
  s.cols = cols;
  s.row_ptr.reserve(idx.size() + 1);
  s.row_ptr.push_back(0);
  for (int64_t r : idx) {
    CMDR_CHECK(r >= 0 && r < rows, "csr select_rows: row ", r, " outside [0, ", rows, ")");
    const auto b = row_ptr[static_cast<std::size_t>(r)],
               e = row_ptr[static_cast<std::size_t>(r + 1)];
    s.col.insert(s.col.end(), col.begin() + b, col.begin() + e);
    s.val.insert(s.val.end(), val.begin() + b, val.begin() + e);
    s.row_ptr.push_back(static_cast<int64_t>(s.col.size()));
  }
  return s;
}

CsrMatrix CsrMatrix::transpose() const {
  // Counting sort by column; rows are visited in ascending order, so every row of the
  // transpose is ascending too.
  CsrMatrix t;
  t.rows = cols;
  t.cols = rows;
  t.row_ptr.assign(static_cast<std::size_t>(cols + 1), 0);
  for (int32_t c : col) ++t.row_ptr[static_cast<std::size_t>(c) + 1];
  for (int64_t c = 0; c < cols; ++c)
    t.row_ptr[static_cast<std::size_t>(c + 1)] += t.row_ptr[static_cast<std::size_t>(c)];
  t.col.resize(col.size());
  t.val.resize(val.size());
  std::vector<int64_t> next(t.row_ptr.begin(), t.row_ptr.end() - 1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t e = row_ptr[static_cast<std::size_t>(r)];
         e < row_ptr[static_cast<std::size_t>(r + 1)]; ++e) {
      const auto dst = static_cast<std::size_t>(
          next[static_cast<std::size_t>(col[static_cast<std::size_t>(e)])]++);
      t.col[dst] = static_cast<int32_t>(r);
      t.val[dst] = val[static_cast<std::size_t>(e)];
    }
  }
  return t;
}

Tensor CsrMatrix::to_dense() const {
  Tensor d = Tensor::zeros({rows, cols});
  float* p = d.data();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = row_ptr[static_cast<std::size_t>(r)];
         e < row_ptr[static_cast<std::size_t>(r + 1)]; ++e)
      p[r * cols + col[static_cast<std::size_t>(e)]] += val[static_cast<std::size_t>(e)];
  return d;
}

CsrMatrix bilinear_operator(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w) {
  CMDR_CHECK(in_h >= 1 && in_w >= 1 && out_h >= 1 && out_w >= 1, "bilinear_operator: ", in_h, "×",
             in_w, " -> ", out_h, "×", out_w, ": every extent must be positive");
  // The same taps as upsample_bilinear2d_forward (pointwise_detail.hpp); a clamped edge tap
  // (i0 == i1) is merged into one entry.
  using detail::LinearTap;
  const std::vector<LinearTap> th = detail::bilinear_taps(in_h, out_h),
                               tw = detail::bilinear_taps(in_w, out_w);
  CsrMatrix u;
  u.rows = out_h * out_w;
  u.cols = in_h * in_w;
  u.row_ptr.reserve(static_cast<std::size_t>(u.rows + 1));
  u.row_ptr.push_back(0);
  for (int64_t oh = 0; oh < out_h; ++oh) {
    for (int64_t ow = 0; ow < out_w; ++ow) {
      const LinearTap &a = th[static_cast<std::size_t>(oh)], &b = tw[static_cast<std::size_t>(ow)];
      std::pair<int32_t, float> e[4] = {{static_cast<int32_t>(a.i0 * in_w + b.i0), a.l0 * b.l0},
                                        {static_cast<int32_t>(a.i0 * in_w + b.i1), a.l0 * b.l1},
                                        {static_cast<int32_t>(a.i1 * in_w + b.i0), a.l1 * b.l0},
                                        {static_cast<int32_t>(a.i1 * in_w + b.i1), a.l1 * b.l1}};
      std::sort(std::begin(e), std::end(e),
                [](const auto& x, const auto& y) { return x.first < y.first; });
      for (int k = 0; k < 4; ++k) {
        if (e[k].second == 0.0f) continue;
        if (!u.col.empty() && static_cast<int64_t>(u.col.size()) > u.row_ptr.back() &&
            u.col.back() == e[k].first) {
          u.val.back() += e[k].second;
        } else {
          u.col.push_back(e[k].first);
          u.val.push_back(e[k].second);
        }
      }
      u.row_ptr.push_back(static_cast<int64_t>(u.col.size()));
    }
  }
  return u;
}

namespace {

void check_dense2(const char* op, const char* what, const Tensor& t) {
  CMDR_CHECK(t.defined() && t.dim() == 2, op, ": ", what, " ", t.defined() ? t.str() : "undefined",
             " must be a 2-d matrix");
}

// y[r, :] = Σ_e a.val[e] · x[a.col[e], :], rows in parallel, entries in stored order.
Tensor csr_times_dense(const CsrMatrix& a, const Tensor& x) {
  const int64_t C = x.size(1);
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::zeros({a.rows, C});
  const float* xp = xc.data();
  float* yp = y.data();
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t r = 0; r < a.rows; ++r) {
    float* o = yp + r * C;
    for (int64_t e = a.row_ptr[static_cast<std::size_t>(r)];
         e < a.row_ptr[static_cast<std::size_t>(r + 1)]; ++e) {
      const float v = a.val[static_cast<std::size_t>(e)];
      const float* s = xp + static_cast<int64_t>(a.col[static_cast<std::size_t>(e)]) * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) o[c] += v * s[c];
    }
  }
  return y;
}

}  // namespace

Tensor spmm_forward(const CsrMatrix& a, const Tensor& x) {
  const char* op = op_name(Op::Spmm);
  check_dense2(op, "x", x);
  CMDR_CHECK(x.size(0) == a.cols, op, ": operator [", a.rows, ", ", a.cols, "] · x ", x.str(),
             ": inner extents differ");
  ProfileScope prof(op, 2.0 * static_cast<double>(a.nnz() * x.size(1)),
                    4.0 * static_cast<double>((a.rows + a.cols) * x.size(1)));
  return csr_times_dense(a, x);
}

Tensor spmm_backward(const CsrMatrix& a, const Tensor& dy) {
  const char* op = "spmm_backward";
  check_dense2(op, "dy", dy);
  CMDR_CHECK(dy.size(0) == a.rows, op, ": dy ", dy.str(), " vs operator [", a.rows, ", ", a.cols,
             "]");
  ProfileScope prof(op_name(Op::Spmm), 2.0 * static_cast<double>(a.nnz() * dy.size(1)),
                    4.0 * static_cast<double>((a.rows + a.cols) * dy.size(1)));
  // dx = Aᵀ·dy as a gather over the transpose's rows: parallel without write conflicts.
  return csr_times_dense(a.transpose(), dy);
}

Tensor dense_spmm_forward(const Tensor& x, const CsrMatrix& a) {
  const char* op = op_name(Op::DenseSpmm);
  check_dense2(op, "x", x);
  CMDR_CHECK(x.size(1) == a.rows, op, ": x ", x.str(), " · operator [", a.rows, ", ", a.cols,
             "]: inner extents differ");
  const int64_t M = x.size(0), R = a.rows, K = a.cols;
  ProfileScope prof(op, 2.0 * static_cast<double>(M * a.nnz()),
                    4.0 * static_cast<double>(M * (R + K)));
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::zeros({M, K});
  const float* xp = xc.data();
  float* yp = y.data();
  // Row m of y = Σ_r x[m, r] · A[r, :]: each thread owns whole output rows (K floats, in
  // cache) and streams its x row once.
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = xp + m * R;
    float* o = yp + m * K;
    for (int64_t r = 0; r < R; ++r) {
      const float s = xr[r];
      for (int64_t e = a.row_ptr[static_cast<std::size_t>(r)];
           e < a.row_ptr[static_cast<std::size_t>(r + 1)]; ++e)
        o[a.col[static_cast<std::size_t>(e)]] += s * a.val[static_cast<std::size_t>(e)];
    }
  }
  return y;
}

Tensor dense_spmm_backward(const Tensor& dy, const CsrMatrix& a) {
  const char* op = "dense_spmm_backward";
  check_dense2(op, "dy", dy);
  CMDR_CHECK(dy.size(1) == a.cols, op, ": dy ", dy.str(), " vs operator [", a.rows, ", ", a.cols,
             "]");
  const int64_t M = dy.size(0), R = a.rows, K = a.cols;
  ProfileScope prof(op_name(Op::DenseSpmm), 2.0 * static_cast<double>(M * a.nnz()),
                    4.0 * static_cast<double>(M * (R + K)));
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::empty({M, R});
  const float* gp = gc.data();
  float* dp = dx.data();
  // dx[m, r] = Σ_e dy[m, col_e] · val_e over row r of A (a gather: no transpose needed).
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float* g = gp + m * K;
    float* d = dp + m * R;
    for (int64_t r = 0; r < R; ++r) {
      float s = 0.0f;
      for (int64_t e = a.row_ptr[static_cast<std::size_t>(r)];
           e < a.row_ptr[static_cast<std::size_t>(r + 1)]; ++e)
        s += g[a.col[static_cast<std::size_t>(e)]] * a.val[static_cast<std::size_t>(e)];
      d[r] = s;
    }
  }
  return dx;
}

}  // namespace cmdr::ops
