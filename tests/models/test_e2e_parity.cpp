// Golden END-TO-END parity (issue 5 item 8) against tools/golden/e2e.py: the same sample
// files and weights through SPEC 3 transforms, tiny extractors (SPEC 4), feature assembly,
// the four CMDR networks (SPEC 5, reduced widths) and fusion (SPEC 7) give every tensor of
// `score --dump` within 1e-3 of PyTorch; three deterministic training steps (SPEC 6: no
// dropout, samples in sorted order, Adam lr 1e-3, BatchNorm in train mode) give the four
// losses per step and the final weights within 1e-4.
// Route: the library calls behind the verbs — load_extractors (architectures from the weight
// files), score_sample (what `score --dump` runs) and, for training, extract_features ->
// feature cache -> models::train with a step limit and no shuffling (what train_class runs
// for `train --init --steps 3 --no-dropout --no-shuffle`). train_class itself is not called:
// it builds SPEC-width networks (CmdrConfig::spec), and these fixtures use reduced widths.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include "cmdr_fixture.hpp"
#include "io/safetensors.hpp"
#include "io/tiff.hpp"
#include "models/cmdr.hpp"
#include "models/pipeline.hpp"
#include "models/train.hpp"
#include "models/workflow.hpp"

using namespace cmdr;
using namespace cmdr::models;
using cmdr::test::rel_err;

namespace {

// Everything here matches tools/golden/e2e.py.
constexpr int64_t kSide = 24;
constexpr double kDumpTol = 1e-3;  // every `score --dump` tensor, norm-relative (SPEC 9)
constexpr double kStepTol = 1e-4;  // losses and weights after 3 Adam steps
const char* const kTrain[] = {"train_000", "train_001", "train_002"};  // sorted = step order
const char* const kTest = "test_000";

std::string e2e_fixture(const std::string& name) {
  return std::string(CMDR_FIXTURES) + "/e2e/" + name;
}

// The organised clouds are fixtures as H×W×3 float tensors; the pipeline reads TIFF files,
// so they are written with io::write_xyz_tiff (tested on its own) into a scratch directory.
std::string cloud_tiff(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("cmdr-e2e-parity-" + std::to_string(::getpid()));  // concurrent runs
  std::filesystem::create_directories(dir);
  const std::string path = (dir / (name + ".tiff")).string();
  st::File clouds(e2e_fixture("clouds.safetensors"));
  io::write_xyz_tiff(path, clouds.get(name));
  return path;
}

// The extractors as every verb loads them: architectures read from the weight files
// (head counts and Point-MAE taps from their metadata), G = 32 groups of K = 16 points.
Extractors load_tiny_extractors() {
  ExtractorOptions opt;
  opt.num_group = 32;
  opt.group_size = 16;
  Extractors ex = load_extractors(e2e_fixture("vit_tiny.safetensors"),
                                  e2e_fixture("pmae_tiny.safetensors"), opt, /*quiet=*/true);
  REQUIRE(ex.rgb_dim() == 32);  // = the reduced CMDR widths of cmdr_nets.py
  REQUIRE(ex.xyz_dim() == 48);
  REQUIRE(ex.vit->cfg.image == 32);  // DINO on its own input side, tokens upsampled to S
  REQUIRE(ex.pmae->cfg.taps == std::vector<int64_t>{1, 2, 3});
  return ex;
}

// A scratch copy of a sample's cloud as TIFF, removed (with its directory) when done.
struct ScratchTiff {
  std::string path;
  explicit ScratchTiff(const std::string& name) : path(cloud_tiff(name)) {}
  ~ScratchTiff() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    std::filesystem::remove(std::filesystem::path(path).parent_path(), ec);  // once empty
  }
};

Cmdr make_model() {
  CmdrConfig cfg = test::small_config(kSide);  // cmdr_nets.py widths (32 / 48)
  cfg.p_drop = 0.0f;                           // --no-dropout
  Cmdr model(cfg);
  model.load_state_dict(test::load_prefixed(st::File(e2e_fixture("cmdr_init.safetensors")), ""));
  return model;
}

// What `score --dump` (apps/cmd_score.cpp) writes for one sample: score_sample(), then the
// compact features, the networks' inputs and dump_tensors() of the outputs.
std::map<std::string, Tensor> score_dump(Cmdr& model, const Extractors& ex,
                                         const std::string& name) {
  const ScratchTiff tiff(name);
  const ScoredSample r =
      score_sample(model, ex, e2e_fixture(name + ".png"), tiff.path, /*keep_expanded=*/true);
  REQUIRE_MESSAGE(r.warning.empty(), r.warning);
  CHECK(r.mode_used == Mode::Fused2D3D);
  const SampleFeatures& f = r.features;
  std::map<std::string, Tensor> d{{"rgb_input", f.rgb_input},
                                  {"pc_resized", f.pc_resized},
                                  {"rgb_tokens", f.rgb_tokens},
                                  {"xyz_centers", f.centers},
                                  {"xyz_group_features", f.group_features},
                                  {"rgb_patch", r.expanded.rgb},
                                  {"xyz_patch", r.expanded.xyz},
                                  {"valid", r.expanded.valid}};
  for (auto& [k, t] : dump_tensors(r.out)) d[k] = t;
  return d;
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (float x : t.to_vector()) m = std::max(m, static_cast<double>(std::abs(x)));
  return m;
}

bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// Biases of the transposed convolutions feeding a BatchNorm: their exact gradient is 0
// (BatchNorm subtracts the channel mean), so both sides hold rounding noise that Adam turns
// into steps of up to ~lr in either direction. Checked against that bound instead (as in
// test_cmdr_nets.cpp).
bool bias_before_batchnorm(const std::string& k) {
  for (const char* s : {"Dec2D.conv_decoder.0.bias", "Dec2D.conv_decoder.3.bias",
                        "Dec2D.conv_decoder.6.bias", "Dec3D.decoder.0.bias", "Dec3D.decoder.3.bias",
                        "Dec3D.decoder.6.bias", "Dec3D.decoder.9.bias"})
    if (ends_with(k, s)) return true;
  return false;
}
// The BatchNorm right after such a bias: its running mean saw the noisy bias after steps 1
// and 2 (momentum 0.1): |Δ| ≤ 0.09·|Δb₁| + 0.1·|Δb₂| ≤ 0.19·(2·2·1.5·lr).
bool mean_after_noisy_bias(const std::string& k) {
  for (const char* s : {"Dec2D.conv_decoder.1.running_mean", "Dec2D.conv_decoder.4.running_mean",
                        "Dec2D.conv_decoder.7.running_mean", "Dec3D.decoder.1.running_mean",
                        "Dec3D.decoder.4.running_mean", "Dec3D.decoder.7.running_mean",
                        "Dec3D.decoder.10.running_mean"})
    if (k == s) return true;
  return false;
}

}  // namespace

TEST_CASE("e2e parity: score --dump tensors of one sample match PyTorch") {
  const Extractors ex = load_tiny_extractors();
  Cmdr model = make_model();
  const std::map<std::string, Tensor> got = score_dump(model, ex, kTest);
  st::File ref(e2e_fixture("score_dump.safetensors"));

  const char* const names[] = {
      "rgb_input", "pc_resized", "rgb_tokens", "xyz_centers", "xyz_group_features",
      "rgb_patch", "xyz_patch",  "valid",      "mapped_2d",   "mapped_3d",
      "recon_2d",  "recon_3d",   "d_map2d",    "d_map3d",     "d_rec2d",
      "d_rec3d",   "a_map",      "a_rec",      "fused",       "pixel_map",
      "aupro_map", "image_score"};
  for (const char* n : names) {
    REQUIRE_MESSAGE(got.count(n), "our dump lacks ", n);
    REQUIRE_MESSAGE(ref.has(n), "fixture lacks ", n);
    Tensor r = ref.get(n, /*convert=*/true);
    Tensor g = got.at(n);
    if (g.shape() != r.shape() && g.numel() == r.numel()) g = g.reshape(r.shape());  // S×S vs S²
    const double e = rel_err(g, r);
    MESSAGE(std::string(n), " ", g.str(), ": rel err ", e);
    CHECK_MESSAGE(e <= kDumpTol, std::string(n), " rel err ", e);
  }
  // The mask is exact, and it does mask: some positions of the sample have no geometry.
  const std::vector<float> v = got.at("valid").to_vector(), vr = ref.get("valid").to_vector();
  CHECK(v == vr);
  const auto n_valid = std::count(v.begin(), v.end(), 1.0f);
  CHECK(n_valid > 0);
  CHECK(n_valid < kSide * kSide);
  // The transforms are exact up to float rounding (Pillow's 8-bit resize, a nearest gather).
  CHECK(rel_err(got.at("rgb_input"), ref.get("rgb_input")) <= 1e-6);
  CHECK(rel_err(got.at("pc_resized"), ref.get("pc_resized")) == 0.0);
  // The decision quantities: image score and the argmax pixel of the anomaly map.
  const float s = got.at("image_score").item(), sr = ref.get("image_score").item();
  CHECK(std::abs(s - sr) <= kDumpTol * std::abs(sr));
  const std::vector<float> pm = got.at("pixel_map").to_vector(),
                           pr = ref.get("pixel_map").to_vector();
  CHECK(std::max_element(pm.begin(), pm.end()) - pm.begin() ==
        std::max_element(pr.begin(), pr.end()) - pr.begin());
}

TEST_CASE("e2e parity: 3 training steps (no dropout, sorted order) match PyTorch") {
  // As train_class does for `train --init CKPT0 --steps 3 --no-dropout --no-shuffle`:
  // compact features of the train samples in sorted order into the feature cache, then the
  // training loop with a step limit and no shuffling; losses as the --dump-losses CSV.
  const Extractors ex = load_tiny_extractors();
  st::File ref(e2e_fixture("train_expected.safetensors"));
  FeatureCache cache(int64_t{1} << 30, "", cache_expander(kSide, 32, 48));
  for (const char* n : kTrain) {
    const ScratchTiff tiff(n);
    const SampleFeatures f =
        extract_features(ex, e2e_fixture(std::string(n) + ".png"), tiff.path, kSide);
    REQUIRE_MESSAGE(f.has_3d, f.warning);
    cache.add(to_cache_entry(f));
  }
  for (int64_t i = 0; i < 3; ++i) {
    const std::string n = kTrain[i];
    CHECK(cache.get(i).valid.to_vector() == ref.get(n + ".valid").to_vector());
  }
  CHECK(rel_err(cache.get(0).rgb, ref.get("train_000.rgb_patch")) <= kDumpTol);
  CHECK(rel_err(cache.get(0).xyz, ref.get("train_000.xyz_patch")) <= kDumpTol);

  Cmdr model = make_model();
  ag::StateDict init_copy;
  for (const auto& [k, t] : model.state_dict()) init_copy[k] = t.clone();
  const Tensor losses = ref.get("losses");  // [3, 4]: map2d, map3d, rec2d, rec3d (CSV order)
  // CSV column -> Net slot (map2d = mapped_2d vs rgb = map3Dto2D's loss; workflow.cpp).
  const Net column_net[4] = {kMap3Dto2D, kMap2Dto3D, kDec2D, kDec3D};
  TrainOptions to;
  to.shuffle = false;
  to.max_steps = 3;
  to.progress = false;
  double worst_loss = 0.0;
  int64_t steps_seen = 0;
  to.on_step = [&](int64_t step, const StepResult& r) {
    ++steps_seen;
    REQUIRE(step == steps_seen);
    const int64_t s = step - 1;
    for (int c = 0; c < 4; ++c) {
      const double l = r.loss[column_net[c]], lr = losses.at({s, c});
      const double e = std::abs(l - lr) / std::abs(lr);
      worst_loss = std::max(worst_loss, e);
      CHECK_MESSAGE(e <= kStepTol, "step ", step, " column ", c, ": ", l, " vs ", lr);
      CHECK(!r.rolled_back[column_net[c]]);
    }
  };
  train(model, cache, to);
  CHECK(steps_seen == 3);
  MESSAGE("3 steps: worst loss rel err ", worst_loss);

  const ag::StateDict sd = model.state_dict();
  const double lr = 1e-3;
  double worst = 0.0;
  int64_t beyond = 0, compared = 0;
  double worst_ambiguous = 0.0, worst_clear = 0.0;  // worst_clear: unflagged elements
  for (const auto& info : ref.tensors()) {
    if (info.name.rfind("final.", 0) != 0) continue;
    const std::string k = info.name.substr(6);
    REQUIRE_MESSAGE(sd.count(k), k);
    const Tensor t = ref.get(info.name, /*convert=*/true);
    const std::vector<float> a = sd.at(k).to_vector(), b = t.to_vector(),
                             a0 = init_copy.at(k).to_vector();
    REQUIRE(a.size() == b.size());
    ++compared;
    if (bias_before_batchnorm(k)) {
      double moved = 0.0;
      for (std::size_t i = 0; i < a.size(); ++i)
        moved = std::max(moved, std::abs(double(a[i]) - a0[i]));
      CHECK_MESSAGE(moved <= 3 * 1.5e-3, k, " moved ", moved);
      continue;
    }
    const double scale = std::max(max_abs(t), 1e-12);
    if (mean_after_noisy_bias(k)) {
      double d = 0.0;
      for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a[i]) - b[i]));
      CHECK_MESSAGE(d <= kStepTol * scale + 0.19 * 6 * lr, k, " ", d);
      continue;
    }
    // Elements whose reference gradient had no reliable sign at some step (e2e.py SIGN_TAU:
    // |g| < 1e-4·max|g|, the gradients' rounding level): Adam moves them by ~±lr regardless
    // of |g|, so each such step may put them up to 2·lr (+5 % for the bias-corrected moments)
    // apart.
    const std::string amb_key = "ambiguous_steps." + k;
    const std::vector<float> amb =
        ref.has(amb_key) ? ref.get(amb_key, /*convert=*/true).to_vector() : std::vector<float>();
    double worst_k = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double d = std::abs(double(a[i]) - b[i]);
      worst_k = std::max(worst_k, d);
      if (amb.empty() || amb[i] == 0.0f) worst_clear = std::max(worst_clear, d / scale);
      if (d > kStepTol * scale) {
        const double n_amb = amb.empty() ? 0.0 : amb[i];
        ++beyond;
        worst_ambiguous = std::max(worst_ambiguous, d / lr);
        CHECK_MESSAGE(d <= kStepTol * scale + 2.1 * lr * n_amb, k, "[", i, "] ", a[i], " vs ", b[i],
                      " (reference gradient sign-ambiguous at ", n_amb, " step(s))");
      }
    }
    worst = std::max(worst, worst_k / scale);
  }
  CHECK(compared == static_cast<int64_t>(sd.size()));
  MESSAGE(compared, " tensors; worst weight rel err ", worst, " (", worst_clear,
          " over unflagged elements); ", beyond,
          " element(s) beyond 1e-4 relative, all flagged by the reference, largest ",
          worst_ambiguous, "·lr");
  CHECK(model.steps() == 3);
}
