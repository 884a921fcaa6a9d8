#pragma once
// Flags and helpers shared by the verbs that run the extractors and the networks
// (train, evaluate, detect, score, demo): extractor weights, checkpoint loading with the
// hash check, --profile.
#include <CLI/CLI.hpp>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "models/checkpoint.hpp"
#include "models/pipeline.hpp"
#include "models/workflow.hpp"

namespace cmdr::app {

struct ExtractorArgs {
  std::string rgb_weights, xyz_weights;
  bool allow_mismatch = false;
  int64_t groups = 1024, group_size = 128;
  bool bn_running_stats = false;
  std::string precision = "fp32";  // --precision (applied process-wide while parsing)
};
// --rgb-weights, --xyz-weights, --precision (+ for inference verbs --allow-weight-mismatch).
void add_weight_flags(CLI::App* c, ExtractorArgs& a, bool inference);
// --groups, --group-size, --bn-running-stats (training only: a checkpoint records them).
void add_group_flags(CLI::App* c, ExtractorArgs& a);

// Loads the extractors a checkpoint needs: the files given on the command line, else the
// paths recorded in the checkpoint (when they still exist); checks the SHA-256 hashes.
models::Extractors extractors_for(const models::LoadedCheckpoint& ck, const ExtractorArgs& a,
                                  const char* verb);

struct CheckpointArgs {
  std::string path, mode;
  int64_t size = 0;
};
void add_checkpoint_flags(CLI::App* c, CheckpointArgs& a, bool allow_dir = false);
models::LoadedCheckpoint open_checkpoint(const CheckpointArgs& a);

// --profile: enable before the work, report after (table on stderr, Chrome trace file).
void profile_begin(bool on);
void profile_end(bool on, const std::string& trace_path);

// Refuses an existing non-empty directory unless force (nothing overwritten silently).
void require_empty_dir(const std::string& dir, bool force, const char* flag);

// ---- Plain messages for command-line mistakes (issue 9 item 7) ----
// Number checks with plain messages (CLI11's PositiveNumber prints a 300-digit range).
CLI::Validator positive();      // > 0
CLI::Validator non_negative();  // >= 0
CLI::Validator finite();        // a finite number (--threshold nan|inf is an error)
// An input file: "does not exist" / "is a directory, not a file" / "is not readable".
void check_input_file(const std::string& path, const char* verb, const char* flag);
// Creates an output folder (and its parents); a parent that is a regular file (or any other
// failure) is a plain error naming the flag and the path, not a raw filesystem message.
void make_output_dir(const std::string& dir, const char* verb, const char* flag);
// The folder a file will be written into must exist (or be creatable); checked before work.
void check_output_file(const std::string& file, bool force, const char* verb, const char* flag);

// apps/cmd_train.cpp: runs a training job (extractor resolution, summary on stdout); `demo`
// calls it too.
models::TrainReport run_train_job(models::TrainJob job, const ExtractorArgs& exa,
                                  bool random_extractors, uint64_t random_seed, bool profile);

// apps/cmd_evaluate.cpp: evaluates the classes, prints both tables, returns the JSON.
struct EvaluateArgs {
  std::string data, json, save_maps, heatmaps;
  std::vector<std::string> classes;  // empty with all = true
  bool all = false, profile = false, force = false;
  float threshold = std::numeric_limits<float>::quiet_NaN();
};
// --checkpoint: one file, or a folder of <class>.safetensors (one per class, for --all).
nlohmann::json run_evaluate(const EvaluateArgs& a, const CheckpointArgs& ca,
                            const ExtractorArgs& exa);

}  // namespace cmdr::app
