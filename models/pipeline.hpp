#pragma once
// One code path from a sample on disk to the networks' inputs (SPEC 3-4): load both frozen
// extractors (configuration read from the weight files, SHA-256 recorded), run the SPEC 3
// transforms, DINO (always on the 224×224 transform: its 28×28 grid, SPEC 4.1) and
// Point-MAE on the valid points of the S×S resized cloud, and keep the COMPACT form of the
// features (SPEC 10): the g×g tokens and the group features with the points and their
// pixels, ~3 + 5 MB per sample instead of S²×(768+1152) floats (385 MB at S = 224).
// expand_features() turns the compact form into rgb_patch [S², 768], xyz_patch [S², 1152]
// and valid [S²] (SPEC 4.3) on demand; `features`, `train`, `evaluate`, `detect` and `score`
// all go through extract_features() + expand_features().
//
// Defined outcomes: a sample with no xyz file, or fewer valid points than the small-cloud
// rule allows (point_mae_grouping: min(32, group size) points; with fewer points than the
// configured groups Point-MAE runs on min(G, N) groups of min(K, N)), has no 3D features (xyz_patch
// and valid all zero; fusion then falls back to 2D, SPEC 7) and a warning; a sample with no rgb
// file has a zero rgb_patch (3D-only).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "models/dino_vit.hpp"
#include "models/point_mae.hpp"
#include "models/train.hpp"

namespace cmdr::models {

// Point-MAE options that are not weights (they change the features, so checkpoints record
// them): group count / size (SPEC 4.2 defaults 1024 / 128) and the BatchNorm variant.
struct ExtractorOptions {
  int64_t num_group = 1024;
  int64_t group_size = 128;
  bool bn_running_stats = false;
  // Issue 9 item 6: a cloud with fewer valid points than the groups runs Point-MAE on fewer
  // groups (point_mae_grouping) instead of losing its 3D features. Checkpoints record it;
  // one written before the rule loads with false (its samples were trained without it).
  bool scale_groups = true;
};

// The architecture of a DINO / Point-MAE weight file from its tensor shapes. Head counts
// cannot be read from shapes: metadata "cmdr.heads" when present, else dim / 64 (12 for
// ViT-B, 6 for Point-MAE). Point-MAE taps: metadata "cmdr.taps" ("3,7,11") when present,
// else {3, 7, 11} for depth 12, else the last block.
DinoVitConfig dino_config_from(const st::File& f);
PointMaeConfig point_mae_config_from(const st::File& f, const ExtractorOptions& opt);

struct Extractors {
  std::unique_ptr<DinoVit> vit;    // null when not loaded (mode 3d)
  std::unique_ptr<PointMae> pmae;  // null when not loaded (mode 2d)
  std::string rgb_path, xyz_path;
  std::string rgb_sha256, xyz_sha256;  // "" when not loaded
  bool random = false;                 // a file is flagged as random weights
  ExtractorOptions opt;
  int64_t rgb_dim() const { return vit ? vit->cfg.dim : 768; }
  int64_t xyz_dim() const { return pmae ? pmae->cfg.out_dim() : 1152; }
};
// Loads the files given (an empty path skips that extractor). Notes go to stderr unless
// quiet. Errors name the file.
Extractors load_extractors(const std::string& rgb_weights, const std::string& xyz_weights,
                           const ExtractorOptions& opt, bool quiet);

// Wall time per stage of one sample, milliseconds.
struct StageTimes {
  double read = 0, transform = 0, rgb_extractor = 0, xyz_extractor = 0, assemble = 0, networks = 0,
         fusion = 0;
  double total() const {
    return read + transform + rgb_extractor + xyz_extractor + assemble + networks + fusion;
  }
};

// The compact (SPEC 10) features of one sample.
struct SampleFeatures {
  int64_t side = 0;
  bool has_rgb = false, has_3d = false;
  Tensor rgb_tokens;  // [g², 768] (has_rgb); grid g
  int64_t grid = 0;
  Tensor points;                   // [N, 3] valid points of the resized cloud (has_3d)
  std::vector<int64_t> pixel;      // [N] their pixels y·S + x
  Tensor centers, group_features;  // [G, 3], [G, 1152] (has_3d)
  int64_t n_valid_points = 0;
  std::string warning;  // non-empty: the caller should print it (fallback taken)
  std::string note;     // non-empty: Point-MAE ran on fewer groups (point_mae_grouping)
  // Audit tensors, only with keep_inputs: rgb_input 3×S×S, pc_resized 3×S×S.
  Tensor rgb_input, pc_resized;
  StageTimes t;
};

// rgb_png / xyz_tiff: either may be "" (then that modality is absent). Runs only the
// extractors that are loaded.
SampleFeatures extract_features(const Extractors& ex, const std::string& rgb_png,
                                const std::string& xyz_tiff, int64_t side,
                                bool keep_inputs = false);

// Compact form -> networks' inputs (SPEC 4.3). Missing modalities become zeros (valid all
// zero when there is no 3D). t->assemble receives the time when given. Sample.compact
// always holds the operator form (U, P as CSR: SPEC 10); dense = true also forms
// rgb_patch (bilinear upsampling) and xyz_patch (= P·G, the sparse assembly) as [S², C].
Sample expand_features(const SampleFeatures& f, int64_t rgb_dim, int64_t xyz_dim,
                       StageTimes* t = nullptr, bool dense = true);

// The same as a FeatureCache entry (tensors only; pixel indices stored as exact floats)
// and its expand function.
FeatureCache::Entry to_cache_entry(const SampleFeatures& f);
// dense = false: only Sample.compact (what training needs; no [S², C] patches per step).
FeatureCache::Expand cache_expander(int64_t side, int64_t rgb_dim, int64_t xyz_dim,
                                    bool dense = true);

}  // namespace cmdr::models
