#pragma once
// Internal to ops/: one strided (batched) matrix product on oneDNN's matmul primitive,
// shared by linear / matmul / bmm / attention. Not part of the public contract.
#include <cstdint>
#include <string>
#include <utility>

#include "engine/tensor.hpp"

namespace cmdr::ops::detail {

// A (batched) matrix view: element (i..., r, c) lives at p[Σ i_k·bs_k + r·sr + c·sc], with
// batch dims bd (outermost first; empty for a single matrix). Any strides: transposes,
// slices and per-window blocks of a [B, H, T, d] tensor are all views without copies.
struct Mat {
  const float* p = nullptr;
  Shape bd, bs;
  int64_t rows = 0, cols = 0, sr = 0, sc = 0;
  int64_t batch() const { return shape_numel(bd); }
  Mat t() const {  // transpose (no copy)
    Mat m = *this;
    std::swap(m.rows, m.cols);
    std::swap(m.sr, m.sc);
    return m;
  }
};
// Views of a 2-D tensor [R, C] / 3-D tensor [B, R, C] (any strides).
Mat mat2(const Tensor& t);
Mat mat3(const Tensor& t);

// C = alpha·(A·B) (+ bias[N] broadcast over rows) for every batch index.
// A [bd..., M, K], B [bd..., K, N] (same batch dims), C [bd..., M, N] at c with batch
// strides c_bs and row stride c_sr (unit column stride). Matrices whose strides are neither
// row- nor column-major are copied to a contiguous buffer first, so oneDNN always runs an
// optimised GEMM. bias and alpha != 1 are exclusive.
// Under precision bf16 (engine/precision.hpp) A and B are rounded to bfloat16 and the
// products accumulate in float32; `exact` keeps float32 operands regardless (for sums that
// are not products of activations and weights, e.g. the bias gradient ones·dy).
void gemm(const Mat& a, const Mat& b, float* c, const Shape& c_bs, int64_t c_sr,
          const float* bias = nullptr, float alpha = 1.0f, bool exact = false);
// Convenience: a fresh contiguous result [bd..., M, N].
Tensor gemm_new(const Mat& a, const Mat& b, const float* bias = nullptr, bool exact = false);

// As gemm_new() for B a view of the weight tensor `w` (a linear layer's weight: reused
// unchanged across calls, e.g. every inference sample): B is prepared for oneDNN once per
// version of w (reordered to the primitive's preferred layout, bf16-rounded under precision
// bf16) by the weight cache (ops/weight_cache.hpp, issue 8) instead of on every call.
// gelu: the exact GELU applied to the result after the bias (oneDNN eltwise_gelu_erf
// post-op). Results equal gemm_new()'s (see tests/ops/test_weight_cache.cpp).
Tensor gemm_weight_new(const Mat& a, const Mat& b, const Tensor& w, const float* bias = nullptr,
                       bool gelu = false);

// oneDNN's implementation string for the matmul that gemm() would run on these operands
// (to check that hot shapes avoid reference fallbacks).
std::string gemm_impl(const Mat& a, const Mat& b);

}  // namespace cmdr::ops::detail
