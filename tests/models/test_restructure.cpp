// SPEC 10 restructurings vs the literal networks (forward AND backward) on random data at
// S = 16 with reduced widths: the first Linears of map2Dto3D / Decoder2D on the tokens
// (U after), map3Dto2D's on the group features (P after), Decoder3D's Linear over positions
// as (W·P)·G, per-position layers only at valid rows; plus whole training steps (dropout
// on: the same masks are drawn) and inference (fused maps, score, all-rows outputs).
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cmdr_fixture.hpp"
#include "engine/error.hpp"
#include "models/cmdr.hpp"
#include "models/feature_assembly.hpp"

using namespace cmdr;
using namespace cmdr::models;
using cmdr::test::rel_err;

namespace {

constexpr int64_t kSide = 16, kGrid = 4, kGroups = 20;

// Random compact features: tokens + the real bilinear U; group features + a random P with
// ~30 % empty rows (invalid positions, as where no point falls).
CompactPatches random_compact(uint64_t seed) {
  Rng rng(seed);
  const int64_t L = kSide * kSide;
  Tensor tokens = Tensor::empty({kGrid * kGrid, 32}), groups = Tensor::empty({kGroups, 48});
  rng.fill_normal(tokens, 0.0f, 1.0f);
  rng.fill_normal(groups, 0.0f, 1.0f);
  auto p = std::make_shared<CsrMatrix>();
  p->rows = L;
  p->cols = kGroups;
  p->row_ptr.push_back(0);
  for (int64_t r = 0; r < L; ++r) {
    if (rng.uniform01() >= 0.3) {
      for (int64_t g = 0; g < kGroups; ++g) {
        if (rng.uniform01() < 0.2) {
          p->col.push_back(static_cast<int32_t>(g));
          p->val.push_back(static_cast<float>(rng.uniform01() * 0.3));
        }
      }
    }
    p->row_ptr.push_back(p->nnz());
  }
  CompactPatches c;
  c.side = kSide;
  c.rgb_tokens = tokens;
  c.up = bilinear_operator_for(kGrid, kSide);
  c.group_features = groups;
  c.xyz_op = p;
  c.valid = Tensor::zeros({L});
  for (int64_t r = 0; r < L; ++r) c.valid.data()[r] = p->row_ptr[r + 1] > p->row_ptr[r] ? 1.f : 0.f;
  return c;
}

std::map<std::string, Tensor> grads_of(ag::Module& m) {
  std::map<std::string, Tensor> g;
  for (auto& [k, p] : m.named_parameters()) {
    if (p->grad().defined()) g[k] = p->grad().clone();
  }
  m.zero_grad();
  return g;
}

double max_abs(const Tensor& t) {
  double m = 0.0;
  for (float v : t.to_vector()) m = std::max(m, static_cast<double>(std::abs(v)));
  return m;
}

// The biases of the transposed convolutions feeding a BatchNorm have an exact gradient of 0
// (BatchNorm subtracts the channel mean): both sides hold rounding noise, checked against
// the network's gradient scale instead (as in test_cmdr_nets.cpp).
bool bias_before_batchnorm(const std::string& k) {
  for (const char* b : {"conv_decoder.0.bias", "conv_decoder.3.bias", "conv_decoder.6.bias",
                        "decoder.0.bias", "decoder.3.bias", "decoder.6.bias", "decoder.9.bias"})
    if (k == b) return true;
  return false;
}

void check_same_grads(const std::map<std::string, Tensor>& lit,
                      const std::map<std::string, Tensor>& res, const std::string& net) {
  REQUIRE(lit.size() == res.size());
  double scale = 0.0;
  for (const auto& [k, g] : lit) scale = std::max(scale, max_abs(g));
  for (const auto& [k, g] : lit) {
    REQUIRE_MESSAGE(res.count(k), net, " ", k);
    if (bias_before_batchnorm(k)) {
      CHECK_MESSAGE(max_abs(res.at(k)) <= 1e-5 * scale, net, ".", k);
      continue;
    }
    const double e = rel_err(res.at(k), g);
    CHECK_MESSAGE(e <= 1e-4, net, ".", k, " gradient rel err ", e);
  }
}

}  // namespace

TEST_CASE("restructure: each network's loss and gradients equal the literal ones") {
  const CompactPatches x = random_compact(3);
  const std::vector<int64_t> rows = x.valid_rows();
  REQUIRE(rows.size() > 100);
  REQUIRE(rows.size() < 256);
  const Tensor rgb = x.rgb_rows(), xyz = x.xyz_rows();  // dense [S², C]
  const Tensor rgb_sel = x.rgb_rows(rows), xyz_sel = x.xyz_rows(rows);
  CHECK(rel_err(rgb_sel, ops::index_select_forward(rgb, rows)) == 0.0);
  const Tensor ones = Tensor::ones({static_cast<int64_t>(rows.size())});
  CmdrConfig cfg = test::small_config(kSide);
  cfg.p_drop = 0.0f;
  Cmdr m(cfg);
  const ag::Var tokens(x.rgb_tokens), groups(x.group_features);
  auto u_sel = std::make_shared<const CsrMatrix>(x.up->select_rows(rows));
  auto p_sel = std::make_shared<const CsrMatrix>(x.xyz_op->select_rows(rows));
  auto run = [&](ag::Module& net, const ag::Var& out, const Tensor& target, const Tensor& mask) {
    ag::Var loss = masked_cosine_loss(out, ag::Var(target), mask);
    ag::backward(loss);
    return std::make_pair(loss.value().item(), grads_of(net));
  };
  {  // map2Dto3D(rgb) vs xyz at the valid rows
    const auto lit = run(*m.map2Dto3D, m.map2Dto3D->forward(ag::Var(rgb_sel)), xyz_sel, ones);
    const auto res = run(*m.map2Dto3D, m.map2Dto3D->forward_sparse(u_sel, tokens), xyz_sel, ones);
    CHECK(std::abs(lit.first - res.first) <= 1e-5 * std::abs(lit.first));
    check_same_grads(lit.second, res.second, "map2Dto3D");
    CHECK(lit.second.count("input.weight"));
  }
  {  // map3Dto2D(xyz) vs rgb
    const auto lit = run(*m.map3Dto2D, m.map3Dto2D->forward(ag::Var(xyz_sel)), rgb_sel, ones);
    const auto res = run(*m.map3Dto2D, m.map3Dto2D->forward_sparse(p_sel, groups), rgb_sel, ones);
    CHECK(std::abs(lit.first - res.first) <= 1e-5 * std::abs(lit.first));
    check_same_grads(lit.second, res.second, "map3Dto2D");
  }
  {  // Dec2D: all rows through attention, `reconstruct` at the valid rows
    const auto lit = run(*m.dec2d, m.dec2d->forward_rows(ag::Var(rgb), rows), rgb_sel, ones);
    const auto res = run(*m.dec2d, m.dec2d->forward_sparse(x.up, tokens, rows), rgb_sel, ones);
    CHECK(std::abs(lit.first - res.first) <= 1e-5 * std::abs(lit.first));
    check_same_grads(lit.second, res.second, "Dec2D");
  }
  {  // Dec3D: literal loss masked over all rows; restructured reads the valid rows only
    const auto lit = run(*m.dec3d, m.dec3d->forward(ag::Var(xyz)), xyz, x.valid);
    const auto res = run(
        *m.dec3d, ag::index_select(m.dec3d->forward_sparse(x.xyz_op, groups), rows), xyz_sel, ones);
    CHECK(std::abs(lit.first - res.first) <= 1e-5 * std::abs(lit.first));
    check_same_grads(lit.second, res.second, "Dec3D");
    CHECK(lit.second.count("projection.0.weight"));
    CHECK(lit.second.count("projection.0.bias"));
  }
}

TEST_CASE("restructure: training steps (dropout on) give the literal losses") {
  const CompactPatches x0 = random_compact(5), x1 = random_compact(6);
  CmdrConfig cfg = test::small_config(kSide);  // dropout 0.1: the same masks on both paths
  Cmdr lit(cfg), res(cfg);
  for (const CompactPatches* x : {&x0, &x1, &x0}) {
    const StepResult a = lit.train_step(x->rgb_rows(), x->xyz_rows(), x->valid);
    const StepResult b = res.train_step(*x);
    for (int n = 0; n < 4; ++n) {
      CHECK(std::isfinite(a.loss[n]));
      CHECK_MESSAGE(std::abs(a.loss[n] - b.loss[n]) <= 1e-5 * std::abs(a.loss[n]), kNetNames[n],
                    ": ", a.loss[n], " vs ", b.loss[n]);
      CHECK(std::abs(a.grad_norm[n] - b.grad_norm[n]) <= 1e-4 * a.grad_norm[n]);
    }
  }
  // Mode 2d: every position counts.
  Cmdr l2(test::small_config(kSide, Mode::Only2D)), r2(test::small_config(kSide, Mode::Only2D));
  const StepResult a = l2.train_step(x0.rgb_rows(), Tensor(), Tensor());
  const StepResult b = r2.train_step(x0);
  CHECK(std::abs(a.loss[kDec2D] - b.loss[kDec2D]) <= 1e-5 * std::abs(a.loss[kDec2D]));
}

TEST_CASE("restructure: inference at valid rows gives the literal maps and score") {
  const CompactPatches x = random_compact(8);
  Cmdr m(test::small_config(kSide));
  const Tensor rgb = x.rgb_rows(), xyz = x.xyz_rows();
  for (Mode mode : {Mode::Fused2D3D, Mode::Only3D, Mode::MapOnly, Mode::RecOnly}) {
    const CmdrOutputs lit = m.infer(rgb, xyz, x.valid, mode, false);
    const CmdrOutputs fast = m.infer(x, mode, false);
    const CmdrOutputs all = m.infer(x, mode, true);
    CHECK(rel_err(fast.fusion.fused, lit.fusion.fused) <= 1e-4);
    CHECK(rel_err(fast.fusion.pixel_map, lit.fusion.pixel_map) <= 1e-4);
    CHECK(std::abs(fast.fusion.image_score - lit.fusion.image_score) <=
          1e-4 * std::abs(lit.fusion.image_score));
    CHECK(rel_err(all.fusion.fused, lit.fusion.fused) <= 1e-4);
    // all_rows (the `score --dump` path): every output row as the literal computation.
    for (auto [a, b] : {std::pair{&all.mapped_2d, &lit.mapped_2d},
                        {&all.mapped_3d, &lit.mapped_3d},
                        {&all.recon_2d, &lit.recon_2d},
                        {&all.recon_3d, &lit.recon_3d}}) {
      if (b->defined()) CHECK(rel_err(*a, *b) <= 1e-4);
    }
  }
  CHECK_THROWS_AS(Cmdr(test::small_config(24)).infer(x, Mode::Fused2D3D), Error);
}

TEST_CASE(
    "restructure: inference without kept outputs gives the same maps and score, bit for bit") {
  const CompactPatches x = random_compact(8);
  Cmdr m(test::small_config(kSide));
  auto same_bits = [](const Tensor& a, const Tensor& b) {
    if (a.defined() != b.defined()) return false;
    if (!a.defined()) return true;
    const std::vector<float> va = a.to_vector(), vb = b.to_vector();
    return va.size() == vb.size() &&
           std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
  };
  for (Mode mode : {Mode::Fused2D3D, Mode::Only2D, Mode::Only3D, Mode::MapOnly, Mode::RecOnly}) {
    CAPTURE(mode_name(mode));
    const CmdrOutputs kept = m.infer(x, mode, false, true);
    const CmdrOutputs lean = m.infer(x, mode, false, false);
    CHECK(!lean.mapped_2d.defined());
    CHECK(!lean.mapped_3d.defined());
    CHECK(!lean.recon_2d.defined());
    CHECK(!lean.recon_3d.defined());
    const FusionResult &a = kept.fusion, &b = lean.fusion;
    CHECK(same_bits(a.d_map2d, b.d_map2d));
    CHECK(same_bits(a.d_map3d, b.d_map3d));
    CHECK(same_bits(a.d_rec2d, b.d_rec2d));
    CHECK(same_bits(a.d_rec3d, b.d_rec3d));
    CHECK(same_bits(a.pixel_map, b.pixel_map));
    CHECK(std::bit_cast<uint32_t>(a.image_score) == std::bit_cast<uint32_t>(b.image_score));
  }
  // error_map_rows against error_map on the scattered rows (zero vectors elsewhere).
  Rng rng(5);
  Tensor a_rows = Tensor::empty({3, 4}), b = Tensor::empty({9, 4});
  rng.fill_normal(a_rows, 0, 1);
  rng.fill_normal(b, 0, 1);
  const std::vector<int64_t> rows = {1, 4, 8};
  Tensor full = Tensor::zeros({9, 4});
  for (int k = 0; k < 3; ++k) full.select(0, rows[k]).copy_(a_rows.select(0, k));
  CHECK(same_bits(error_map_rows(a_rows, rows, b, 3), error_map(full, b, 3)));
  CHECK_THROWS_AS(error_map_rows(a_rows, {1, 4}, b, 3), Error);
  CHECK_THROWS_AS(error_map_rows(a_rows, {1, 4, 9}, b, 3), Error);
}
