// Gradient paths of the CMDR-IAD training losses checked by central finite differences:
// the masked cosine loss (SPEC 6) against a float64 re-implementation, and each of the four
// networks end to end (small widths, train mode, dropout off) by directional derivatives.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "cmdr_fixture.hpp"

using namespace cmdr;
using namespace cmdr::models;

namespace {

// SPEC 6 loss in double: 1 − mean over valid p of <a_p/max(‖a_p‖,1e-6), b_p/max(‖b_p‖,1e-6)>.
double loss_f64(const std::vector<double>& a, const std::vector<double>& b,
                const std::vector<float>& valid, int64_t c) {
  const int64_t l = static_cast<int64_t>(valid.size());
  double s = 0.0;
  int64_t n = 0;
  for (int64_t p = 0; p < l; ++p) {
    if (valid[p] == 0.0f) continue;
    double na = 0.0, nb = 0.0, dot = 0.0;
    for (int64_t i = 0; i < c; ++i) {
      na += a[p * c + i] * a[p * c + i];
      nb += b[p * c + i] * b[p * c + i];
      dot += a[p * c + i] * b[p * c + i];
    }
    s += dot / (std::max(std::sqrt(na), 1e-6) * std::max(std::sqrt(nb), 1e-6));
    ++n;
  }
  return 1.0 - s / static_cast<double>(n);
}

}  // namespace

TEST_CASE("masked cosine loss: value and gradients vs float64 finite differences") {
  const int64_t l = 10, c = 7;
  Rng rng(11);
  Tensor a = Tensor::empty({l, c}), b = Tensor::empty({l, c});
  rng.fill_normal(a, 0.0f, 1.0f);
  rng.fill_normal(b, 0.0f, 1.0f);
  for (int64_t i = 0; i < c; ++i) a.data()[2 * c + i] *= 1e-8f;  // ‖a_2‖ < 1e-6: the clamp
  const std::vector<float> valid = {1, 1, 1, 0, 1, 0, 1, 1, 0, 1};
  const Tensor vt = Tensor::from_vector({l}, valid);
  ag::Var av(a, true), bv(b, true);
  ag::Var loss = masked_cosine_loss(av, bv, vt);
  ag::backward(loss);

  std::vector<double> a64(a.data(), a.data() + l * c), b64(b.data(), b.data() + l * c);
  const double ref = loss_f64(a64, b64, valid, c);
  CHECK(std::abs(loss.value().item() - ref) < 1e-6);
  const double h = 1e-9;  // tiny: the row below the clamp must stay below it
  for (int which = 0; which < 2; ++which) {
    std::vector<double>& x = which == 0 ? a64 : b64;
    const Tensor& g = which == 0 ? av.grad() : bv.grad();
    REQUIRE(g.defined());
    double worst = 0.0;
    for (int64_t i = 0; i < l * c; ++i) {
      const double keep = x[i];
      x[i] = keep + h;
      const double up = loss_f64(a64, b64, valid, c);
      x[i] = keep - h;
      const double down = loss_f64(a64, b64, valid, c);
      x[i] = keep;
      const double fd = (up - down) / (2 * h);
      const double err = std::abs(g.data()[i] - fd) / (std::abs(fd) + 1e-3);
      worst = std::max(worst, err);
      CHECK_MESSAGE(err < 1e-4, std::string(which ? "b" : "a"), "[", i, "] ", g.data()[i],
                    " vs fd ", fd);
      if (valid[i / c] == 0.0f) CHECK(g.data()[i] == 0.0f);  // invalid rows get nothing
    }
    MESSAGE(std::string(which ? "db" : "da"), " worst rel err ", worst);
  }
  // No valid position: NaN (the training step treats it as a non-finite loss).
  CHECK(std::isnan(masked_cosine_loss(av, bv, Tensor::zeros({l})).value().item()));
}

TEST_CASE("cmdr networks: end-to-end gradients vs finite differences (small widths)") {
  // S = 8 (L = 64); Decoder2D windows of 24 tokens, so the last window (16 tokens) is padded.
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
  cfg.p_drop = 0.0f;
  cfg.seed = 5;
  Cmdr model(cfg);
  Rng rng(21);
  Tensor rgb = Tensor::empty({64, 12}), xyz = Tensor::empty({64, 10});
  rng.fill_normal(rgb, 0.0f, 1.0f);
  rng.fill_normal(xyz, 0.0f, 1.0f);
  Tensor valid = Tensor::ones({64});
  for (int64_t p : {3, 17, 40, 41}) valid.data()[p] = 0.0f;
  const ag::Var rgb_v(rgb), xyz_v(xyz);

  for (int n = 0; n < 4; ++n) {
    CAPTURE(kNetNames[n]);
    ag::Module& net = *model.net(static_cast<Net>(n));
    net.train();
    auto eval_loss = [&]() {
      ag::Var y, t;
      switch (n) {
        case kMap2Dto3D:
          y = model.map2Dto3D->forward(rgb_v), t = xyz_v;
          break;
        case kMap3Dto2D:
          y = model.map3Dto2D->forward(xyz_v), t = rgb_v;
          break;
        case kDec2D:
          y = model.dec2d->forward(rgb_v), t = rgb_v;
          break;
        default:
          y = model.dec3d->forward(xyz_v), t = xyz_v;
          break;
      }
      return masked_cosine_loss(y, t, valid);
    };
    net.zero_grad();
    ag::backward(eval_loss());
    int checked = 0;
    for (auto& [name, p] : net.named_parameters()) {
      const Tensor g = p->grad().contiguous();
      REQUIRE_MESSAGE(g.defined(), name);
      // Direction: half the normalised gradient, half a random unit vector, so the
      // directional derivative is well above the float32 noise of the finite difference.
      const int64_t m = g.numel();
      Tensor dir = Tensor::empty({m});
      rng.fill_normal(dir, 0.0f, 1.0f);
      double gn = 0.0, rn = 0.0;
      for (int64_t i = 0; i < m; ++i) {
        gn += static_cast<double>(g.data()[i]) * g.data()[i];
        rn += static_cast<double>(dir.data()[i]) * dir.data()[i];
      }
      gn = std::sqrt(gn);
      rn = std::sqrt(rn);
      double analytic = 0.0;
      for (int64_t i = 0; i < m; ++i) {
        const double d = 0.5 * (gn > 0 ? g.data()[i] / gn : 0.0) + 0.5 * dir.data()[i] / rn;
        dir.data()[i] = static_cast<float>(d);
        analytic += g.data()[i] * static_cast<double>(dir.data()[i]);
      }
      Tensor w = p->value();  // shares storage with the parameter
      const Tensor w0 = w.clone();
      const float h = 1e-2f;
      auto shifted = [&](float s) {
        for (int64_t i = 0; i < m; ++i) w.data()[i] = w0.data()[i] + s * dir.data()[i];
        ag::NoGrad ng;
        return static_cast<double>(eval_loss().value().item());
      };
      const double fd = (shifted(h) - shifted(-h)) / (2.0 * h);
      w.copy_(w0);
      const double err = std::abs(fd - analytic);
      CHECK_MESSAGE(err <= 2e-2 * std::abs(analytic) + 5e-5, std::string(kNetNames[n]), ".", name,
                    " analytic ", analytic, " fd ", fd);
      ++checked;
    }
    CHECK(checked > 5);
  }
}
