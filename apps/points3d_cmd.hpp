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

}  // namespace cmdr::app
