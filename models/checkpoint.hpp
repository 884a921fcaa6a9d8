#pragma once
// A CMDR-IAD checkpoint is ONE safetensors file (issue 5 item 3):
//   tensors  "<net>.<PyTorch name>" for the mode's networks (prefixes map2Dto3D., map3Dto2D.,
//            Dec2D., Dec3D.; SPEC 5 names), BatchNorm num_batches_tracked as I64 scalars;
//            a resumable (per-epoch) checkpoint adds the Adam state "optim.<net>.exp_avg.<i>",
//            "optim.<net>.exp_avg_sq.<i>" (step counts in metadata).
//   metadata "cmdr.format" (kCheckpointFormat), "cmdr.mode", "cmdr.size", "cmdr.class",
//            "cmdr.epochs", "cmdr.seed", "cmdr.losses" (JSON: per-epoch mean losses),
//            "cmdr.threshold" (+ "cmdr.threshold_rule"), "cmdr.fallback_thresholds"
//            (JSON {"2d": t, "3d": t}: per fallback mode of a 2d3d model), "cmdr.map_scale",
//            "cmdr.rgb_sha256" / "cmdr.xyz_sha256" (SHA-256 of the extractor weight files),
//            "cmdr.rgb_weights" / "cmdr.xyz_weights" (their paths at training time, a hint),
//            "cmdr.extractor" (JSON: Point-MAE groups / group size / BatchNorm variant /
//            scale_groups, the small-cloud rule; absent = false),
//            "cmdr.config" (JSON: the network widths), "cmdr.version" (CMDR_VERSION).
// Written atomically (st::Writer: temp file + fsync + rename): an interrupted write never
// leaves a truncated checkpoint. A "bare" state dict (the four prefixes, no cmdr.* metadata,
// e.g. exported from PyTorch) loads when the caller states mode and size. A tensor holding
// NaN/Inf is refused at load, naming the tensor (it could only produce non-finite scores).
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "models/cmdr.hpp"
#include "models/pipeline.hpp"

namespace cmdr::models {

inline constexpr const char* kCheckpointFormat = "cmdr-iad-checkpoint/1";

struct CheckpointMeta {
  Mode mode = Mode::Fused2D3D;
  int64_t side = 224;
  std::string cls;
  int epochs = 0;  // epochs done
  uint64_t seed = 0;
  nlohmann::json losses = nlohmann::json::array();            // [{"epoch", "map2d", ...}, ...]
  float threshold = std::numeric_limits<float>::quiet_NaN();  // NaN: not calibrated
  std::string threshold_rule;
  // Per fallback mode ("2d", "3d") of a 2d3d model: the same rule on the same split scored
  // without geometry / without rgb. Missing (older checkpoints): fallback samples are UNKNOWN.
  std::map<std::string, float> fallback_thresholds;
  float map_scale = std::numeric_limits<float>::quiet_NaN();  // heatmap colour scale
  std::string rgb_sha256, xyz_sha256;
  std::string rgb_weights, xyz_weights;
  ExtractorOptions extractor;
  CmdrConfig config;    // widths (mode/side mirrored from above)
  std::string version;  // build that wrote it
  bool bare = false;    // loaded from a bare state dict (no metadata)
  int64_t steps = 0;    // optimizer steps done
};

nlohmann::json config_to_json(const CmdrConfig& c);
CmdrConfig config_from_json(const nlohmann::json& j, const std::string& file);

// Writes model (+ Adam state when with_optimizer) and meta to `path` atomically.
void save_checkpoint(const std::string& path, Cmdr& model, const CheckpointMeta& meta,
                     bool with_optimizer = false);

struct LoadOptions {
  // For a bare state dict (required then); for a full checkpoint, when set, they must agree
  // with the file (else a clear error naming both).
  std::string mode;                // "" = not given
  int64_t side = 0;                // 0 = not given
  bool restore_optimizer = false;  // also restore Adam state (resume)
  bool quiet = false;
};

struct LoadedCheckpoint {
  std::unique_ptr<Cmdr> model;
  CheckpointMeta meta;
  std::string sha256;  // of the checkpoint file
  std::string path;
};
LoadedCheckpoint load_checkpoint(const std::string& path, const LoadOptions& opt = {});

// Compares the checkpoint's extractor hashes with the loaded extractors. A mismatch (or, for
// a bare checkpoint, the absence of hashes) is an error naming both hashes unless
// `allow_mismatch`, in which case a loud warning goes to stderr.
void check_extractor_hashes(const CheckpointMeta& meta, const Extractors& ex, bool allow_mismatch);

}  // namespace cmdr::models
