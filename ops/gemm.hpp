#pragma once
// Internal to ops/: one strided (batched) matrix product on oneDNN's matmul primitive,
// shared by linear / matmul / bmm / attention. Not part of the public contract.
#include <cstdint>
#include <string>

#include "engine/tensor.hpp"

namespace cmdr::ops::detail {

// A (batched) matrix view: element (b, r, c) lives at p[b·sb + r·sr + c·sc].
struct Mat {
  const float* p = nullptr;
  int64_t batch = 1, rows = 0, cols = 0;
  int64_t sb = 0, sr = 0, sc = 0;
  Mat t() const { return Mat{p, batch, cols, rows, sb, sc, sr}; }  // transpose (no copy)
};
// Views of a 2-D tensor [R, C] / 3-D tensor [B, R, C] (any strides).
Mat mat2(const Tensor& t);
Mat mat3(const Tensor& t);

// C = alpha·(A·B) (+ bias[C.cols] broadcast over rows) for every batch index.
// A [batch, M, K], B [batch, K, N], C [batch, M, N] (C may be strided, e.g. a sub-block).
// Matrices whose strides are neither row- nor column-major are copied to a contiguous
// buffer first, so oneDNN always runs its optimised GEMM path.
void gemm(const Mat& a, const Mat& b, float* c, int64_t c_sb, int64_t c_sr,
          const float* bias = nullptr, float alpha = 1.0f);
// Convenience: fresh contiguous result [M, N] (batch == 1) or [B, M, N] (as_3d).
Tensor gemm_new(const Mat& a, const Mat& b, bool as_3d, const float* bias = nullptr);

// oneDNN's implementation string for the matmul that gemm() would run on these operands
// (tests use it to check the hot shapes avoid reference fallbacks).
std::string gemm_impl(const Mat& a, const Mat& b);

}  // namespace cmdr::ops::detail
