// SPEC 6 training loop: seeded shuffle, feature cache (memory and disk spill), per-epoch
// statistics, step limits and exact resumption from a checkpointed state.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "cmdr_fixture.hpp"
#include "engine/error.hpp"
#include "models/train.hpp"

using namespace cmdr;
using namespace cmdr::models;

namespace {

CmdrConfig tiny_config() {
  CmdrConfig cfg = test::small_config(8);
  cfg.rgb_dim = cfg.dec2d.dim = 12;
  cfg.dec2d.hidden = 8;
  cfg.dec2d.heads = 2;
  cfg.dec2d.window = 24;
  cfg.dec2d.mlp_hidden = 10;
  cfg.dec2d.conv1 = 6;
  cfg.dec2d.conv2 = 4;
  cfg.dec2d.rec_hidden = 14;
  cfg.xyz_dim = cfg.dec3d.channels = 10;
  cfg.dec3d.widths = {8, 6, 5, 4};
  cfg.dec3d.att_hidden = 3;
  cfg.seed = 3;
  return cfg;  // dropout stays on (0.1): resumption must reproduce the masks too
}

void fill_cache(FeatureCache& cache, int n) {
  Rng rng(99);
  for (int i = 0; i < n; ++i) {
    FeatureCache::Entry e;
    e["rgb"] = Tensor::empty({64, 12});
    e["xyz"] = Tensor::empty({64, 10});
    rng.fill_normal(e["rgb"], 0.0f, 1.0f);
    rng.fill_normal(e["xyz"], 0.0f, 1.0f);
    e["valid"] = Tensor::ones({64});
    e["valid"].data()[i] = 0.0f;
    cache.add(std::move(e));
  }
}

bool same_state(Cmdr& a, Cmdr& b) {
  const ag::StateDict x = a.state_dict(), y = b.state_dict();
  if (x.size() != y.size()) return false;
  for (const auto& [k, t] : x) {
    if (t.to_vector() != y.at(k).to_vector()) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("train: epoch order is a seeded permutation, stable per (seed, epoch)") {
  const auto a = epoch_order(10, 5, 1, true), b = epoch_order(10, 5, 1, true);
  CHECK(a == b);
  CHECK(a != epoch_order(10, 5, 2, true));
  CHECK(a != epoch_order(10, 6, 1, true));
  auto s = a;
  std::sort(s.begin(), s.end());
  CHECK(s == epoch_order(10, 5, 1, false));  // identity when not shuffling
}

TEST_CASE("train: feature cache spills to disk beyond its budget and reads back") {
  const std::string dir = (std::filesystem::temp_directory_path() / "cmdr-cache-test").string();
  std::string spilled_path;
  {
    FeatureCache mem(int64_t{1} << 30);
    FeatureCache disk(4000, dir);  // one 64×(12+10+1) sample is 5888 bytes: all spill
    fill_cache(mem, 3);
    fill_cache(disk, 3);
    CHECK(mem.spilled() == 0);
    CHECK(disk.spilled() == 3);
    CHECK(disk.bytes_on_disk() == 3 * 5888);
    for (int i = 0; i < 3; ++i) {
      const Sample a = mem.get(i), b = disk.get(i);
      CHECK(a.rgb.to_vector() == b.rgb.to_vector());
      CHECK(a.xyz.to_vector() == b.xyz.to_vector());
      CHECK(a.valid.to_vector() == b.valid.to_vector());
    }
    CHECK_THROWS_AS(mem.get(3), Error);
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) files += e.is_regular_file();
    CHECK(files >= 3);
  }
  int left = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    left += e.path().filename().string().rfind("cmdr-features-", 0) == 0;
  }
  CHECK(left == 0);  // the cache removes its files
}

TEST_CASE("train: epochs, statistics, step limit and exact resumption") {
  FeatureCache cache;
  fill_cache(cache, 3);
  TrainOptions opt;
  opt.epochs = 2;
  opt.seed = 17;
  opt.progress = false;

  Cmdr full(tiny_config());
  int64_t step_calls = 0;
  opt.on_step = [&](int64_t, const StepResult&) { ++step_calls; };
  const std::vector<EpochStats> hist = train(full, cache, opt);
  REQUIRE(hist.size() == 2);
  CHECK(step_calls == 6);
  CHECK(full.steps() == 6);
  for (const EpochStats& e : hist) {
    CHECK(e.steps == 3);
    CHECK(e.rollbacks == 0);
    for (double l : e.mean_loss) CHECK(std::isfinite(l));
  }
  opt.on_step = nullptr;

  // Resume: epoch 1 in one model, then a fresh model loads its weights and optimizer state
  // (what a checkpoint holds) and runs epoch 2. Bit-identical to the uninterrupted run.
  Cmdr first(tiny_config());
  TrainOptions o1 = opt;
  o1.epochs = 1;
  train(first, cache, o1);
  Cmdr resumed(tiny_config());
  resumed.load_state_dict(first.state_dict());
  for (int n = 0; n < 4; ++n) {
    ag::Adam& src = first.optimizer(static_cast<Net>(n));
    ag::Adam& dst = resumed.optimizer(static_cast<Net>(n));
    dst.exp_avg().clear();
    dst.exp_avg_sq().clear();
    for (const Tensor& t : src.exp_avg()) dst.exp_avg().push_back(t.clone());
    for (const Tensor& t : src.exp_avg_sq()) dst.exp_avg_sq().push_back(t.clone());
    dst.set_steps(src.steps());
  }
  TrainOptions o2 = opt;
  o2.start_epoch = 1;
  const auto h2 = train(resumed, cache, o2);
  REQUIRE(h2.size() == 1);
  CHECK(h2[0].epoch == 2);
  CHECK(same_state(full, resumed));
  CHECK(h2[0].mean_loss == hist[1].mean_loss);

  // --steps K: stops after K steps in total.
  Cmdr limited(tiny_config());
  TrainOptions o3 = opt;
  o3.max_steps = 4;
  const auto h3 = train(limited, cache, o3);
  CHECK(limited.steps() == 4);
  REQUIRE(h3.size() == 2);
  CHECK(h3[1].steps == 1);

  FeatureCache empty;
  CHECK_THROWS_AS(train(limited, empty, opt), Error);
}
