// End to end on tiny data: synth one class at 48 px -> tiny random extractors (reduced
// widths, written like init-extractors with head counts / taps in metadata) -> train_class
// 2 epochs at S = 16 -> checkpoint -> evaluate_class (both protocols, maps file, heatmaps)
// -> resume refusal rules. The library functions the verbs call, no binary.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/safetensors.hpp"
#include "io/synth.hpp"
#include "models/checkpoint.hpp"
#include "models/workflow.hpp"
#include "tests/apps/tiny_extractors.hpp"
#include "tests/io/tmpdir.hpp"

using namespace cmdr;
using namespace cmdr::models;
namespace fs = std::filesystem;
using cmdr::testing::tiny_extractors;

TEST_CASE("cli e2e: synth -> tiny extractors -> train 2 epochs -> checkpoint -> evaluate") {
  testing::TempDir tmp;
  io::SynthOptions so;
  so.classes = 1;
  so.size = 48;
  so.train = 4;
  so.validation = 2;
  so.test_good = 3;
  so.test_defect = 4;
  so.seed = 3;
  const std::string data = tmp.file("data");
  const io::SynthSummary ss = io::synth_dataset(data, so);
  const std::string cls = ss.classes.at(0);
  const auto [rgbw, xyzw] = tiny_extractors(tmp.path.string());
  ExtractorOptions eo;
  eo.num_group = 16;
  eo.group_size = 8;
  const Extractors ex = load_extractors(rgbw, xyzw, eo, true);
  REQUIRE(ex.vit);
  CHECK(ex.vit->cfg.grid() == 4);
  CHECK(ex.xyz_dim() == 32);
  CHECK(ex.random);

  // The features of one sample: compact form and its expansion.
  const io::ClassSplit cs = io::scan_class(data, cls, {.quiet = true});
  const SampleFeatures f = extract_features(ex, cs.train[0].rgb, cs.train[0].xyz, 16);
  CHECK(f.has_rgb);
  CHECK(f.has_3d);
  CHECK(f.rgb_tokens.shape() == Shape{16, 32});
  CHECK(f.group_features.shape() == Shape{16, 32});
  const Sample s = expand_features(f, 32, 32);
  CHECK(s.rgb.shape() == Shape{256, 32});
  CHECK(s.xyz.shape() == Shape{256, 32});
  // The cache round trip gives the same tensors.
  const Sample s2 = cache_expander(16, 32, 32)(to_cache_entry(f));
  CHECK(s2.xyz.to_vector() == s.xyz.to_vector());
  CHECK(s2.valid.to_vector() == s.valid.to_vector());
  // No geometry: defined fallback, no 3D.
  const SampleFeatures f2 = extract_features(ex, cs.train[0].rgb, "", 16);
  CHECK(!f2.has_3d);
  CHECK(!f2.warning.empty());

  TrainJob job;
  job.data = data;
  job.cls = cls;
  job.out = tmp.file("out/ckpt.safetensors");
  job.side = 16;
  job.epochs = 2;
  job.seed = 9;
  job.quiet = true;
  job.dump_losses = tmp.file("losses.csv");
  const TrainReport tr = train_class(job, ex);
  CHECK(tr.samples == 4);
  CHECK(tr.epochs.size() == 2);
  CHECK(fs::exists(job.out));
  CHECK(!fs::exists(resume_path(job.out)));  // removed after a finished run
  CHECK(std::isfinite(tr.meta.threshold));
  CHECK(tr.calibration_split == "validation/good");
  CHECK(tr.calibration_scores.size() == 2);
  float mx = 0;
  for (float v : tr.calibration_scores) mx = std::max(mx, v);
  CHECK(tr.meta.threshold > mx);
  CHECK(tr.meta.threshold <= 1.05f * mx * 1.0001f);

  // Nothing overwritten silently.
  CHECK_THROWS_WITH_AS(train_class(job, ex), doctest::Contains("--force"), Error);

  LoadOptions lo;
  lo.quiet = true;
  LoadedCheckpoint ck = load_checkpoint(job.out, lo);
  CHECK(ck.meta.rgb_sha256 == ex.rgb_sha256);
  CHECK(ck.meta.epochs == 2);
  CHECK(ck.meta.losses.size() == 2);
  CHECK_NOTHROW(check_extractor_hashes(ck.meta, ex, false));

  EvalJob ej;
  ej.data = data;
  ej.cls = cls;
  ej.save_maps = tmp.file("maps");
  ej.heatmaps = tmp.file("heat");
  ej.quiet = true;
  const EvalReport er = evaluate_class(*ck.model, ck.meta, ex, ej);
  CHECK(er.ok);
  CHECK(er.samples == 7);
  for (double v : {er.paper.i_auroc, er.paper.p_auroc, er.official.i_auroc, er.official.p_auroc}) {
    CHECK(v >= 0.0);
    CHECK(v <= 1.0);
  }
  CHECK(er.true_pos + er.false_pos + er.true_neg + er.false_neg == 7);
  CHECK(er.heatmap_files.size() == 7);
  st::File maps(tmp.file("maps/" + cls + ".safetensors"));
  CHECK(maps.metadata().at("protocol") == "paper");
  CHECK(maps.info("pixel_maps").shape == Shape{7, 16, 16});
  st::File off(tmp.file("maps/" + cls + "_mvtec.safetensors"));
  CHECK(off.info("gt").shape == Shape{7, 48, 48});

  // The scored sample from the checkpoint equals the evaluate path (one code path).
  const ScoredSample r = score_sample(*ck.model, ex, cs.test[0].rgb, cs.test[0].xyz);
  CHECK(std::isfinite(r.out.fusion.image_score));
  // 2D fallback when the geometry is missing.
  const ScoredSample r2 = score_sample(*ck.model, ex, cs.test[0].rgb, "");
  CHECK(r2.mode_used == Mode::Only2D);
  CHECK(!r2.warning.empty());
}

TEST_CASE("cli e2e: parity hook writes one CSV row per step and resume refuses silently mixing") {
  testing::TempDir tmp;
  io::SynthOptions so;
  so.classes = 1;
  so.size = 48;
  so.train = 3;
  so.validation = 0;
  so.test_good = 1;
  so.test_defect = 1;
  const std::string data = tmp.file("data");
  const std::string cls = io::synth_dataset(data, so).classes.at(0);
  const auto [rgbw, xyzw] = tiny_extractors(tmp.path.string());
  ExtractorOptions eo;
  eo.num_group = 16;
  eo.group_size = 8;
  const Extractors ex = load_extractors(rgbw, xyzw, eo, true);
  TrainJob job;
  job.data = data;
  job.cls = cls;
  job.out = tmp.file("ck.safetensors");
  job.side = 16;
  job.epochs = 5;
  job.steps = 4;
  job.no_dropout = job.no_shuffle = true;
  job.quiet = true;
  job.dump_losses = tmp.file("l.csv");
  const TrainReport tr = train_class(job, ex);
  CHECK(tr.meta.steps == 4);
  CHECK(tr.calibration_split == "train/good (no validation split)");
  std::ifstream is(job.dump_losses);
  std::string line;
  std::getline(is, line);
  CHECK(line == "step,map2d,map3d,rec2d,rec3d");
  int rows = 0;
  while (std::getline(is, line)) ++rows;
  CHECK(rows == 4);
  // A leftover resumable run is not silently discarded.
  std::filesystem::copy_file(job.out, resume_path(tmp.file("ck2.safetensors")));
  job.out = tmp.file("ck2.safetensors");
  CHECK_THROWS_WITH_AS(train_class(job, ex), doctest::Contains("--resume"), Error);
}
