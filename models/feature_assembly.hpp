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
#include <memory>
#include <vector>

#include "engine/tensor.hpp"
#include "ops/ops.hpp"

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

// Compressed sparse rows, float values (ops/sparse.cpp: products, row selection).
using CsrMatrix = ops::CsrMatrix;

// P [S², G] with xyz_patch = P · features (weights composed in float64, stored as float).
CsrMatrix build_xyz_operator(const Tensor& points, const std::vector<int64_t>& pixel,
                             const Tensor& centers, int64_t S);

// xyz_patch through P (SPEC 10): build_xyz_operator(...).matmul(features). Same numbers as
// assemble_xyz up to float rounding (tested ≤ 1e-5 of the max), ~10× faster at S = 224
// because a row of P has only a handful of centres (bench_extractors: ~4.3 per row).
Tensor assemble_xyz_sparse(const Tensor& points, const std::vector<int64_t>& pixel,
                           const Tensor& centers, const Tensor& features, int64_t S);

// The compact (SPEC 10) form of one sample's network inputs: rgb_patch = U·rgb_tokens and
// xyz_patch = P·group_features with both operators explicit (CSR), so the networks' first
// Linears run on the compact features and only the rows a loss or map needs are formed.
// An absent modality is a zero feature row with an empty operator (its patch is all zero).
struct CompactPatches {
  int64_t side = 0;                         // S; 0 = no compact form
  Tensor rgb_tokens;                        // [g², C2d] (or [1, C2d] zeros)
  std::shared_ptr<const CsrMatrix> up;      // U [S², g²]
  Tensor group_features;                    // [G, C3d] (or [1, C3d] zeros)
  std::shared_ptr<const CsrMatrix> xyz_op;  // P [S², G]
  Tensor valid;                             // [S²], as valid_mask(P·G)
  bool defined() const { return side > 0; }
  int64_t positions() const { return side * side; }
  std::vector<int64_t> valid_rows() const;  // indices p with valid[p] != 0
  // Rows of rgb_patch / xyz_patch (all S² rows for an empty list): U_rows·T, P_rows·G.
  Tensor rgb_rows(const std::vector<int64_t>& rows = {}) const;
  Tensor xyz_rows(const std::vector<int64_t>& rows = {}) const;
};

// U for g×g tokens -> S×S (shared: it only depends on g and S).
std::shared_ptr<const CsrMatrix> bilinear_operator_for(int64_t grid, int64_t S);

// Builds the compact form. tokens undefined = no rgb; features undefined = no geometry
// (points, pixel and centers are then ignored). Widths for the absent modality's zero row.
CompactPatches compact_patches(const Tensor& tokens, int64_t grid, const Tensor& points,
                               const std::vector<int64_t>& pixel, const Tensor& centers,
                               const Tensor& features, int64_t S, int64_t rgb_dim, int64_t xyz_dim);

}  // namespace cmdr::models
