// `cmdr-iad train --data ROOT --class C --out CKPT [...]`: SPEC 6 training of one class into
// one checkpoint (models/checkpoint.hpp), with the decision threshold calibrated at the end
// (models/workflow.hpp: calibrate_threshold). The training-parity hook (--init, --steps,
// --no-dropout, --no-shuffle, --dump-losses) runs K deterministic optimizer steps.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <tuple>

#include "apps/cli_common.hpp"
#include "apps/commands.hpp"
#include "apps/points3d_cmd.hpp"
#include "engine/error.hpp"
#include "io/pointcloud.hpp"
#include "models/workflow.hpp"

namespace cmdr::app {

namespace {

struct TrainArgs {
  models::TrainJob job;
  std::string mode = "2d3d";
  ExtractorArgs ex;
  bool random_given = false;
  uint64_t random_seed = 0;
  bool profile = false;
};

std::string f4(double v) {
  if (!std::isfinite(v)) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.4f", v);
  return b;
}

}  // namespace

// Runs a training job from parsed flags; also used by `demo`.
models::TrainReport run_train_job(models::TrainJob job, const ExtractorArgs& exa,
                                  bool random_extractors, uint64_t random_seed, bool profile) {
  namespace fs = std::filesystem;
  // The output folder first: a plain error before anything is written or computed.
  if (!fs::path(job.out).parent_path().empty()) {
    make_output_dir(fs::path(job.out).parent_path().string(), "train", "--out");
  }
  std::string rgb = exa.rgb_weights, xyz = exa.xyz_weights;
  const bool need_rgb = models::mode_needs_rgb(job.mode),
             need_xyz = models::mode_needs_xyz(job.mode);
  models::StaleCleanup cleaned;
  if (random_extractors) {
    CMDR_CHECK(rgb.empty() && xyz.empty(),
               "train: --random-extractors and --rgb-weights/--xyz-weights are exclusive");
    // The ~430 MB of random weights are written only for a job that can run (class present,
    // --out writable, resume rules; issue 9 item 5).
    cleaned = models::preflight_train(job);
    const fs::path dir =
        (fs::path(job.out).parent_path().empty() ? fs::path(".")
                                                 : fs::path(job.out).parent_path()) /
        ("random-extractors-seed" + std::to_string(random_seed));
    std::tie(rgb, xyz) = write_random_extractors(dir.string(), random_seed, false);
    std::cerr << "\n*** train: WARNING: --random-extractors " << random_seed
              << ": the frozen extractors have RANDOM weights (written to " << dir.string()
              << "). The checkpoint is only good for plumbing and demos. ***\n\n";
  } else {
    CMDR_CHECK(!need_rgb || !rgb.empty(), "train: --rgb-weights is required for mode ",
               models::mode_name(job.mode),
               " (DINO ViT-B/8 safetensors; or --random-extractors SEED for a plumbing run)");
    CMDR_CHECK(!need_xyz || !xyz.empty(), "train: --xyz-weights is required for mode ",
               models::mode_name(job.mode),
               " (Point-MAE safetensors; or --random-extractors SEED for a plumbing run)");
  }
  models::ExtractorOptions eo;
  eo.num_group = exa.groups;
  eo.group_size = exa.group_size;
  eo.bn_running_stats = exa.bn_running_stats;
  const models::Extractors ex =
      models::load_extractors(need_rgb ? rgb : "", need_xyz ? xyz : "", eo, job.quiet);
  profile_begin(profile);
  models::TrainReport r = models::train_class(job, ex, &cleaned);
  profile_end(profile, job.out + ".trace.json");
  // Summary on stdout.
  std::cout << "checkpoint: " << r.checkpoint << "\n"
            << "class " << job.cls << ", mode " << models::mode_name(job.mode)
            << ", S = " << job.side << ", " << r.samples << " samples (" << r.skipped
            << " unreadable, " << r.no_geometry << " without geometry skipped, " << r.scaled_groups
            << " with fewer Point-MAE groups), epochs " << r.meta.epochs << ", steps "
            << r.meta.steps << "\n";
  if (!r.resume_note.empty()) std::cout << "resume: " << r.resume_note << "\n";
  if (!r.cleanup.removed.empty()) {
    std::cout << "cleanup: removed " << r.cleanup.removed.size()
              << " stale file(s) of interrupted runs (" << r.cleanup.bytes << " bytes)\n";
  }
  std::cout << "feature cache: " << (r.cache_bytes_memory >> 20) << " MiB in memory, "
            << (r.cache_bytes_disk >> 20) << " MiB on disk; features " << f4(r.feature_seconds)
            << " s, training " << f4(r.train_seconds) << " s, calibration "
            << f4(r.calibrate_seconds) << " s\n";
  for (const auto& e : r.epochs) {
    std::cout << "epoch " << e.epoch << ": map2d " << f4(e.mean_loss[models::kMap3Dto2D])
              << " map3d " << f4(e.mean_loss[models::kMap2Dto3D]) << " rec2d "
              << f4(e.mean_loss[models::kDec2D]) << " rec3d " << f4(e.mean_loss[models::kDec3D])
              << " (" << e.rollbacks << " rollbacks, " << f4(e.seconds) << " s)\n";
  }
  std::cout << "rollbacks: " << r.rollbacks.size();
  for (std::size_t i = 0; i < r.rollbacks.size() && i < 10; ++i) {
    std::cout << (i ? ", " : " (") << models::kNetNames[r.rollbacks[i].net] << " at step "
              << r.rollbacks[i].step;
    if (i + 1 == std::min<std::size_t>(r.rollbacks.size(), 10)) std::cout << ")";
  }
  std::cout << "\n";
  if (job.calibrate) {
    std::cout << "decision threshold: " << r.meta.threshold << " (" << r.meta.threshold_rule
              << ")\n";
    for (const auto& [m, t] : r.meta.fallback_thresholds) {
      std::cout << "decision threshold for " << m << " fallback samples: " << t << "\n";
    }
  }
  return r;
}

void add_train(CLI::App& root) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* c = root.add_subcommand(
      "train",
      "train the four CMDR networks on one class (SPEC 6) and write one checkpoint.\n"
      "Frozen features are computed once per training sample and cached in their compact\n"
      "form (28×28 DINO tokens + Point-MAE group features, ~8 MB per sample; beyond\n"
      "--cache-mb they are spilled to disk next to --out).\n"
      "Decision threshold rule: 1.05 × the 99th percentile of the image scores of the\n"
      "class's validation/good samples (train/good when there is no validation split,\n"
      "which the checkpoint states); stored in the checkpoint, overridable at inference.\n"
      "After every epoch a resumable checkpoint CKPT.resume.safetensors is written\n"
      "atomically; --resume continues from it, a finished run removes it.");
  c->add_option("--data", a->job.data,
                "dataset root (MVTec 3D-AD layout, SPEC 1); required unless --points")
      ->check(CLI::ExistingDirectory);
  c->add_option("--class", a->job.cls, "class folder under --data; required unless --points");
  auto points = std::make_shared<std::string>();
  c->add_option("--points", *points,
                std::string("with --mode 3d: the point-cloud experiment (issue 5 item 6) on "
                            "DIR instead of --data/--class; defaults S 96, 96 groups of 32. ") +
                    io::point_dataset_help())
      ->check(CLI::ExistingDirectory);
  c->add_option("--out", a->job.out, "checkpoint to write (.safetensors)")->required();
  c->add_option("--mode", a->mode, "2d3d (default) | 2d | 3d")
      ->check(CLI::IsMember({"2d3d", "2d", "3d"}));
  c->add_option("--size", a->job.side, "side S (multiple of 8; SPEC default 224)");
  c->add_option("--epochs", a->job.epochs, "epochs (SPEC 6 default 50)")->check(positive());
  c->add_option("--lr", a->job.lr, "Adam learning rate (default 1e-3)")->check(positive());
  c->add_option("--clip-grad", a->job.clip_grad, "clip each network's gradient norm to N (0 = off)")
      ->check(non_negative());
  add_weight_flags(c, a->ex, false);
  add_group_flags(c, a->ex);
  c->add_option("--random-extractors", a->random_seed,
                "no pretrained weights: write and use seeded RANDOM extractor weights (plumbing "
                "and demos only; loud warning)");
  c->add_flag("--resume", a->job.resume,
              "continue an interrupted run from CKPT.resume.safetensors");
  c->add_flag("--force", a->job.force, "overwrite an existing --out / discard a resumable run");
  c->add_option("--cache-mb", a->job.cache_budget_mb,
                "feature cache memory budget in MiB before spilling to disk (default 4096)")
      ->check(positive());
  c->add_option("--init", a->job.init,
                "parity hook: start from the weights of this checkpoint / bare state dict")
      ->check(CLI::ExistingFile);
  c->add_option("--steps", a->job.steps, "parity hook: stop after K optimizer steps")
      ->check(positive())
      ->default_str("all");
  c->add_flag("--no-dropout", a->job.no_dropout, "parity hook: dropout p = 0");
  c->add_flag("--no-shuffle", a->job.no_shuffle, "parity hook: samples in sorted order");
  c->add_option("--dump-losses", a->job.dump_losses,
                "parity hook: CSV step,map2d,map3d,rec2d,rec3d (loss before each update)");
  c->add_flag(
      "--no-calibrate", [a](int64_t) { a->job.calibrate = false; },
      "skip the threshold calibration");
  c->add_flag("--profile", a->profile,
              "per-op profile table on stderr and a Chrome trace CKPT.trace.json");
  c->callback([a, c, points] {
    if (!points->empty()) {
      train_points_from_flags(*c, {*points, a->job.out, a->mode, a->ex.xyz_weights, a->job.side,
                                   a->ex.groups, a->ex.group_size, a->job.epochs, a->job.lr,
                                   a->job.clip_grad, a->ex.bn_running_stats, a->profile});
      return;
    }
    CMDR_CHECK(!a->job.data.empty() && !a->job.cls.empty(),
               "train: --data ROOT and --class C are required (or --mode 3d --points DIR)");
    models::TrainJob job = a->job;
    job.mode = models::parse_mode(a->mode);
    job.seed = globals().seed;
    job.quiet = globals().quiet;
    run_train_job(job, a->ex, c->count("--random-extractors") > 0, a->random_seed, a->profile);
  });
}

}  // namespace cmdr::app
