// `cmdr-iad points train|evaluate --points DIR ...`: 3D-only anomaly detection on
// unorganised point-cloud chunks (issue 5 item 6). The work is done by
// models::run_points_train / run_points_evaluate (models/points3d.hpp); this file only maps
// flags onto their option structs, shared with `train/evaluate --mode 3d --points DIR`.
#include <initializer_list>
#include <memory>

#include "apps/commands.hpp"
#include "apps/points3d_cmd.hpp"
#include "engine/error.hpp"
#include "io/pointcloud.hpp"

namespace cmdr::app {

void add_points_train_options(CLI::App& cmd, models::PointsTrainOptions& o) {
  cmd.add_option("--size", o.side, "grid side S (multiple of 8; 96 for 9216-point chunks)")
      ->capture_default_str();
  cmd.add_option("--groups", o.pmae.num_group, "Point-MAE group count (FPS centres)")
      ->capture_default_str();
  cmd.add_option("--group-size", o.pmae.group_size, "Point-MAE points per group (KNN)")
      ->capture_default_str();
  cmd.add_option("--epochs", o.epochs, "training epochs")->capture_default_str();
  cmd.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  cmd.add_option("--clip-grad", o.clip_grad, "clip the gradient norm to N (0 = off)")
      ->capture_default_str();
  cmd.add_flag("--profile", o.profile, "print the per-op time table at the end");
  cmd.add_flag("--bn-running-stats", o.pmae.bn_running_stats,
               "Point-MAE BatchNorm uses its running statistics (default: the sample's own)");
}

void add_points_eval_options(CLI::App& cmd, models::PointsEvalOptions& o) {
  cmd.add_option("--scores", o.scores_csv, "write per-chunk scores (path,score,label,decision)");
  cmd.add_flag("--profile", o.profile, "print the per-op time table at the end");
  cmd.add_flag("--ignore-weights-hash", o.ignore_hash,
               "evaluate even if --xyz-weights differ from the checkpoint's (loud warning)");
}

namespace {

void reject_flags(const CLI::App& c, const char* verb, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    const CLI::Option* o = c.get_option_no_throw(n);
    CMDR_CHECK(o == nullptr || o->count() == 0, verb, ": ", n,
               " does not apply with --points (the point-cloud "
               "experiment; see `cmdr-iad points --help`)");
  }
}

// The option's count, 0 when the verb has no such option.
std::size_t given(const CLI::App& c, const char* name) {
  const CLI::Option* o = c.get_option_no_throw(name);
  return o == nullptr ? 0 : o->count();
}

}  // namespace

void train_points_from_flags(const CLI::App& c, const TrainFlagsForPoints& f) {
  CMDR_CHECK(f.mode == "3d", "train: --points needs --mode 3d (got '", f.mode,
             "'): the point-cloud experiment trains Decoder3D only");
  reject_flags(c, "train",
               {"--data", "--class", "--rgb-weights", "--resume", "--init", "--steps",
                "--dump-losses", "--no-dropout", "--no-shuffle"});
  CMDR_CHECK(!f.xyz_weights.empty() || given(c, "--random-extractors") > 0,
             "train: --points needs --xyz-weights (Point-MAE safetensors) or "
             "--random-extractors SEED");
  models::PointsTrainOptions o;
  o.points_dir = f.dir;
  o.out = f.out;
  o.xyz_weights = given(c, "--random-extractors") > 0 ? "" : f.xyz_weights;
  if (given(c, "--size")) o.side = f.side;
  if (given(c, "--groups")) o.pmae.num_group = f.groups;
  if (given(c, "--group-size")) o.pmae.group_size = f.group_size;
  if (given(c, "--epochs")) o.epochs = f.epochs;
  if (given(c, "--lr")) o.lr = f.lr;
  o.clip_grad = f.clip_grad;
  o.pmae.bn_running_stats = f.bn_running_stats;
  o.profile = f.profile;
  o.seed = globals().seed;
  o.quiet = globals().quiet;
  models::run_points_train(o);
}

void evaluate_points_from_flags(const CLI::App& c, const EvalFlagsForPoints& f) {
  CMDR_CHECK(f.mode.empty() || f.mode == "3d", "evaluate: --points is mode 3d (got --mode '",
             f.mode, "')");
  reject_flags(c, "evaluate",
               {"--data", "--class", "--all", "--rgb-weights", "--save-maps", "--heatmaps",
                "--threshold", "--size"});
  models::PointsEvalOptions o;
  o.points_dir = f.dir;
  o.checkpoint = f.checkpoint;
  o.xyz_weights = f.xyz_weights;
  o.ignore_hash = f.allow_mismatch;
  o.json = f.json;
  o.profile = f.profile;
  o.quiet = globals().quiet;
  models::run_points_evaluate(o);
}

void add_points(CLI::App& root) {
  auto* pts = root.add_subcommand(
      "points", std::string("3D-only anomaly detection on unorganised point-cloud chunks "
                            "(the paper's polyurethane experiment). Dataset layout: ") +
                    io::point_dataset_help());
  pts->require_subcommand(1);

  auto topt = std::make_shared<models::PointsTrainOptions>();
  auto* tr = pts->add_subcommand("train", "train Decoder3D on DIR/train chunks");
  tr->add_option("--points", topt->points_dir, "dataset folder")->required();
  tr->add_option("--out", topt->out, "checkpoint to write (.safetensors)")->required();
  tr->add_option("--xyz-weights", topt->xyz_weights,
                 "Point-MAE weights (.safetensors); omitted = random weights (loud warning)");
  add_points_train_options(*tr, *topt);
  tr->callback([topt] {
    models::PointsTrainOptions o = *topt;
    o.seed = globals().seed;
    o.quiet = globals().quiet;
    models::run_points_train(o);
  });

  auto eopt = std::make_shared<models::PointsEvalOptions>();
  auto* ev = pts->add_subcommand("evaluate",
                                 "score DIR/test chunks: I-AUROC, P-AUROC (per "
                                 "point), AUPRO");
  ev->add_option("--points", eopt->points_dir, "dataset folder")->required();
  ev->add_option("--checkpoint", eopt->checkpoint, "checkpoint from `points train`")->required();
  ev->add_option("--xyz-weights", eopt->xyz_weights, "Point-MAE weights used in training");
  ev->add_option("--json", eopt->json, "write the metrics as JSON");
  add_points_eval_options(*ev, *eopt);
  ev->callback([eopt] {
    models::PointsEvalOptions o = *eopt;
    o.quiet = globals().quiet;
    models::run_points_evaluate(o);
  });
}

}  // namespace cmdr::app
