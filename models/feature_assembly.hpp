#pragma once
// Feature assembly per sample (SPEC 4.3) for any output side S:
//   rgb_patch [S², C2d]: bilinear upsampling (align_corners = false) of the g×g token grid;
//   xyz_patch [S², C3d]: 3-NN inverse-distance interpolation of the group features at every
//     valid point, scattered to its pixel, 3×3 average pool (no padding), adaptive average
//     pool back to S×S;
//   valid [S²]: 0 where the xyz_patch row is all zeros (no point contributed), else 1.
// The 3D path is linear in the group features: xyz_patch = P·G with P a sparse S²×G
// operator (SPEC 10). build_xyz_operator() makes P explicit (CSR) for later restructurings.
#include <cstdint>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr::models {

// The valid points of an organised cloud (SPEC 4.2 input): cloud [3, H, W] -> points [N, 3]
// whose three coordinates are all non-zero, in row-major pixel order, with their pixels.
struct ValidPoints {
  Tensor xyz;                  // [N, 3]
  std::vector<int64_t> pixel;  // [N], y·W + x
};
ValidPoints valid_points(const Tensor& cloud);

// tokens [g·g, C] (row-major grid) -> [S², C]
Tensor assemble_rgb(const Tensor& tokens, int64_t grid, int64_t S);

// 3 nearest centres of every point, d = Σ(a − b)² in float32 ((dx² + dy²) + dz²), ties ->
// lower centre index; weights 1/(d + 1e-8) normalised to sum 1 (SPEC 4.3).
struct ThreeNN {
  std::vector<int32_t> idx;  // [N·3]
  std::vector<float> w;      // [N·3]
};
ThreeNN three_nn(const Tensor& points, const Tensor& centers);

// points [N, 3] with pixels, centres [G, 3], features [G, C] -> [S², C]. Dense path: the
// 3-NN interpolation is scattered straight into a [C, S, S] grid, then ops::avg_pool2d and
// ops::adaptive_avg_pool2d.
Tensor assemble_xyz(const Tensor& points, const std::vector<int64_t>& pixel, const Tensor& centers,
                    const Tensor& features, int64_t S);

// [S², C] -> [S²] with 1 = valid, 0 = invalid (an all-zero row; see the .cpp for why this
// reads SPEC 4.3's "sums to exactly 0" as "is exactly 0").
Tensor valid_mask(const Tensor& xyz_patch);

// Compressed sparse rows, float values.
struct CsrMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_ptr;  // [rows + 1]
  std::vector<int32_t> col;      // ascending within a row
  std::vector<float> val;
  int64_t nnz() const { return static_cast<int64_t>(col.size()); }
  // this [rows, cols] · dense [cols, C] -> [rows, C]
  Tensor matmul(const Tensor& dense) const;
};

// P [S², G] with xyz_patch = P · features (weights composed in float64, stored as float).
CsrMatrix build_xyz_operator(const Tensor& points, const std::vector<int64_t>& pixel,
                             const Tensor& centers, int64_t S);

// xyz_patch through P (SPEC 10): build_xyz_operator(...).matmul(features). Same numbers as
// assemble_xyz up to float rounding (tested ≤ 1e-5 of the max), ~10× faster at S = 224
// because a row of P has only a handful of centres (bench_extractors: ~4.3 per row).
Tensor assemble_xyz_sparse(const Tensor& points, const std::vector<int64_t>& pixel,
                           const Tensor& centers, const Tensor& features, int64_t S);

}  // namespace cmdr::models
