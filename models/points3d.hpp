#pragma once
// 3D-only anomaly detection on unorganised point-cloud chunks (issue 5 item 6, the paper's
// polyurethane experiment), built from the SPEC 4.2 / 4.3 / 5.3 / 7 pieces:
//   1. a chunk of N points is laid on a G×G grid, G = ⌈√N⌉, in file order (point i at row
//      i / G, column i % G; the remaining G² − N cells are zero);
//   2. the grid (3×G×G, and the 0/1 labels likewise) is nearest-resized to S×S with
//      ops::resize_nearest2d_forward (S = 96 for N = 9216: the identity);
//   3. Point-MAE (SPEC 4.2, here 96 groups of 32 points by default) on the valid points of
//      the resized grid (all three coordinates non-zero, row-major), feature assembly
//      (SPEC 4.3) -> xyz_patch [S², C] and valid [S²];
//   4. Decoder3D at L = S² (SPEC 5.3; Cmdr mode 3d) reconstructs xyz_patch; d_rec3d =
//      e(recon, xyz) masked (SPEC 7);
//   5. map M = box_5(d_rec3d), ONCE (not SPEC 7's box_5 ×5 + box_7 ×3);
//      image score = max(M) / sqrt(mean of the non-zero M);
//      pixel map = M / sqrt(mean of the non-zero M) (so the image score is its maximum);
//      AUPRO map = M / mean(non-zero M) (SPEC 7's analogue).
// Metrics: I-AUROC over chunk scores (a chunk is anomalous when any point is labelled 1);
// P-AUROC over every ORIGINAL point of every test chunk, each scored by the pixel map
// averaged over the S×S pixels that the resize copied from its grid cell (when S < G and
// no pixel copied the cell: the pixel nearest to the cell centre); AUPRO (SPEC 8, 99
// thresholds) on the S×S AUPRO maps against the resized S×S label grids (padding = 0).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "io/metrics.hpp"
#include "models/cmdr.hpp"
#include "models/point_mae.hpp"
#include "models/train.hpp"

namespace cmdr::models {

// ⌈√n⌉ computed exactly in integers (n >= 1).
int64_t grid_side(int64_t n);

// points [N, 3] -> [3, G, G], G = grid_side(N): point i at (i / G, i % G), zeros elsewhere.
Tensor points_to_grid(const Tensor& points);
// labels [N] (0/1) -> [G, G] float 0/1 laid out like points_to_grid.
Tensor labels_to_grid(const std::vector<uint8_t>& labels);
// [C, G, G] -> [C, S, S] nearest (ops::resize_nearest2d_forward, PyTorch 'nearest').
Tensor resize_grid(const Tensor& grid, int64_t S);

// For each original point of a chunk of n points, the pixels (p = y·S + x) of the S×S map
// that carry it: the block of output rows/cols whose nearest source is the point's grid
// cell; when S < G a cell may have no such pixel, then the pixel nearest to the cell centre
// (floor((r + 0.5)·S / G)) is used. CSR layout.
struct PointPixels {
  int64_t n = 0, side = 0;
  std::vector<int64_t> offset;  // [n + 1]
  std::vector<int64_t> pixel;   // pixel indices, row-major within a point
};
PointPixels point_pixels(int64_t n, int64_t S);
// Per-point score: the mean of `map` [S, S] over the point's pixels.
std::vector<float> point_scores(const Tensor& map, const PointPixels& pp);

// Step 5 above on d_rec3d [S, S] (already masked).
struct PointsMaps {
  Tensor map;                // M = box_5(d_rec3d)
  Tensor pixel_map;          // M / sqrt(mean non-zero M)
  Tensor aupro_map;          // M / mean(non-zero M)
  float image_score = 0.0f;  // max(M) / sqrt(mean non-zero M); 0 when M is all zero
};
PointsMaps points_maps(const Tensor& d_rec3d);

// The frozen features of one chunk in compact form (SPEC 10): the valid points of the
// resized grid with their pixels, the Point-MAE centres and group features.
struct ChunkFeatures {
  Tensor points;               // [Nv, 3]
  std::vector<int64_t> pixel;  // [Nv]
  Tensor centers, features;    // [G, 3], [G, C]
};
// Steps 1-3 up to the group features. Errors (naming `what`) when the resized grid has
// fewer valid points than the group size or the group count.
ChunkFeatures chunk_features(const PointMae& pmae, const Tensor& points, int64_t S,
                             const std::string& what);
// FeatureCache entry <-> Sample: the entry stores points, pixel (as float), centers,
// features and S; expansion runs assemble_xyz + valid_mask (cheap next to Decoder3D).
FeatureCache::Entry chunk_entry(const ChunkFeatures& f, int64_t S);
Sample expand_chunk_entry(const FeatureCache::Entry& e);

// Random Point-MAE weights in the layout of param_specs (trunc-normal 0.02 / BatchNorm
// ones-zeros), for tests and for runs without pretrained weights.
void init_point_mae_random(PointMae& m, uint64_t seed);

// ---- library entry points of the CLI (`train/evaluate --mode 3d --points DIR`) -----------

// The Point-MAE of the points experiment: SPEC 4.2 widths, 96 groups of 32 points.
inline PointMaeConfig points_pmae_config() {
  PointMaeConfig c;
  c.num_group = 96;
  c.group_size = 32;
  return c;
}

struct PointsTrainOptions {
  std::string points_dir;   // dataset root (io/pointcloud.hpp layout)
  std::string out;          // checkpoint path (safetensors, written atomically)
  std::string xyz_weights;  // Point-MAE safetensors; "" = random weights (loud warning)
  int64_t side = 96;        // S (multiple of 8; S² divisible by 32)
  PointMaeConfig pmae = points_pmae_config();  // num_group 96, group_size 32 (flags)
  Decoder3DConfig dec3d;  // widths / att_hidden (length and channels are derived)
  int epochs = 50;
  float lr = 1e-3f;
  float clip_grad = 0.0f;
  uint64_t seed = 0;
  bool quiet = false;
  bool profile = false;  // per-op table on stderr at the end (engine/profiler.hpp)
};

struct PointsEvalOptions {
  std::string points_dir;
  std::string checkpoint;
  std::string xyz_weights;  // must match the checkpoint's hash (unless ignore_hash)
  bool ignore_hash = false;
  std::string json;        // optional metrics JSON
  std::string scores_csv;  // optional per-chunk scores: path,score,label,decision
  bool quiet = false;      // no progress on stderr
  bool print = true;       // the metrics table on stdout
  bool profile = false;    // per-op table on stderr at the end
};

struct PointsEvalResult {
  std::vector<std::string> paths;
  std::vector<float> image_scores;
  std::vector<uint8_t> image_labels;
  double i_auroc = 0, p_auroc = 0;  // NaN when a class is missing
  std::array<double, 4> aupro{};    // at metrics::kAuproLimits; NaN without defects
  int64_t points = 0, anomalous_points = 0;
  float threshold = 0;
};

// Train: reads DIR/train (and DIR/validation for the threshold), caches the features, trains
// Decoder3D (Cmdr mode 3d) for `epochs`, calibrates the threshold (1.05 × the maximum image
// score of the validation chunks, or of the training chunks without a validation folder)
// and writes the checkpoint. Returns 0.
int run_points_train(const PointsTrainOptions& opt);
// Evaluate: scores DIR/test with a checkpoint written by run_points_train; prints the
// metrics table; writes json / scores_csv if asked. Returns 0.
int run_points_evaluate(const PointsEvalOptions& opt, PointsEvalResult* result = nullptr);

}  // namespace cmdr::models
