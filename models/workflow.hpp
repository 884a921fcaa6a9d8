#pragma once
// The jobs behind the `train`, `evaluate`, `detect`, `score` and `demo` verbs as library
// functions (so tests run them without the binary): score one sample end to end, calibrate
// the decision threshold, train one class into a checkpoint, evaluate one class with both
// metric protocols (SPEC 8), maps and heatmaps.
#include <cstdint>
#include <string>
#include <vector>

#include "io/metrics.hpp"
#include "io/mvtec.hpp"
#include "models/checkpoint.hpp"
#include "models/pipeline.hpp"
#include "models/train.hpp"

namespace cmdr::models {

// ---- Decision threshold (issue 5 item 4) ----
// Rule: threshold = 1.05 × the 99th percentile (linear interpolation between order
// statistics, numpy's default) of the image scores of the class's validation/good samples;
// with fewer than 100 samples that is (nearly) their maximum, plus a 5 % margin. A class
// without a validation split uses its train/good samples instead (scores of samples the
// networks were fitted on are optimistic, so the threshold is then lower than it should be;
// the rule text stored in the checkpoint says which split was used).
inline constexpr double kThresholdQuantile = 0.99;
inline constexpr double kThresholdMargin = 1.05;
float calibrate_threshold(std::vector<float> normal_scores);
double quantile(std::vector<float> v, double q);  // linear interpolation, v non-empty

// Which extractors a training mode needs.
bool mode_needs_rgb(Mode m);
bool mode_needs_xyz(Mode m);

// ---- One sample end to end ----
struct ScoredSample {
  CmdrOutputs out;
  Mode mode_used = Mode::Fused2D3D;
  StageTimes t;
  std::string warning;      // fallback taken (no geometry -> 2D, no rgb -> 3D)
  SampleFeatures features;  // compact features (kept for `score --dump`)
  Sample expanded;          // only with keep_expanded
};
// rgb / xyz: paths ("" = absent). The model's mode decides the fusion; a sample without
// geometry falls back to 2D, a sample without rgb to 3D (both with a warning).
ScoredSample score_sample(Cmdr& model, const Extractors& ex, const std::string& rgb,
                          const std::string& xyz, bool keep_expanded = false);

// ---- Training one class ----
struct TrainJob {
  std::string data, cls, out;
  Mode mode = Mode::Fused2D3D;
  int64_t side = 224;
  int epochs = 50;
  float lr = 1e-3f, clip_grad = 0.0f;
  uint64_t seed = 0;
  bool resume = false, force = false, quiet = false;
  // Training-parity hook: start from these weights, stop after `steps`, no dropout, sorted
  // order, per-step losses to CSV.
  std::string init;
  int64_t steps = -1;
  bool no_dropout = false, no_shuffle = false;
  std::string dump_losses;
  int64_t cache_budget_mb = 4096;  // feature cache in memory; beyond it spilled to disk
  bool calibrate = true;
};
struct TrainReport {
  std::string checkpoint, resume_file;
  std::string resumed_from;   // the file training continued from ("" = from scratch)
  std::string resume_note;    // what --resume did and why (empty without --resume)
  StaleCleanup cleanup;       // stale files of interrupted runs removed before training
  int64_t scaled_groups = 0;  // samples whose Point-MAE grouping was scaled (issue 9 item 6)
  CheckpointMeta meta;
  std::vector<EpochStats> epochs;
  std::vector<Rollback> rollbacks;
  int64_t samples = 0, skipped = 0, no_geometry = 0;
  int64_t cache_bytes_memory = 0, cache_bytes_disk = 0;
  double feature_seconds = 0, train_seconds = 0, calibrate_seconds = 0;
  std::string calibration_split;
  std::vector<float> calibration_scores;
};
// `earlier`: what a preflight_train call made by the caller already cleaned (reported and
// used to explain --resume).
TrainReport train_class(const TrainJob& job, const Extractors& ex,
                        const StaleCleanup* earlier = nullptr);

// Everything train_class checks before any expensive step or large write (issue 9 item 5):
// the job's flags, the --out / resumable-file rules, that the class has a usable train/good
// sample, then remove_stale_files on --out's folder, its .cmdr-feature-cache and its
// random-extractors-seed* folders, and a probe that --out's folder accepts the longest name
// training writes (the resumable file's temporary). A cmdr::Error names the problem. The
// train verb calls it before writing --random-extractors weights; train_class calls it first.
StaleCleanup preflight_train(const TrainJob& job);

// Per-epoch resumable checkpoint next to the final one.
std::string resume_path(const std::string& out);

// ---- Evaluating one class ----
struct EvalJob {
  std::string data, cls;
  std::string save_maps;  // directory: <cls>.safetensors (paper) and <cls>_mvtec.safetensors
  std::string heatmaps;   // directory: <cls>/<defect>_<name>.png
  bool quiet = false;
  float threshold_override = std::numeric_limits<float>::quiet_NaN();
};
struct EvalReport {
  std::string cls;
  int64_t samples = 0, skipped = 0, fallbacks = 0;
  metrics::Result paper, official;
  bool ok = false;      // metrics computed (both labels present)
  std::string problem;  // why not
  StageTimes t;         // summed over samples
  double seconds = 0;
  int64_t true_pos = 0, false_pos = 0, true_neg = 0, false_neg = 0;  // at the threshold
  std::vector<std::string> heatmap_files;
};
EvalReport evaluate_class(Cmdr& model, const CheckpointMeta& meta, const Extractors& ex,
                          const EvalJob& job);

// Resizes an S×S map to the native h×w gt grid: bilinear (align_corners = false) to the
// padded square max(h, w), then the SPEC 3.1 padding cropped away.
Tensor map_to_native(const Tensor& map, int64_t h, int64_t w);

}  // namespace cmdr::models
