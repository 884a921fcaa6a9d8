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

namespace {

// Directional finite differences through each network (train mode, dropout off). per_tensor:
// one direction per parameter tensor (localises a wrong gradient; ~4 forwards per tensor,
// slow); otherwise one joint direction over all of the network's parameters.
void check_networks_fd(bool per_tensor) {
  // S = 16 (L = 256, so Decoder3D's LayerNorm spans L/32 = 8 values, not a degenerate 2);
  // Decoder2D windows of 24 tokens, so the last window (16 tokens) is padded.
  CmdrConfig cfg = test::small_config(16);
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
  Tensor rgb = Tensor::empty({256, 12}), xyz = Tensor::empty({256, 10});
  rng.fill_normal(rgb, 0.0f, 1.0f);
  rng.fill_normal(xyz, 0.0f, 1.0f);
  Tensor valid = Tensor::ones({256});
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
    auto params = net.named_parameters();
    std::vector<std::vector<std::size_t>> groups;
    for (std::size_t k = 0; k < params.size(); ++k) {
      if (per_tensor || groups.empty()) groups.emplace_back();
      groups.back().push_back(k);
    }
    int checked = 0;
    double worst = 0.0;
    for (const auto& group : groups) {
      // Direction: half the normalised gradient, half a random unit vector, so the
      // directional derivative is well above the float32 noise of the finite difference.
      std::vector<Tensor> dirs, w, w0;
      double gn = 0.0, rn = 0.0;
      for (std::size_t k : group) {
        const Tensor g = params[k].second->grad().contiguous();
        REQUIRE_MESSAGE(g.defined(), params[k].first);
        Tensor d = Tensor::empty(g.shape());
        rng.fill_normal(d, 0.0f, 1.0f);
        for (int64_t i = 0; i < g.numel(); ++i) {
          gn += static_cast<double>(g.data()[i]) * g.data()[i];
          rn += static_cast<double>(d.data()[i]) * d.data()[i];
        }
        dirs.push_back(d);
        w.push_back(params[k].second->value());  // shares storage with the parameter
        w0.push_back(w.back().clone());
      }
      gn = std::sqrt(gn);
      rn = std::sqrt(rn);
      double analytic = 0.0;
      for (std::size_t q = 0; q < group.size(); ++q) {
        const Tensor g = params[group[q]].second->grad().contiguous();
        for (int64_t i = 0; i < g.numel(); ++i) {
          const double d = 0.5 * (gn > 0 ? g.data()[i] / gn : 0.0) + 0.5 * dirs[q].data()[i] / rn;
          dirs[q].data()[i] = static_cast<float>(d);
          analytic += g.data()[i] * static_cast<double>(dirs[q].data()[i]);
        }
      }
      const float h = 1e-2f;
      auto shifted = [&](float s) {
        for (std::size_t q = 0; q < group.size(); ++q) {
          for (int64_t i = 0; i < w[q].numel(); ++i) {
            w[q].data()[i] = w0[q].data()[i] + s * dirs[q].data()[i];
          }
        }
        ag::NoGrad ng;
        return static_cast<double>(eval_loss().value().item());
      };
      // Central differences at h and h/2, Richardson-extrapolated (error O(h⁴)): float32
      // noise stays ~1e-5 while the LayerNorms' curvature does not bias the estimate.
      const double fd1 = (shifted(h) - shifted(-h)) / (2.0 * h);
      const double fd2 = (shifted(h / 2) - shifted(-h / 2)) / static_cast<double>(h);
      const double fd = (4.0 * fd2 - fd1) / 3.0;
      for (std::size_t q = 0; q < group.size(); ++q) w[q].copy_(w0[q]);
      const double err = std::abs(fd - analytic);
      worst = std::max(worst, err / (std::abs(analytic) + 1e-2));
      CHECK_MESSAGE(err <= 1e-2 * std::abs(analytic) + 1e-4, std::string(kNetNames[n]), ".",
                    params[group.front()].first, " analytic ", analytic, " fd ", fd);
      ++checked;
    }
    CHECK(checked == static_cast<int>(groups.size()));
    MESSAGE(std::string(kNetNames[n]), ": ", checked,
            " direction(s), worst |fd − analytic|/(|analytic| + 0.01) ", worst);
  }
}

}  // namespace

TEST_CASE("cmdr networks: end-to-end gradients vs finite differences, joint direction") {
  check_networks_fd(/*per_tensor=*/false);
}

TEST_SUITE("slow") {
  TEST_CASE("cmdr networks: end-to-end gradients vs finite differences, every tensor") {
    check_networks_fd(/*per_tensor=*/true);
  }
}
