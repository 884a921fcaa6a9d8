// Checkpoint format (models/checkpoint.hpp): round trip of weights and metadata, I64
// num_batches_tracked, mode / size mismatches, extractor-hash refusal and override, bare
// state dicts, optimizer state for --resume.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "engine/error.hpp"
#include "io/safetensors.hpp"
#include "models/checkpoint.hpp"
#include "models/workflow.hpp"
#include "tests/io/tmpdir.hpp"
#include "tests/models/cmdr_fixture.hpp"

using namespace cmdr;
using namespace cmdr::models;

namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

CheckpointMeta sample_meta() {
  CheckpointMeta m;
  m.mode = Mode::Fused2D3D;
  m.side = 16;
  m.cls = "bagel";
  m.epochs = 3;
  m.seed = 42;
  m.losses = nlohmann::json::array({{{"epoch", 1}, {"rec2d", 0.5}}});
  m.threshold = 1.2345f;
  m.threshold_rule = "rule";
  m.map_scale = 2.5f;
  m.rgb_sha256 = std::string(64, 'a');
  m.xyz_sha256 = std::string(64, 'b');
  m.extractor.num_group = 64;
  m.extractor.group_size = 16;
  return m;
}

}  // namespace

TEST_CASE("checkpoint: round trip of weights, metadata and I64 counters") {
  testing::TempDir tmp;
  Cmdr model(test::small_config(16));
  // One training step so BatchNorm counters and Adam state are non-trivial.
  Rng rng(3);
  Tensor rgb = Tensor::empty({256, 32}), xyz = Tensor::empty({256, 48});
  rng.fill_normal(rgb, 0, 1);
  rng.fill_normal(xyz, 0, 1);
  model.train_step(rgb, xyz, Tensor::ones({256}));
  const std::string path = tmp.file("c.safetensors");
  save_checkpoint(path, model, sample_meta(), /*with_optimizer=*/true);

  st::File f(path);
  int counters = 0;
  for (const auto& t : f.tensors()) {
    if (t.name.find("num_batches_tracked") != std::string::npos) {
      CHECK(t.dtype == st::DType::I64);
      CHECK(f.get_i64(t.name).at(0) == 1);
      ++counters;
    }
  }
  CHECK(counters > 0);
  CHECK(f.metadata().at("cmdr.version") == CMDR_VERSION);

  LoadOptions lo;
  lo.quiet = true;
  lo.restore_optimizer = true;
  LoadedCheckpoint lc = load_checkpoint(path, lo);
  CHECK(lc.meta.cls == "bagel");
  CHECK(lc.meta.epochs == 3);
  CHECK(lc.meta.seed == 42);
  CHECK(lc.meta.threshold == 1.2345f);
  CHECK(lc.meta.map_scale == 2.5f);
  CHECK(lc.meta.extractor.num_group == 64);
  CHECK(lc.meta.extractor.group_size == 16);
  CHECK(lc.meta.losses.at(0).at("rec2d").get<double>() == 0.5);
  CHECK(lc.meta.config.rgb_dim == 32);
  CHECK(lc.meta.config.dec3d.widths == test::small_config(16).dec3d.widths);
  CHECK(lc.sha256.size() == 64);
  auto a = model.state_dict(), b = lc.model->state_dict();
  REQUIRE(a.size() == b.size());
  for (const auto& [k, t] : a) CHECK_MESSAGE(same_bits(t, b.at(k)), k);
  for (int n = 0; n < 4; ++n) {
    ag::Adam& x = model.optimizer(static_cast<Net>(n));
    ag::Adam& y = lc.model->optimizer(static_cast<Net>(n));
    CHECK(x.steps() == y.steps());
    REQUIRE(x.exp_avg().size() == y.exp_avg().size());
    for (std::size_t i = 0; i < x.exp_avg().size(); ++i) {
      CHECK(same_bits(x.exp_avg()[i], y.exp_avg()[i]));
      CHECK(same_bits(x.exp_avg_sq()[i], y.exp_avg_sq()[i]));
    }
  }
}

TEST_CASE("checkpoint: another mode or size is a clear error") {
  testing::TempDir tmp;
  Cmdr model(test::small_config(16));
  const std::string path = tmp.file("c.safetensors");
  save_checkpoint(path, model, sample_meta());
  LoadOptions lo;
  lo.quiet = true;
  lo.mode = "2d";
  CHECK_THROWS_WITH_AS(load_checkpoint(path, lo), doctest::Contains("not --mode 2d"), Error);
  lo.mode = "";
  lo.side = 24;
  CHECK_THROWS_WITH_AS(load_checkpoint(path, lo), doctest::Contains("not --size 24"), Error);
}

TEST_CASE("checkpoint: extractor hashes refused unless overridden") {
  testing::TempDir tmp;
  CheckpointMeta m = sample_meta();
  Extractors ex;
  ex.rgb_sha256 = m.rgb_sha256;
  ex.xyz_sha256 = m.xyz_sha256;
  CHECK_NOTHROW(check_extractor_hashes(m, ex, false));
  ex.xyz_sha256 = std::string(64, 'c');
  ex.xyz_path = "other.safetensors";
  CHECK_THROWS_WITH_AS(check_extractor_hashes(m, ex, false), doctest::Contains("other.safetensors"),
                       Error);
  CHECK_NOTHROW(check_extractor_hashes(m, ex, true));  // loud warning only
}

TEST_CASE("checkpoint: bare state dict needs --mode and --size") {
  testing::TempDir tmp;
  CmdrConfig cfg = CmdrConfig::spec(Mode::Only2D, 8);
  cfg.seed = 5;
  Cmdr model(cfg);
  st::Writer w;
  for (const auto& [k, t] : model.state_dict()) {
    if (k.find("num_batches_tracked") != std::string::npos) {
      w.add_i64(k, {0}, t.shape());
    } else {
      w.add(k, t);
    }
  }
  const std::string path = tmp.file("bare.safetensors");
  w.write(path);
  LoadOptions lo;
  lo.quiet = true;
  CHECK_THROWS_WITH_AS(load_checkpoint(path, lo), doctest::Contains("give --mode and --size"),
                       Error);
  lo.mode = "2d";
  lo.side = 8;
  LoadedCheckpoint lc = load_checkpoint(path, lo);
  CHECK(lc.meta.bare);
  CHECK(!std::isfinite(lc.meta.threshold));
  auto a = model.state_dict(), b = lc.model->state_dict();
  for (const auto& [k, t] : a) CHECK_MESSAGE(same_bits(t, b.at(k)), k);
  // Hashes cannot be checked for a bare file: no refusal.
  Extractors ex;
  ex.rgb_sha256 = std::string(64, 'd');
  CHECK_NOTHROW(check_extractor_hashes(lc.meta, ex, false));
  // The wrong mode names the network that does not fit.
  lo.mode = "3d";
  CHECK_THROWS_WITH_AS(load_checkpoint(path, lo), doctest::Contains("another mode"), Error);
  // The wrong size names the size.
  lo.mode = "2d";
  lo.side = 16;
  CHECK_NOTHROW(load_checkpoint(path, lo));  // Decoder2D has no S-dependent weights
}

TEST_CASE("checkpoint: a file that is not a checkpoint") {
  testing::TempDir tmp;
  st::Writer w;
  w.add("foo", Tensor::zeros({2}));
  const std::string path = tmp.file("x.safetensors");
  w.write(path);
  LoadOptions lo;
  lo.quiet = true;
  lo.mode = "2d";
  lo.side = 8;
  CHECK_THROWS_WITH_AS(load_checkpoint(path, lo), doctest::Contains("prefixes"), Error);
}

TEST_CASE("threshold rule: 1.05 × q99 with linear interpolation") {
  CHECK(quantile({1, 2, 3, 4, 5}, 0.5) == doctest::Approx(3.0));
  CHECK(quantile({0, 10}, 0.99) == doctest::Approx(9.9));
}

TEST_CASE("checkpoint: non-finite weights are refused at load, naming the tensor") {
  testing::TempDir tmp;
  Cmdr model(test::small_config(16));
  ag::StateDict sd = model.state_dict();
  std::string victim;
  for (const auto& [k, t] : sd) {
    if (k.rfind("Dec2D.", 0) == 0 && k.find("weight") != std::string::npos) {
      victim = k;
      break;
    }
  }
  REQUIRE(!victim.empty());
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), INFINITY}) {
    Tensor w = sd.at(victim).clone();
    w.data()[w.numel() / 2] = bad;
    ag::StateDict sd2 = sd;
    sd2[victim] = w;
    Cmdr broken(test::small_config(16));
    broken.load_state_dict(sd2, true);
    const std::string path = tmp.file("nan.safetensors");
    save_checkpoint(path, broken, sample_meta());
    LoadOptions lo;
    lo.quiet = true;
    const std::string named = "'" + victim + "'";
    CHECK_THROWS_WITH_AS(load_checkpoint(path, lo), doctest::Contains(named.c_str()), Error);
    CHECK_THROWS_WITH_AS(load_checkpoint(path, lo), doctest::Contains("non-finite"), Error);
  }
  // The untouched model still loads.
  save_checkpoint(tmp.file("ok.safetensors"), model, sample_meta());
  LoadOptions lo;
  lo.quiet = true;
  CHECK_NOTHROW(load_checkpoint(tmp.file("ok.safetensors"), lo));
}

TEST_CASE("checkpoint: per-mode fallback thresholds round trip; old files have none") {
  testing::TempDir tmp;
  Cmdr model(test::small_config(16));
  CheckpointMeta m = sample_meta();
  m.fallback_thresholds = {{"2d", 0.75f}, {"3d", 2.5f}};
  save_checkpoint(tmp.file("c.safetensors"), model, m);
  LoadOptions lo;
  lo.quiet = true;
  const LoadedCheckpoint lc = load_checkpoint(tmp.file("c.safetensors"), lo);
  CHECK(lc.meta.fallback_thresholds.size() == 2);
  CHECK(lc.meta.fallback_thresholds.at("2d") == 0.75f);
  CHECK(lc.meta.fallback_thresholds.at("3d") == 2.5f);
  // A checkpoint written before per-mode thresholds existed has no key: nothing invented.
  save_checkpoint(tmp.file("old.safetensors"), model, sample_meta());
  CHECK(load_checkpoint(tmp.file("old.safetensors"), lo).meta.fallback_thresholds.empty());
  CHECK(st::File(tmp.file("old.safetensors")).metadata().count("cmdr.fallback_thresholds") == 0);
}
