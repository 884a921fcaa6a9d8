// Issue 9 items 5 and 6: stale temp / spill files of interrupted runs, --resume messages,
// --out checked before feature extraction, caches sharing a spill folder; Point-MAE's
// small-cloud rule (point_mae_grouping) on a thin rod at S = 56.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/image.hpp"
#include "io/safetensors.hpp"
#include "io/synth.hpp"
#include "io/tiff.hpp"
#include "models/checkpoint.hpp"
#include "models/workflow.hpp"
#include "tests/apps/tiny_extractors.hpp"
#include "tests/io/tmpdir.hpp"

using namespace cmdr;
using namespace cmdr::models;
namespace fs = std::filesystem;
using cmdr::testing::tiny_extractors;
using cmdr::testing::tiny_pmae_config;

namespace {

// A PID that is certainly not running: a child that exited and was reaped.
long dead_pid() {
  const pid_t p = ::fork();
  if (p == 0) ::_exit(0);
  int st = 0;
  ::waitpid(p, &st, 0);
  return static_cast<long>(p);
}

void touch(const std::string& p, std::size_t bytes) {
  std::ofstream f(p, std::ios::binary);
  f << std::string(bytes, 'x');
}

std::string tiny_dataset(const testing::TempDir& tmp, int train) {
  io::SynthOptions so;
  so.classes = 1;
  so.size = 48;
  so.train = train;
  so.validation = 1;
  so.test_good = 1;
  so.test_defect = 1;
  return io::synth_dataset(tmp.file("data"), so).classes.at(0);
}

}  // namespace

// ---- item 6: the small-cloud rule ----

TEST_CASE("point_mae_grouping: SPEC grouping with enough points, scaled below, dropped below 32") {
  PointMaeConfig c;  // 1024 × 128
  PointMaeGrouping g = point_mae_grouping(c, 1024, true);
  CHECK(g.groups == 1024);
  CHECK(g.group_size == 128);
  CHECK(!g.scaled);
  CHECK(g.reason.empty());
  g = point_mae_grouping(c, 50000, false);
  CHECK(g.groups == 1024);
  g = point_mae_grouping(c, 412, true);
  CHECK(g.groups == 412);
  CHECK(g.group_size == 128);
  CHECK(g.scaled);
  CHECK(g.reason.find("412 valid points < 1024 groups") != std::string::npos);
  g = point_mae_grouping(c, 100, true);
  CHECK(g.groups == 100);
  CHECK(g.group_size == 100);
  g = point_mae_grouping(c, 32, true);
  CHECK(g.groups == 32);
  g = point_mae_grouping(c, 31, true);
  CHECK(g.groups == 0);
  CHECK(g.reason.find("31 valid points < 32") != std::string::npos);
  // Checkpoints from before the rule: the old fallback.
  g = point_mae_grouping(c, 412, false);
  CHECK(g.groups == 0);
  CHECK(g.reason.find("412 valid points < 1024") != std::string::npos);
  // A configured group size below 32 is its own minimum.
  c.num_group = 16;
  c.group_size = 8;
  g = point_mae_grouping(c, 10, true);
  CHECK(g.groups == 10);
  CHECK(g.group_size == 8);
  CHECK(point_mae_grouping(c, 7, true).groups == 0);
}

TEST_CASE("point_mae_forward: a grouping override equals a config with those values") {
  PointMaeConfig pc = tiny_pmae_config();
  pc.num_group = 64;
  pc.group_size = 16;
  PointMae m(pc);
  Rng rng(5);
  init_params(m.param_specs(), rng);
  Tensor pts = Tensor::empty({50, 3});
  rng.fill_normal(pts, 0.0f, 1.0f);
  const PointMaeGrouping g = point_mae_grouping(pc, 50, true);
  REQUIRE(g.groups == 50);
  const PointMaeOutput a = point_mae_forward(m, pts, nullptr, &g);
  PointMaeConfig pc2 = pc;
  pc2.num_group = 50;
  PointMae m2(pc2);
  Rng rng2(5);
  init_params(m2.param_specs(), rng2);
  const PointMaeOutput b = point_mae_forward(m2, pts);
  CHECK(a.features.shape() == Shape{50, 32});
  CHECK(a.features.to_vector() == b.features.to_vector());
  CHECK(a.center_idx == b.center_idx);
  // Without the override, 50 points cannot give 64 centres: still an error.
  CHECK_THROWS_AS(point_mae_forward(m, pts), Error);
}

TEST_CASE("thin rod at S = 56: fewer valid points than 1024 groups, 3D features kept") {
  testing::TempDir tmp;
  const io::SynthSample s = io::synth_sample(0, "good", 11, 400, 0, true, true);
  io::write_png(tmp.file("a.png"), s.rgb);
  io::write_xyz_tiff(tmp.file("a.tiff"), s.xyz);
  const auto [rgbw, xyzw] = tiny_extractors(tmp.path.string());
  const Extractors ex = load_extractors(rgbw, xyzw, ExtractorOptions{}, true);  // 1024 × 128
  const SampleFeatures f = extract_features(ex, tmp.file("a.png"), tmp.file("a.tiff"), 56);
  MESSAGE("thin rod: " << f.n_valid_points << " valid points at 56x56; " << f.note);
  CHECK(f.n_valid_points >= 32);
  CHECK(f.n_valid_points < 1024);
  REQUIRE(f.has_3d);
  CHECK(f.warning.empty());
  CHECK(f.centers.size(0) == f.n_valid_points);
  CHECK(f.note.find("valid points < 1024 groups") != std::string::npos);
  CHECK(f.note.find("a.tiff") != std::string::npos);
  const Sample e = expand_features(f, 32, 32);
  double valid = 0;
  for (float v : e.valid.to_vector()) valid += v;
  CHECK(valid > 0);
  // The same cloud with the rule off (a checkpoint from before it): 2D fallback, reason given.
  ExtractorOptions old;
  old.scale_groups = false;
  const Extractors ex_old = load_extractors(rgbw, xyzw, old, true);
  const SampleFeatures f_old = extract_features(ex_old, tmp.file("a.png"), tmp.file("a.tiff"), 56);
  CHECK(!f_old.has_3d);
  CHECK(f_old.warning.find("< 1024") != std::string::npos);
  CHECK(f_old.warning.find("no 3D features") != std::string::npos);
}

TEST_CASE(
    "train --size 56 on thin rods (plane removed) trains the 3D branch; the rule is recorded") {
  testing::TempDir tmp;
  io::SynthOptions so;
  so.classes = 1;
  so.size = 400;
  so.train = 2;
  so.validation = 1;
  so.test_good = 1;
  so.test_defect = 1;
  so.seed = 4;
  so.thin_rod = true;
  so.remove_plane = true;
  const std::string data = tmp.file("data");
  const std::string cls = io::synth_dataset(data, so).classes.at(0);
  const auto [rgbw, xyzw] = tiny_extractors(tmp.path.string());
  const Extractors ex = load_extractors(rgbw, xyzw, ExtractorOptions{}, true);  // SPEC 1024 × 128
  TrainJob job;
  job.data = data;
  job.cls = cls;
  job.out = tmp.file("rod.safetensors");
  job.side = 56;
  job.epochs = 1;
  job.quiet = true;
  const TrainReport tr = train_class(job, ex);
  CHECK(tr.no_geometry == 0);
  CHECK(tr.samples == 2);
  CHECK(tr.scaled_groups == 2);
  LoadOptions lo;
  lo.quiet = true;
  LoadedCheckpoint ck = load_checkpoint(job.out, lo);
  CHECK(ck.meta.extractor.scale_groups);
  CHECK(ck.meta.extractor.num_group == 1024);
  // Inference uses the recorded rule: the test rod keeps its 3D branch.
  const io::ClassSplit cs = io::scan_class(data, cls, {.quiet = true});
  const ScoredSample r = score_sample(*ck.model, ex, cs.test[0].rgb, cs.test[0].xyz);
  CHECK(r.features.has_3d);
  CHECK(r.mode_used == Mode::Fused2D3D);
  CHECK(std::isfinite(r.out.fusion.image_score));
}

TEST_CASE("checkpoint: extractor scale_groups round-trips; a checkpoint without it reads false") {
  testing::TempDir tmp;
  CmdrConfig cfg = CmdrConfig::spec(Mode::Only3D, 8);
  cfg.xyz_dim = 8;
  cfg.dec3d.channels = 8;
  Cmdr model(cfg);
  CheckpointMeta meta;
  meta.mode = Mode::Only3D;
  meta.side = 8;
  meta.cls = "c";
  meta.extractor.scale_groups = true;
  save_checkpoint(tmp.file("a.safetensors"), model, meta);
  LoadOptions lo;
  lo.quiet = true;
  CHECK(load_checkpoint(tmp.file("a.safetensors"), lo).meta.extractor.scale_groups);
  // Rewrite the metadata as a pre-rule checkpoint had it.
  st::File f(tmp.file("a.safetensors"));
  st::Writer w;
  for (const auto& t : f.tensors()) {
    const uint8_t* b = f.raw(t.name);
    w.add_raw(t.name, t.dtype, t.shape, std::vector<uint8_t>(b, b + t.nbytes()));
  }
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  w.set_metadata("cmdr.extractor",
                 R"({"num_group":1024,"group_size":128,"bn_running_stats":false})");
  w.write(tmp.file("old.safetensors"));
  CHECK(!load_checkpoint(tmp.file("old.safetensors"), lo).meta.extractor.scale_groups);
}

// ---- item 5: interrupted runs ----

TEST_CASE("temp_file_pid: only the writer's own temporary naming") {
  CHECK(st::temp_file_pid("ck.safetensors.tmp.1234.987654321") == 1234);
  CHECK(st::temp_file_pid("/a/b/ck.safetensors.resume.safetensors.tmp.7.1") == 7);
  CHECK(st::temp_file_pid(st::temp_path("x/y.safetensors", 42, 99)) == 42);
  CHECK(st::temp_file_pid("ck.safetensors.tmp.1234") == -1);
  CHECK(st::temp_file_pid("ck.safetensors.tmp.12a.5") == -1);
  CHECK(st::temp_file_pid("ck.safetensors.tmp.12.5.bak") == -1);
  CHECK(st::temp_file_pid(".tmp.1.2") == -1);
  CHECK(st::temp_file_pid("notes.tmp") == -1);
  CHECK(spill_file_pid("cmdr-features-123-0-4.safetensors") == 123);
  CHECK(spill_file_pid("cmdr-features-123-4.safetensors") == 123);  // the older naming
  CHECK(spill_file_pid("cmdr-features-123-0.lock") == 123);
  CHECK(spill_file_pid("cmdr-features-x-0.safetensors") == -1);
  CHECK(spill_file_pid("my-cmdr-features-1-0.safetensors") == -1);
  CHECK(spill_file_pid("cmdr-features-1-0.txt") == -1);
}

TEST_CASE("remove_stale_files: dead owners' files go, live / locked / foreign files stay") {
  testing::TempDir tmp;
  const long dead = dead_pid(), self = static_cast<long>(::getpid());
  const std::string dir = tmp.path.string(), spill = tmp.file(".cmdr-feature-cache");
  fs::create_directories(spill);
  const std::string d = std::to_string(dead), me = std::to_string(self);
  touch(tmp.file("ck.safetensors.tmp." + d + ".11"), 1000);                    // removed
  touch(tmp.file("ck.safetensors.resume.safetensors.tmp." + d + ".12"), 500);  // removed
  touch(tmp.file("ck.safetensors.tmp." + me + ".13"), 10);                     // ours: kept
  touch(tmp.file("ck.safetensors.tmp." + d + ".14"), 10);                      // locked: kept
  touch(tmp.file("ck.safetensors"), 10);                                       // user file
  touch(tmp.file("ck.safetensors.tmp.notes"), 10);                             // user file
  touch(spill + "/cmdr-features-" + d + "-0-0.safetensors", 300);              // removed
  touch(spill + "/cmdr-features-" + d + "-0.lock", 0);                         // removed
  touch(spill + "/cmdr-features-" + d + "-7.safetensors", 200);    // old naming: removed
  touch(spill + "/cmdr-features-" + me + "-0-0.safetensors", 10);  // ours: kept
  const int fd = ::open(tmp.file("ck.safetensors.tmp." + d + ".14").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  // A lock from another open file description (as another process's writer would hold).
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  const StaleCleanup c = remove_stale_files({dir, spill}, true);
  ::close(fd);
  CHECK(c.removed.size() == 5);
  CHECK(c.bytes == 1000 + 500 + 300 + 0 + 200);
  CHECK(!fs::exists(tmp.file("ck.safetensors.tmp." + d + ".11")));
  CHECK(!fs::exists(spill + "/cmdr-features-" + d + "-0-0.safetensors"));
  CHECK(fs::exists(tmp.file("ck.safetensors.tmp." + me + ".13")));
  CHECK(fs::exists(tmp.file("ck.safetensors.tmp." + d + ".14")));
  CHECK(fs::exists(tmp.file("ck.safetensors")));
  CHECK(fs::exists(tmp.file("ck.safetensors.tmp.notes")));
  CHECK(fs::exists(spill + "/cmdr-features-" + me + "-0-0.safetensors"));
  CHECK(c.kept.size() == 3);
  // A dead PID whose cache lock is still held (e.g. a run in another PID namespace) stays.
  touch(spill + "/cmdr-features-" + d + "-1-0.safetensors", 5);
  touch(spill + "/cmdr-features-" + d + "-1.lock", 0);
  const int lfd = ::open((spill + "/cmdr-features-" + d + "-1.lock").c_str(), O_RDONLY);
  REQUIRE(::flock(lfd, LOCK_EX) == 0);
  CHECK(remove_stale_files({spill}, true).removed.empty());
  ::close(lfd);
  CHECK(remove_stale_files({spill}, true).removed.size() == 2);
}

TEST_CASE("FeatureCache: two caches of one process share a spill folder without clashing") {
  testing::TempDir tmp;
  const std::string spill = tmp.file(".cmdr-feature-cache");
  {
    FeatureCache a(0, spill), b(0, spill);  // budget 0: everything spilled
    auto entry = [](float v) {
      FeatureCache::Entry e;
      e["rgb"] = Tensor::full({2, 2}, v);
      e["xyz"] = Tensor::full({2, 2}, v);
      e["valid"] = Tensor::full({2}, 1.0f);
      return e;
    };
    a.add(entry(1.0f));
    b.add(entry(2.0f));
    CHECK(a.spilled() == 1);
    CHECK(b.spilled() == 1);
    CHECK(a.get(0).rgb.to_vector() == std::vector<float>(4, 1.0f));
    CHECK(b.get(0).rgb.to_vector() == std::vector<float>(4, 2.0f));
    // A live cache's files survive a cleanup (ours, and locked).
    CHECK(remove_stale_files({spill}, true).removed.empty());
  }
  int left = 0;  // both caches removed their files and locks
  for (const auto& e : fs::directory_iterator(spill)) left += e.is_regular_file();
  CHECK(left == 0);
}

TEST_CASE("train: --out that cannot hold the resumable file fails before feature extraction") {
  testing::TempDir tmp;
  const std::string cls = tiny_dataset(tmp, 2);
  const auto [rgbw, xyzw] = tiny_extractors(tmp.path.string());
  ExtractorOptions eo;
  eo.num_group = 16;
  eo.group_size = 8;
  const Extractors ex = load_extractors(rgbw, xyzw, eo, true);
  TrainJob job;
  job.data = tmp.file("data");
  job.cls = cls;
  // 230 characters: the checkpoint (and its temporary) fit NAME_MAX = 255, the resumable
  // file's temporary does not — before the fix this failed after the first epoch.
  job.out = tmp.file(std::string(218, 'c') + ".safetensors");
  job.side = 16;
  job.epochs = 1;
  job.quiet = true;
  CHECK_THROWS_WITH_AS(train_class(job, ex), doctest::Contains("checked before feature extraction"),
                       Error);
  CHECK(!fs::exists(tmp.file(".cmdr-feature-cache")));
  // A missing class fails in the preflight too (the train verb runs it before writing
  // --random-extractors weights).
  job.out = tmp.file("ok.safetensors");
  job.cls = "no-such-class";
  CHECK_THROWS_AS(preflight_train(job), Error);
}

TEST_CASE("train --resume: says why it starts from scratch, and which file it resumed from") {
  testing::TempDir tmp;
  const std::string cls = tiny_dataset(tmp, 2);
  const auto [rgbw, xyzw] = tiny_extractors(tmp.path.string());
  ExtractorOptions eo;
  eo.num_group = 16;
  eo.group_size = 8;
  const Extractors ex = load_extractors(rgbw, xyzw, eo, true);
  TrainJob job;
  job.data = tmp.file("data");
  job.cls = cls;
  job.out = tmp.file("ck.safetensors");
  job.side = 16;
  job.epochs = 1;
  job.quiet = true;
  job.resume = true;
  job.calibrate = false;
  // A kill during the first resumable write left its partial temporary file.
  const std::string partial = st::temp_path(resume_path(job.out), dead_pid(), 77);
  touch(partial, 4096);
  const TrainReport t1 = train_class(job, ex);
  CHECK(!fs::exists(partial));
  CHECK(t1.cleanup.removed.size() == 1);
  CHECK(t1.cleanup.bytes == 4096);
  CHECK(t1.resumed_from.empty());
  CHECK(t1.resume_note.find("interrupted") != std::string::npos);
  CHECK(t1.resume_note.find("starting from scratch") != std::string::npos);
  // A resumable file after epoch 1 of 2: resumed, and the report names it.
  LoadOptions lo;
  lo.quiet = true;
  LoadedCheckpoint ck = load_checkpoint(job.out, lo);
  ck.meta.epochs = 1;
  {
    // One step so the Adam state exists, as after a real epoch.
    Rng rng(3);
    Tensor rgb = Tensor::empty({256, 32}), xyz = Tensor::empty({256, 32});
    rng.fill_normal(rgb, 0.0f, 1.0f);
    rng.fill_normal(xyz, 0.0f, 1.0f);
    ck.model->train_step(rgb, xyz, Tensor::full({256}, 1.0f));
  }
  job.out = tmp.file("ck2.safetensors");
  save_checkpoint(resume_path(job.out), *ck.model, ck.meta, true);
  job.epochs = 2;
  const TrainReport t2 = train_class(job, ex);
  CHECK(t2.resumed_from == resume_path(job.out));
  CHECK(t2.resume_note.find("resumed from") != std::string::npos);
  CHECK(t2.epochs.size() == 1);
  CHECK(t2.epochs.at(0).epoch == 2);
}
