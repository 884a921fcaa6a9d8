#pragma once
// The jobs behind the `train`, `evaluate`, `detect`, `score` and `demo` verbs as library
// functions (so tests run them without the binary): score one sample end to end, calibrate
// the decision threshold, train one class into a checkpoint, evaluate one class with both
// metric protocols (SPEC 8), maps and heatmaps.
#include <cstdint>
#include <limits>
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
// The calibration a finished training run stores: the rule above on the split's scores in
// the checkpoint's mode, and for a 2d3d model the same rule per fallback mode (each sample
// scored again with its geometry removed -> "2d", with its rgb removed -> "3d"), so a
// fallback sample is judged against a threshold of its own mode. Sets meta.threshold,
// threshold_rule, fallback_thresholds and map_scale; returns the main-mode scores.
std::vector<float> calibrate_checkpoint(Cmdr& model, const Extractors& ex,
                                        const std::vector<io::Sample>& split,
                                        const std::string& split_name, CheckpointMeta& meta,
                                        bool quiet);
double quantile(std::vector<float> v, double q);  // linear interpolation, v non-empty

// Which extractors a training mode needs.
bool mode_needs_rgb(Mode m);
bool mode_needs_xyz(Mode m);

// ---- One sample end to end ----
struct ScoredSample {
  CmdrOutputs out;
  Mode model_mode = Mode::Fused2D3D;  // the checkpoint's mode
  Mode mode_used = Mode::Fused2D3D;   // differs from model_mode after a fallback
  bool fallback() const { return mode_used != model_mode; }
  StageTimes t;
  std::string warning;      // fallback taken (no geometry -> 2D, no rgb -> 3D)
  SampleFeatures features;  // compact features (kept for `score --dump`)
  Sample expanded;          // only with keep_expanded
};
// rgb / xyz: paths ("" = absent). The model's mode decides the fusion; a sample without
// geometry falls back to 2D, a sample without rgb to 3D (both with a warning). When both
// files are read, their sizes must agree (io::xyz_size_ok; an error names both sizes).
ScoredSample score_sample(Cmdr& model, const Extractors& ex, const std::string& rgb,
                          const std::string& xyz, bool keep_expanded = false);
// The networks + fusion part of score_sample on features already extracted (rgb / xyz only
// name the sample in messages).
ScoredSample score_features(Cmdr& model, SampleFeatures f, const std::string& rgb,
                            const std::string& xyz, bool keep_expanded = false);

// ---- Verdicts (issue 9 items 1 and 3) ----
// OK / NOK: the score was compared with the threshold of the mode the sample was scored
// in. UNKNOWN: no threshold applies (none calibrated for that mode, e.g. a fallback sample
// with a checkpoint that predates per-mode thresholds). ERROR: the score could not be
// computed (non-finite score or map): never OK. SKIPPED: the sample could not be scored at
// all (unreadable file, size mismatch, ...); the caller assigns it.
enum class Verdict { Ok, Nok, Unknown, Error, Skipped };
const char* verdict_name(Verdict v);  // "OK", "NOK", "UNKNOWN", "ERROR", "SKIPPED"
struct Judgement {
  Verdict verdict = Verdict::Unknown;
  float threshold = std::numeric_limits<float>::quiet_NaN();  // the one compared with
  std::string threshold_source;  // "checkpoint", "--threshold", "checkpoint (2d fallback)"...
  std::string error;             // for ERROR: why
};
// True when the image score and every fused map value are finite (a NaN in the map does not
// propagate to the max-based image score, so both are checked).
bool score_computable(const FusionResult& f);
// The threshold for a sample scored in mode `used` by a checkpoint of meta.mode: the
// override (when finite) or meta.threshold for the checkpoint's own mode, else
// meta.fallback_thresholds[used] (an override does not apply to fallback samples: it was
// chosen for the checkpoint's mode). NaN when none.
float threshold_for(const CheckpointMeta& meta, Mode used, float override_threshold,
                    std::string* source = nullptr);
Judgement judge(const ScoredSample& r, const CheckpointMeta& meta, float override_threshold);

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
// One test sample as evaluate judged it (the JSON's per-sample list: audit the confusion).
struct EvalSampleRecord {
  std::string rgb, xyz, defect;
  int gt = 0;  // 1 = defective
  float score = std::numeric_limits<float>::quiet_NaN();
  Verdict verdict = Verdict::Unknown;
  std::string mode;  // mode the sample was scored in
  float threshold = std::numeric_limits<float>::quiet_NaN();
  std::string error;  // ERROR / SKIPPED: why
};
struct EvalReport {
  std::string cls;
  // samples: scored and in the metrics; skipped: the scanner dropped them (dropped_test)
  // or they could not be scored; errors: scored, score not computable (not in the metrics).
  int64_t samples = 0, skipped = 0, fallbacks = 0, errors = 0, unknown = 0;
  std::vector<std::string> skipped_messages;
  float threshold = std::numeric_limits<float>::quiet_NaN();  // of the checkpoint's mode
  std::string threshold_source;
  std::vector<EvalSampleRecord> records;  // every test sample, in scan order
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
