// The four CMDR-IAD networks against tools/golden/cmdr_nets.py (SPEC 5, reduced widths):
// checkpoint names, eval and train forwards, losses, gradients, BatchNorm running stats,
// the whole inference pipeline (SPEC 7) and three Adam steps of all four networks (SPEC 6).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "cmdr_fixture.hpp"
#include "engine/error.hpp"

using namespace cmdr;
using namespace cmdr::models;
using cmdr::test::rel_err;

namespace {

// Tolerances (norm-relative, see rel_err): one network's forward 1e-4; the whole pipeline
// and the gradients 1e-3; losses and weights after three Adam steps 1e-4.
constexpr double kNetTol = 1e-4;
constexpr double kPipeTol = 1e-3;
constexpr double kGradTol = 1e-3;
constexpr double kStepTol = 1e-4;

// Biases of the transposed convolutions that feed a BatchNorm: BatchNorm subtracts the
// per-channel mean, so their exact gradient is 0 and both implementations produce rounding
// noise there (which Adam then amplifies to ±lr steps). They are checked against that
// bound instead of against PyTorch's noise.
bool bias_before_batchnorm(const std::string& key) {
  for (const char* k : {"Dec2D.conv_decoder.0.bias", "Dec2D.conv_decoder.3.bias",
                        "Dec2D.conv_decoder.6.bias", "Dec3D.decoder.0.bias", "Dec3D.decoder.3.bias",
                        "Dec3D.decoder.6.bias", "Dec3D.decoder.9.bias"}) {
    if (key.size() >= std::strlen(k) &&
        key.compare(key.size() - std::strlen(k), std::string::npos, k) == 0)
      return true;
  }
  return false;
}

bool mean_after_noisy_bias(const std::string& key) {
  for (const char* k : {"Dec2D.conv_decoder.1.running_mean", "Dec2D.conv_decoder.4.running_mean",
                        "Dec2D.conv_decoder.7.running_mean", "Dec3D.decoder.1.running_mean",
                        "Dec3D.decoder.4.running_mean", "Dec3D.decoder.7.running_mean",
                        "Dec3D.decoder.10.running_mean"}) {
    if (key == k) return true;
  }
  return false;
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (float x : t.to_vector()) m = std::max(m, static_cast<double>(std::abs(x)));
  return m;
}

const char* const kOutName[4] = {"mapped_3d", "mapped_2d", "recon_2d", "recon_3d"};

ag::Var run_net(Cmdr& m, int n, const ag::Var& rgb, const ag::Var& xyz) {
  switch (n) {
    case kMap2Dto3D:
      return m.map2Dto3D->forward(rgb);
    case kMap3Dto2D:
      return m.map3Dto2D->forward(xyz);
    case kDec2D:
      return m.dec2d->forward(rgb);
    default:
      return m.dec3d->forward(xyz);
  }
}

}  // namespace

TEST_CASE("cmdr nets: state_dict keys and shapes equal the PyTorch modules'") {
  for (int side : {16, 24}) {
    CAPTURE(side);
    st::File f(test::model_fixture("nets_S" + std::to_string(side) + ".safetensors"));
    const ag::StateDict ref = test::load_prefixed(f, "state.");
    Cmdr model(test::small_config(side));
    const ag::StateDict sd = model.state_dict();
    std::set<std::string> a, b;
    for (const auto& [k, t] : sd) a.insert(k);
    for (const auto& [k, t] : ref) b.insert(k);
    CHECK(a == b);
    for (const auto& [k, t] : ref) {
      if (sd.count(k)) CHECK_MESSAGE(sd.at(k).shape() == t.shape(), k);
    }
    // Mode 2d / 3d hold only their decoder.
    Cmdr m2(test::small_config(side, Mode::Only2D));
    Cmdr m3(test::small_config(side, Mode::Only3D));
    for (const auto& [k, t] : m2.state_dict()) CHECK(k.rfind("Dec2D.", 0) == 0);
    for (const auto& [k, t] : m3.state_dict()) CHECK(k.rfind("Dec3D.", 0) == 0);
    CHECK_THROWS_AS(m2.load_state_dict(ref), Error);  // extra prefixes in strict mode
  }
}

TEST_CASE("cmdr nets: eval forward and the whole inference pipeline match PyTorch") {
  for (int side : {16, 24}) {  // 24: 576 tokens = 4.5 attention windows (padded last one)
    CAPTURE(side);
    st::File f(test::model_fixture("nets_S" + std::to_string(side) + ".safetensors"));
    Cmdr model(test::small_config(side));
    model.load_state_dict(test::load_prefixed(f, "state."));
    const Tensor rgb = f.get("rgb"), xyz = f.get("xyz"), valid = f.get("valid");
    const CmdrOutputs out = model.infer(rgb, xyz, valid);
    const Tensor* nets[4] = {&out.mapped_3d, &out.mapped_2d, &out.recon_2d, &out.recon_3d};
    for (int n = 0; n < 4; ++n) {
      const double err = rel_err(*nets[n], f.get(std::string("eval.") + kOutName[n]));
      MESSAGE("S=", side, " eval ", std::string(kNetNames[n]), " rel err ", err);
      CHECK(err < kNetTol);
    }
    const FusionResult& r = out.fusion;
    const std::pair<const char*, const Tensor*> maps[] = {
        {"d_map2d", &r.d_map2d}, {"d_map3d", &r.d_map3d},     {"d_rec2d", &r.d_rec2d},
        {"d_rec3d", &r.d_rec3d}, {"a_map", &r.a_map},         {"a_rec", &r.a_rec},
        {"fused", &r.fused},     {"pixel_map", &r.pixel_map}, {"aupro_map", &r.aupro_map}};
    for (const auto& [key, t] : maps) {
      const double err = rel_err(*t, f.get(std::string("pipeline.") + key));
      MESSAGE("S=", side, " pipeline ", std::string(key), " rel err ", err);
      CHECK(err < kPipeTol);
    }
    const float ref = f.get("pipeline.image_score").item();
    CHECK(std::abs(r.image_score - ref) <= kPipeTol * std::abs(ref));
    // infer() leaves the networks in the mode they were in.
    CHECK(model.dec2d->training());
  }
}

TEST_CASE("cmdr nets: train-mode forward, losses, gradients and running stats match PyTorch") {
  for (int side : {16, 24}) {
    CAPTURE(side);
    st::File f(test::model_fixture("nets_S" + std::to_string(side) + ".safetensors"));
    st::File g(test::model_fixture("grads_S" + std::to_string(side) + ".safetensors"));
    CmdrConfig cfg = test::small_config(side);
    cfg.p_drop = 0.0f;  // the fixture's train mode has dropout off, BatchNorm on batch stats
    Cmdr model(cfg);
    model.load_state_dict(test::load_prefixed(f, "state."));
    const ag::Var rgb(f.get("rgb")), xyz(f.get("xyz"));
    const Tensor valid = f.get("valid");
    const ag::Var target[4] = {xyz, rgb, rgb, xyz};
    for (int n = 0; n < 4; ++n) {
      CAPTURE(kNetNames[n]);
      ag::Module& net = *model.net(static_cast<Net>(n));
      net.train();
      net.zero_grad();
      ag::Var y = run_net(model, n, rgb, xyz);
      const double ey = rel_err(y.value(), f.get(std::string("train.") + kOutName[n]));
      MESSAGE("S=", side, " train ", std::string(kNetNames[n]), " rel err ", ey);
      CHECK(ey < kNetTol);
      ag::Var loss = masked_cosine_loss(y, target[n], valid);
      const float lref = f.get(std::string("loss.") + kNetNames[n]).item();
      CHECK(std::abs(loss.value().item() - lref) <= kNetTol * std::abs(lref));
      ag::backward(loss);
      double worst = 0.0, gmax = 0.0;
      int count = 0;
      for (auto& [name, p] : net.named_parameters()) {
        gmax = std::max(gmax, max_abs(g.get(std::string("grad.") + kNetNames[n] + "." + name)));
      }
      for (auto& [name, p] : net.named_parameters()) {
        const std::string key = std::string("grad.") + kNetNames[n] + "." + name;
        REQUIRE_MESSAGE(g.has(key), key);
        REQUIRE_MESSAGE(p->grad().defined(), key);
        if (bias_before_batchnorm(key)) {
          // Analytically zero: both sides must be rounding noise far below the other grads.
          CHECK_MESSAGE(max_abs(p->grad()) <= 1e-5 * gmax, key, " ", max_abs(p->grad()));
          CHECK_MESSAGE(max_abs(g.get(key)) <= 1e-5 * gmax, key, " ", max_abs(g.get(key)));
          continue;
        }
        const double e = rel_err(p->grad(), g.get(key));
        CHECK_MESSAGE(e < kGradTol, key, " rel err ", e);
        worst = std::max(worst, e);
        ++count;
      }
      MESSAGE("S=", side, " grads ", std::string(kNetNames[n]), " (", count,
              " tensors) worst rel err ", worst);
      for (const auto& [name, t] : net.state_dict()) {
        const std::string key = std::string("after.") + kNetNames[n] + "." + name;
        if (!f.has(key)) continue;
        CHECK_MESSAGE(rel_err(t, f.get(key)) < kNetTol, key);
      }
    }
  }
}

TEST_CASE("cmdr nets: three Adam steps of all four networks match PyTorch") {
  st::File f(test::model_fixture("train_S16.safetensors"));
  // Both with the per-position networks restricted to valid rows (SPEC 10, the default)
  // and without.
  for (const bool valid_only : {true, false}) {
    CAPTURE(valid_only);
    CmdrConfig cfg = test::small_config(16);
    cfg.p_drop = 0.0f;
    cfg.train_valid_only = valid_only;
    Cmdr model(cfg);
    model.load_state_dict(test::load_prefixed(f, "init."));
    const Tensor losses = f.get("losses");  // [3, 4], columns in Net order
    for (int s = 0; s < 3; ++s) {
      const std::string i = std::to_string(s);
      const StepResult r =
          model.train_step(f.get("rgb." + i), f.get("xyz." + i), f.get("valid." + i));
      for (int n = 0; n < 4; ++n) {
        const float ref = losses.at({s, n});
        CHECK_MESSAGE(std::abs(r.loss[n] - ref) <= kStepTol * std::abs(ref), "step ", s, " ",
                      std::string(kNetNames[n]), " loss ", r.loss[n], " vs ", ref);
        CHECK(!r.rolled_back[n]);
      }
    }
    CHECK(model.steps() == 3);
    CHECK(model.rollbacks().empty());
    double worst = 0.0;
    const ag::StateDict ref = test::load_prefixed(f, "final.");
    const ag::StateDict sd = model.state_dict();
    REQUIRE(sd.size() == ref.size());
    const ag::StateDict init = test::load_prefixed(f, "init.");
    const double lr = 1e-3;
    int64_t eps_limited = 0;
    for (const auto& [k, t] : ref) {
      REQUIRE_MESSAGE(sd.count(k), k);
      const std::vector<float> a = sd.at(k).to_vector(), b = t.to_vector(),
                               a0 = init.at(k).to_vector();
      if (bias_before_batchnorm(k)) {
        // Adam on rounding noise: each of the 3 steps moves by at most ~1.5·lr either way.
        double moved = 0.0;
        for (std::size_t i = 0; i < a.size(); ++i)
          moved = std::max(moved, std::abs(double(a[i]) - a0[i]));
        CHECK_MESSAGE(moved <= 3 * 1.5e-3, k, " moved ", moved);
        continue;
      }
      const double scale = max_abs(t);
      if (mean_after_noisy_bias(k)) {
        // This BatchNorm's input carries the noisy bias above; its running mean (momentum 0.1)
        // saw the bias after steps 1 and 2: |Δ| ≤ 0.09·|Δb₁| + 0.1·|Δb₂| ≤ 0.19·(2·2·1.5·lr).
        // running_var is unaffected and compared at 1e-4 like everything else.
        double d = 0.0;
        for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a[i]) - b[i]));
        CHECK_MESSAGE(d <= kStepTol * scale + 0.19 * 6 * lr, k, " ", d);
        continue;
      }
      double worst_k = 0.0;
      for (std::size_t i = 0; i < a.size(); ++i) {
        const double d = std::abs(double(a[i]) - b[i]);
        worst_k = std::max(worst_k, d);
        // 1e-4 relative to the tensor's scale; or 3% of one Adam step for elements whose
        // gradient is comparable to Adam's eps (1e-8): there g/(|g| + eps) turns float32
        // gradient rounding (~1e-9 here, as in PyTorch itself) into visible update changes.
        if (d > kStepTol * scale) {
          ++eps_limited;
          CHECK_MESSAGE(d <= 0.03 * lr, k, "[", i, "] ", a[i], " vs ", b[i]);
        }
      }
      worst = std::max(worst, worst_k / std::max(scale, 1e-12));
    }
    MESSAGE(eps_limited, " element(s) beyond 1e-4 relative, all within 0.03·lr");
    MESSAGE("after 3 steps: worst weight rel err ", worst);
    for (int n = 0; n < 4; ++n) CHECK(model.optimizer(static_cast<Net>(n)).steps() == 3);
  }
}

TEST_CASE("cmdr nets: non-finite steps are rolled back and reported") {
  st::File f(test::model_fixture("train_S16.safetensors"));
  CmdrConfig cfg = test::small_config(16);
  cfg.p_drop = 0.0f;
  {
    Cmdr model(cfg);
    model.load_state_dict(test::load_prefixed(f, "init."));
    ag::StateDict before = model.state_dict();
    for (auto& [k, t] : before) t = t.clone();
    Tensor rgb = f.get("rgb.0").clone();
    const Tensor valid = f.get("valid.0");
    int64_t p = 0;
    while (valid.data()[p] == 0.0f) ++p;
    // An inf at a valid position poisons every loss reading rgb.
    rgb.data()[p * 32 + 5] = std::numeric_limits<float>::infinity();
    const StepResult r = model.train_step(rgb, f.get("xyz.0"), valid);
    CHECK(r.rolled_back[kMap2Dto3D]);
    CHECK(r.rolled_back[kMap3Dto2D]);  // its target is rgb
    CHECK(r.rolled_back[kDec2D]);
    CHECK(!r.rolled_back[kDec3D]);
    CHECK(model.rollbacks().size() == 3);
    for (const Rollback& rb : model.rollbacks()) CHECK(rb.step == 1);
    CHECK(model.optimizer(kDec2D).steps() == 0);
    CHECK(model.optimizer(kDec3D).steps() == 1);
    const ag::StateDict after = model.state_dict();
    for (const auto& [k, t] : before) {
      const bool dec3d = k.rfind("Dec3D.", 0) == 0;
      if (!dec3d) CHECK_MESSAGE(rel_err(after.at(k), t) == 0.0, k, " changed");
    }
    // The next clean step trains all four again.
    const StepResult r2 = model.train_step(f.get("rgb.1"), f.get("xyz.1"), f.get("valid.1"));
    for (int n = 0; n < 4; ++n) CHECK(!r2.rolled_back[n]);
  }
  {
    cfg.lr = std::numeric_limits<float>::infinity();  // every update turns parameters non-finite
    Cmdr model(cfg);
    model.load_state_dict(test::load_prefixed(f, "init."));
    ag::StateDict before = model.state_dict();
    for (auto& [k, t] : before) t = t.clone();
    const StepResult r = model.train_step(f.get("rgb.0"), f.get("xyz.0"), f.get("valid.0"));
    for (int n = 0; n < 4; ++n) CHECK(r.rolled_back[n]);
    REQUIRE(model.rollbacks().size() == 4);
    CHECK(model.rollbacks()[0].reason == "non-finite updated parameter");
    const ag::StateDict after = model.state_dict();
    for (const auto& [k, t] : before) CHECK_MESSAGE(rel_err(after.at(k), t) == 0.0, k);
    for (int n = 0; n < 4; ++n) CHECK(model.optimizer(static_cast<Net>(n)).steps() == 0);
  }
}

TEST_CASE("cmdr nets: gradient clipping limits the first Adam step") {
  st::File f(test::model_fixture("train_S16.safetensors"));
  auto max_change = [&](float clip) {
    CmdrConfig cfg = test::small_config(16, Mode::Only3D);
    cfg.p_drop = 0.0f;
    cfg.clip_grad = clip;
    Cmdr model(cfg);
    ag::StateDict init = test::load_prefixed(f, "init.");
    ag::StateDict mine;
    for (const auto& [k, t] : init) {
      if (k.rfind("Dec3D.", 0) == 0) mine[k] = t;
    }
    model.load_state_dict(mine);
    const Tensor w0 = model.dec3d->projection.named_parameters()[0].second->value().clone();
    model.train_step(f.get("rgb.0"), f.get("xyz.0"), f.get("valid.0"));
    const Tensor w1 = model.dec3d->projection.named_parameters()[0].second->value();
    double m = 0.0;
    for (int64_t i = 0; i < w0.numel(); ++i) {
      m = std::max(m, static_cast<double>(std::abs(w1.data()[i] - w0.data()[i])));
    }
    return m;
  };
  // Adam's first step moves weights by ~lr whatever the gradient's scale; a gradient clipped
  // to a norm far below Adam's eps (1e-8) moves them much less.
  const double free = max_change(0.0f);
  const double clipped = max_change(1e-10f);
  MESSAGE("max |Δw| unclipped ", free, ", clipped ", clipped);
  CHECK(free > 0.5e-3);
  CHECK(clipped < 0.1 * free);
}

TEST_CASE("cmdr nets: bad shapes and sizes are errors") {
  CHECK_THROWS_AS(Cmdr(test::small_config(12)), Error);  // S not a multiple of 8
  CmdrConfig bad = test::small_config(16);
  bad.dec3d.length = 100;
  CHECK_THROWS_AS(Cmdr{bad}, Error);
  Rng rng(1);
  Decoder3DConfig d3;
  d3.length = 100;
  d3.channels = 8;
  CHECK_THROWS_AS(Decoder3D(d3, rng, 1), Error);  // 100 not divisible by 32
  Cmdr model(test::small_config(16));
  const Tensor rgb = Tensor::zeros({256, 32}), xyz = Tensor::zeros({256, 48});
  CHECK_THROWS_AS(model.train_step(Tensor::zeros({255, 32}), xyz, Tensor::ones({256})), Error);
  CHECK_THROWS_AS(model.infer(rgb, Tensor::zeros({256, 47}), Tensor::ones({256})), Error);
  CHECK_THROWS_AS(model.infer(rgb, xyz, Tensor::ones({255})), Error);
  Cmdr only2d(test::small_config(16, Mode::Only2D));
  CHECK_THROWS_AS(only2d.infer(rgb, xyz, Tensor::ones({256}), Mode::Fused2D3D), Error);
}

TEST_CASE("cmdr nets: valid-only inference (SPEC 10) gives the same maps and score") {
  st::File f(test::model_fixture("nets_S16.safetensors"));
  Cmdr model(test::small_config(16));
  model.load_state_dict(test::load_prefixed(f, "state."));
  const Tensor rgb = f.get("rgb"), xyz = f.get("xyz"), valid = f.get("valid");
  const CmdrOutputs full = model.infer(rgb, xyz, valid, Mode::Fused2D3D, false);
  const CmdrOutputs fast = model.infer(rgb, xyz, valid, Mode::Fused2D3D, true);
  for (const auto& [a, b] : {std::pair{&full.fusion.fused, &fast.fusion.fused},
                             std::pair{&full.fusion.pixel_map, &fast.fusion.pixel_map},
                             std::pair{&full.fusion.aupro_map, &fast.fusion.aupro_map},
                             std::pair{&full.fusion.a_map, &fast.fusion.a_map},
                             std::pair{&full.fusion.a_rec, &fast.fusion.a_rec}}) {
    CHECK(rel_err(*b, *a) < 1e-5);
  }
  CHECK(std::abs(fast.fusion.image_score - full.fusion.image_score) <=
        1e-5f * std::abs(full.fusion.image_score));
  // Valid rows are the same network outputs; invalid rows are 0.
  const std::vector<float> v = valid.to_vector();
  const Tensor m_full = full.mapped_2d, m_fast = fast.mapped_2d;
  double worst = 0.0;
  bool zeros = true;
  for (int64_t p = 0; p < 256; ++p) {
    for (int64_t c = 0; c < 32; ++c) {
      if (v[p] != 0.0f) {
        worst =
            std::max(worst, static_cast<double>(std::abs(m_fast.at({p, c}) - m_full.at({p, c}))));
      } else {
        zeros &= m_fast.at({p, c}) == 0.0f;
      }
    }
  }
  CHECK(worst < 1e-5);
  CHECK(zeros);
}

TEST_CASE("cmdr nets: 2d and 3d modes train and score their branch only") {
  st::File f(test::model_fixture("train_S16.safetensors"));
  const Tensor rgb = f.get("rgb.0"), xyz = f.get("xyz.0"), valid = f.get("valid.0");
  Cmdr m2(test::small_config(16, Mode::Only2D));
  const StepResult r2 = m2.train_step(rgb, Tensor(), Tensor());  // no geometry needed
  CHECK(std::isfinite(r2.loss[kDec2D]));
  CHECK(std::isnan(r2.loss[kDec3D]));
  CHECK(std::isnan(r2.loss[kMap2Dto3D]));
  const CmdrOutputs o2 = m2.infer(rgb, Tensor(), Tensor());
  CHECK(o2.recon_2d.defined());
  CHECK(!o2.recon_3d.defined());
  CHECK(!o2.fusion.a_map.defined());
  CHECK(o2.fusion.image_score > 0.0f);
  CHECK(dump_tensors(o2).size() == 6);  // recon_2d, d_rec2d, fused, pixel, aupro, score

  Cmdr m3(test::small_config(16, Mode::Only3D));
  const StepResult r3 = m3.train_step(Tensor(), xyz, valid);
  CHECK(std::isfinite(r3.loss[kDec3D]));
  CHECK(std::isnan(r3.loss[kDec2D]));
  const CmdrOutputs o3 = m3.infer(Tensor(), xyz, valid);
  CHECK(o3.recon_3d.defined());
  CHECK(!o3.recon_2d.defined());
  // Masked: the 3d map is 0 wherever the sample has no geometry before smoothing.
  const std::vector<float> v = valid.to_vector(), d = o3.fusion.d_rec3d.to_vector();
  bool masked = true;
  for (std::size_t i = 0; i < v.size(); ++i) masked &= v[i] != 0.0f || d[i] == 0.0f;
  CHECK(masked);
  CHECK_THROWS_AS(m3.train_step(Tensor(), xyz, Tensor()), Error);  // 3d needs the mask
}
