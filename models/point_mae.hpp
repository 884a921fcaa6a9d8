#pragma once
// Point-MAE PointTransformer encoder, frozen, forward only (SPEC 4.2): deterministic FPS,
// exact KNN grouping, mini-PointNet (BatchNorm on the sample's own statistics in float64,
// running statistics as an option), pos-embedding, transformer blocks with pos re-added,
// shared final norm on the tapped blocks, channels concatenated.
// Members carry the Point-MAE tensor names after prefix stripping ('.' -> '_').
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "io/safetensors.hpp"
#include "models/transformer.hpp"
#include "models/weights.hpp"

namespace cmdr::models {

struct PointMaeConfig {
  int64_t num_group = 1024;  // FPS centres (SPEC 4.2; 96 is also used later)
  int64_t group_size = 128;  // KNN neighbours per centre (32 is also used later)
  // mini-PointNet widths: first_conv 3 -> c1 -> c2, second_conv 2·c2 -> c3 -> dim.
  int64_t enc_c1 = 128, enc_c2 = 256, enc_c3 = 512;
  int64_t pos_hidden = 128;  // pos_embed: Linear(3 -> pos_hidden), GELU, Linear(-> dim)
  int64_t dim = 384, depth = 12, heads = 6, mlp = 1536;
  std::vector<int64_t> taps = {3, 7, 11};  // blocks whose normed outputs are concatenated
  float ln_eps = 1e-5f, bn_eps = 1e-5f;
  // false (default, SPEC 4.2): BatchNorm uses the statistics of the current sample over
  // all num_group × group_size points. true: the stored running statistics (eval mode).
  bool bn_running_stats = false;
  int64_t out_dim() const { return dim * static_cast<int64_t>(taps.size()); }
};

using PointMaeBlock = TransformerBlock;  // blocks.blocks.{i}.*; qkv has no bias

struct PointMae {
  PointMaeConfig cfg;
  // encoder.first_conv = [0 Conv1d(3, c1, 1), 1 BatchNorm1d(c1), 2 ReLU, 3 Conv1d(c1, c2, 1)]
  Tensor encoder_first_conv_0_weight, encoder_first_conv_0_bias;  // [c1, 3, 1], [c1]
  Tensor encoder_first_conv_1_weight, encoder_first_conv_1_bias;  // [c1]
  Tensor encoder_first_conv_1_running_mean, encoder_first_conv_1_running_var;
  Tensor encoder_first_conv_3_weight, encoder_first_conv_3_bias;  // [c2, c1, 1], [c2]
  // encoder.second_conv = [0 Conv1d(2c2, c3, 1), 1 BatchNorm1d(c3), 2 ReLU, 3 Conv1d(c3, dim, 1)]
  Tensor encoder_second_conv_0_weight, encoder_second_conv_0_bias;  // [c3, 2c2, 1], [c3]
  Tensor encoder_second_conv_1_weight, encoder_second_conv_1_bias;
  Tensor encoder_second_conv_1_running_mean, encoder_second_conv_1_running_var;
  Tensor encoder_second_conv_3_weight, encoder_second_conv_3_bias;  // [dim, c3, 1], [dim]
  // pos_embed = [0 Linear(3, pos_hidden), 1 GELU, 2 Linear(pos_hidden, dim)]
  Tensor pos_embed_0_weight, pos_embed_0_bias, pos_embed_2_weight, pos_embed_2_bias;
  std::vector<PointMaeBlock> blocks;
  Tensor norm_weight, norm_bias;

  explicit PointMae(const PointMaeConfig& c = {});
  // The exact Point-MAE names / shapes / init rules (without num_batches_tracked, which
  // init-extractors writes as I64 scalars next to each BatchNorm).
  std::vector<ParamSpec> param_specs();
  // Point-MAE names; `module.`, `MAE_encoder.`, `base_model.` prefixes are stripped;
  // decoder tensors (MAE_decoder.*, decoder_pos_embed.*, mask_token, increase_dim.*) are
  // ignored with a note.
  LoadReport load(const st::File& file);
};

// Maps a checkpoint key to its Point-MAE encoder name ("" = a decoder key, ignored).
std::string point_mae_key(const std::string& key);

// ---- geometry kernels (SPEC 4.2 steps 1-2), exact and deterministic for any thread count.
// Farthest point sampling: points [N, 3] -> m indices; starts at index 0; distance in float32
// as (dx² + dy²) + dz², dx = p − c, no FMA; running minimum per point; the next centre is
// the first index of the maximum. Running minima start at 1e10 as in the reference kernel.
std::vector<int64_t> farthest_point_sample(const Tensor& points, int64_t m);
// k nearest points of each query: points [N, 3], queries [G, 3] -> G·k indices, row g the
// neighbours of query g sorted by (distance, index) ascending (ties -> lower index).
// Distance as in FPS. Requires k <= N.
std::vector<int64_t> knn_indices(const Tensor& points, const Tensor& queries, int64_t k);

struct PointMaeOutput {
  std::vector<int64_t> center_idx;  // [G] indices into the input points (FPS order)
  Tensor centers;                   // [G, 3]
  Tensor features;                  // [G, out_dim] (1024 × 1152 for the real config)
};

struct PointMaeTrace {
  std::vector<int64_t> knn_idx;   // [G·K]
  Tensor neighborhood;            // [G, K, 3] = points − centre
  Tensor tokens;                  // [G, dim] encoder output
  Tensor pos;                     // [G, dim]
  std::vector<Tensor> block_out;  // block outputs up to the last tap
};

// The group count G and group size K Point-MAE uses on a cloud of n valid points (issue 9
// item 6: thin objects and small S must not lose the 3D branch).
// - n >= max(num_group, group_size): the configured values (SPEC 4.2: 1024 × 128), so the
//   SPEC path is bit-identical whenever the cloud is large enough.
// - otherwise, with `scale` (what training records in the checkpoint, models/checkpoint):
//   G = min(num_group, n) and K = min(group_size, n) — FPS still picks G distinct points,
//   every group has K distinct points, groups keep their SPEC size (the local patch scale
//   the weights were trained on) as long as n allows — provided n >= min_points(c) =
//   min(kMinPointMaePoints, group_size); below that no 3D features (groups = 0).
// - without `scale` (checkpoints written before the rule): no 3D features below
//   max(num_group, group_size), the old 2D fallback.
// Deterministic: a pure function of (config, n, scale); `reason` says what was chosen and why.
inline constexpr int64_t kMinPointMaePoints = 32;  // Point-MAE's pretraining group size
struct PointMaeGrouping {
  int64_t groups = 0, group_size = 0;  // 0: no 3D features for this cloud
  bool scaled = false;                 // fewer than the configured groups / group size
  std::string reason;                  // set when scaled or dropped
};
int64_t point_mae_min_points(const PointMaeConfig& c);
PointMaeGrouping point_mae_grouping(const PointMaeConfig& c, int64_t n, bool scale);

// points [N, 3] (the valid points, row-major pixel order) -> centres and features, with
// cfg.num_group × cfg.group_size, or `grouping` (from point_mae_grouping) when given.
// N < group_size or N < groups is a cmdr::Error (the caller falls back to 2D-only).
PointMaeOutput point_mae_forward(const PointMae& m, const Tensor& points,
                                 PointMaeTrace* trace = nullptr,
                                 const PointMaeGrouping* grouping = nullptr);

// Mini-PointNet alone: neighbourhoods [G, K, 3] -> tokens [G, dim].
Tensor point_mae_encoder_forward(const PointMae& m, const Tensor& neighborhood);

double point_mae_flops(const PointMaeConfig& c);  // encoder + pos + blocks (no FPS/KNN)

}  // namespace cmdr::models
