// SPEC 7 fusion against tools/golden/cmdr_nets.py (fusion.safetensors): e(), box_k, and every
// intermediate of modes 2d3d, 2d, 3d, map, rec on random error maps with invalid positions.
#include <doctest/doctest.h>

#include "cmdr_fixture.hpp"
#include "engine/error.hpp"
#include "models/fusion.hpp"

using namespace cmdr;
using namespace cmdr::models;
using cmdr::test::rel_err;

namespace {
// Plain float32 code on both sides; differences are summation order only.
constexpr double kTol = 1e-5;
}  // namespace

TEST_CASE("fusion: e() and box_k match PyTorch") {
  st::File f(test::model_fixture("fusion.safetensors"));
  const Tensor e = error_map(f.get("e.a"), f.get("e.b"), 16);
  const double err = rel_err(e, f.get("e.out"));
  MESSAGE("e() rel err ", err);
  CHECK(err < kTol);
  const Tensor x = f.get("box.x");
  for (int k : {3, 5, 7}) {
    const double eb = rel_err(box_filter(x, k), f.get("box." + std::to_string(k)));
    MESSAGE("box_", k, " rel err ", eb);
    CHECK(eb < kTol);
  }
  CHECK_THROWS_AS(box_filter(x, 4), Error);
  CHECK_THROWS_AS(error_map(f.get("e.a"), f.get("e.b"), 15), Error);
}

TEST_CASE("fusion: every mode's intermediates match PyTorch") {
  st::File f(test::model_fixture("fusion.safetensors"));
  FusionInputs in;
  in.d_map2d = f.get("d_map2d");
  in.d_map3d = f.get("d_map3d");
  in.d_rec2d = f.get("d_rec2d");
  in.d_rec3d = f.get("d_rec3d");
  in.valid = f.get("valid");
  for (const char* name : {"2d3d", "2d", "3d", "map", "rec"}) {
    CAPTURE(name);
    const FusionResult r = fuse(in, parse_mode(name));
    CHECK(r.warning.empty());
    const std::string p = std::string(name) + ".";
    const std::pair<const char*, const Tensor*> maps[] = {
        {"d_map2d", &r.d_map2d}, {"d_map3d", &r.d_map3d},     {"d_rec2d", &r.d_rec2d},
        {"d_rec3d", &r.d_rec3d}, {"a_map", &r.a_map},         {"a_rec", &r.a_rec},
        {"fused", &r.fused},     {"pixel_map", &r.pixel_map}, {"aupro_map", &r.aupro_map}};
    int compared = 0;
    for (const auto& [key, t] : maps) {
      const bool in_fixture = f.has(p + key);
      CHECK_MESSAGE(in_fixture == t->defined(), std::string(key), " defined mismatch");
      if (!in_fixture || !t->defined()) continue;
      const double err = rel_err(*t, f.get(p + key));
      MESSAGE(std::string(name), " ", std::string(key), " rel err ", err);
      CHECK(err < kTol);
      ++compared;
    }
    CHECK(compared >= 4);
    const float ref = f.get(p + "image_score").item();
    CHECK(std::abs(r.image_score - ref) <= kTol * std::abs(ref));
  }
}

TEST_CASE("fusion: no valid position falls back to 2d with a warning") {
  st::File f(test::model_fixture("fusion.safetensors"));
  FusionInputs in;
  in.d_map2d = f.get("d_map2d");
  in.d_map3d = f.get("d_map3d");
  in.d_rec2d = f.get("d_rec2d");
  in.d_rec3d = f.get("d_rec3d");
  in.valid = Tensor::zeros({16, 16});
  const FusionResult r = fuse(in, Mode::Fused2D3D);
  CHECK(r.mode_used == Mode::Only2D);
  CHECK(!r.warning.empty());
  // The 2d fixture was made with every position valid, as the fallback must use.
  CHECK(rel_err(r.fused, f.get("2d.fused")) < kTol);
  CHECK(std::abs(r.image_score - f.get("2d.image_score").item()) < 1e-4f);
  // Mode 3d has nothing to fall back to: zero map, score 0, warning.
  const FusionResult r3 = fuse(in, Mode::Only3D);
  CHECK(!r3.warning.empty());
  CHECK(r3.image_score == 0.0f);
  bool all_zero = true;
  for (float x : r3.fused.to_vector()) all_zero &= (x == 0.0f);
  CHECK(all_zero);
  // Missing inputs and bad modes are errors.
  FusionInputs missing = in;
  missing.d_map3d = Tensor();
  missing.valid = Tensor::ones({16, 16});
  CHECK_THROWS_AS(fuse(missing, Mode::Fused2D3D), Error);
  CHECK_THROWS_AS(parse_mode("both"), Error);
}
