#pragma once
// Flags of the point-cloud (3D-only) experiment, shared by `cmdr-iad points train|evaluate`
// and by `train/evaluate --mode 3d --points DIR`. The work is in models/points3d.hpp.
#include <CLI/CLI.hpp>

#include "models/points3d.hpp"

namespace cmdr::app {

// --size, --groups, --group-size, --epochs, --lr, --clip-grad, --bn-running-stats
void add_points_train_options(CLI::App& cmd, models::PointsTrainOptions& o);
// --scores, --ignore-weights-hash
void add_points_eval_options(CLI::App& cmd, models::PointsEvalOptions& o);

// `train --mode 3d --points DIR` (apps/cmd_train.cpp) with train's already-parsed flags:
// flags the user did not give (checked with c.count) keep the points defaults (S 96, 96
// groups of 32); MVTec-only flags (--data, --class, --rgb-weights, --resume, --init, ...)
// are rejected. No --xyz-weights needs --random-extractors (then Point-MAE is random).
struct TrainFlagsForPoints {
  std::string dir, out, mode, xyz_weights;
  int64_t side = 0, groups = 0, group_size = 0;
  int epochs = 0;
  float lr = 0, clip_grad = 0;
  bool bn_running_stats = false, profile = false;
};
void train_points_from_flags(const CLI::App& c, const TrainFlagsForPoints& f);

// `evaluate --points DIR` (apps/cmd_evaluate.cpp): --checkpoint from `train --points`.
struct EvalFlagsForPoints {
  std::string dir, checkpoint, mode, xyz_weights, json;
  bool allow_mismatch = false, profile = false;
};
void evaluate_points_from_flags(const CLI::App& c, const EvalFlagsForPoints& f);

}  // namespace cmdr::app
