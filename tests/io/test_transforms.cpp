#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/error.hpp"
#include "io/image.hpp"
#include "io/safetensors.hpp"
#include "io/transforms.hpp"

using namespace cmdr;
using io::Image8;

namespace {
const std::string kDir = std::string(CMDR_FIXTURES) + "/transforms/";
}

// Fixtures: tools/golden/transforms.py (Pillow 9.4). Tolerance: max abs difference ≤ 1 on
// 8-bit output (the 1/255); the implementation replicates Pillow's fixed point, so
// the measured difference is reported and expected to be 0.
TEST_CASE("transforms: Pillow golden (BICUBIC antialiased, NEAREST, edge pad)") {
  std::ifstream f(kDir + "cases.json");
  REQUIRE(f);
  const nlohmann::json j = nlohmann::json::parse(f);
  int n = 0;
  for (const auto& c : j["cases"]) {
    const std::string op = c["op"];
    const Image8 in = io::read_png(kDir + c["input"].get<std::string>());
    const Image8 exp = io::read_png(kDir + c["expected"].get<std::string>());
    const int64_t ow = c["out_w"], oh = c["out_h"];
    const Image8 src = op.rfind("pad_", 0) == 0 ? io::pad_square_edge(in) : in;
    const Image8 got = op.find("bicubic") != std::string::npos ? io::resize_bicubic(src, ow, oh)
                                                               : io::resize_nearest(src, ow, oh);
    REQUIRE(got.width == exp.width);
    REQUIRE(got.height == exp.height);
    REQUIRE(got.channels == exp.channels);
    int maxdiff = 0;
    int64_t ndiff = 0;
    for (size_t i = 0; i < got.data.size(); ++i) {
      const int d = std::abs(int(got.data[i]) - int(exp.data[i]));
      maxdiff = std::max(maxdiff, d);
      ndiff += d != 0;
    }
    MESSAGE(c["expected"].get<std::string>(), ": ", in.width, "x", in.height, " -> ", ow, "x", oh,
            " max |diff| = ", maxdiff, "/255, ", ndiff, " values differ");
    CHECK(maxdiff <= 1);
    if (op.find("nearest") != std::string::npos) CHECK(maxdiff == 0);  // a selection: exact
    ++n;
  }
  CHECK(n >= 40);
}

TEST_CASE("transforms: torch nearest indices and ImageNet normalisation") {
  st::File f(kDir + "nearest_norm.safetensors");
  int n = 0;
  for (const auto& t : f.tensors()) {
    if (t.name.rfind("nearest_", 0) != 0) continue;
    int64_t in = 0, out = 0;
    REQUIRE(std::sscanf(t.name.c_str(), "nearest_%ld_%ld", &in, &out) == 2);
    CHECK_MESSAGE(io::torch_nearest_indices(in, out) == f.get_i64(t.name), t.name);
    ++n;
  }
  CHECK(n >= 10);
  // norm_in is U8 24x20x3.
  const Tensor in = f.get("norm_in", true);
  Image8 img(in.size(1), in.size(0), 3);
  for (size_t i = 0; i < img.data.size(); ++i) img.data[i] = uint8_t(in.data()[i]);
  const Tensor got = io::to_normalized_tensor(img);
  const Tensor exp = f.get("norm_out", {3, 24, 20});
  REQUIRE(got.shape() == exp.shape());
  float maxdiff = 0;
  for (int64_t i = 0; i < got.numel(); ++i)
    maxdiff = std::max(maxdiff, std::abs(got.data()[i] - exp.data()[i]));
  CHECK(maxdiff == 0.0f);  // same float32 operations in the same order
}

TEST_CASE("transforms: edge pad puts floor(pad/2) left/top and replicates edges") {
  Image8 img(3, 1, 1);  // 3 wide, 1 high → 3x3, top 1 row, bottom 1 row
  img.data = {10, 20, 30};
  Image8 p = io::pad_square_edge(img);
  CHECK(p.width == 3);
  CHECK(p.height == 3);
  for (int y = 0; y < 3; ++y) CHECK(p.at(y, 2) == 30);
  Image8 tall(1, 4, 1);  // 1 wide, 4 high → 4x4: left 1, right 2
  tall.data = {1, 2, 3, 4};
  Image8 q = io::pad_square_edge(tall);
  REQUIRE(q.width == 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) CHECK(q.at(y, x) == y + 1);
}

TEST_CASE("transforms: cloud and gt transforms") {
  // A 5×4 cloud whose points encode their pixel: the resize must pick torch's indices.
  Tensor c = Tensor::empty({4, 5, 3});
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 5; ++x) {
      c.at({y, x, 0}) = float(x);
      c.at({y, x, 1}) = float(y);
      c.at({y, x, 2}) = 1.0f + float(y * 5 + x);
    }
  const Tensor r = io::cloud_transform(c, 7);
  REQUIRE(r.shape() == Shape{3, 7, 7});
  const auto ys = io::torch_nearest_indices(4, 7), xs = io::torch_nearest_indices(5, 7);
  for (int64_t y = 0; y < 7; ++y)
    for (int64_t x = 0; x < 7; ++x) {
      CHECK(r.at({0, y, x}) == float(xs[size_t(x)]));
      CHECK(r.at({1, y, x}) == float(ys[size_t(y)]));
    }
  CHECK_THROWS_AS(io::cloud_transform(Tensor::zeros({4, 4, 2}), 7), Error);

  Image8 gt(6, 6, 1, 0);
  gt.at(2, 3) = 255;
  gt.at(4, 4) = 127;  // not a defect (≤ half of full scale)
  gt.at(5, 5) = 128;
  const Tensor g = io::gt_transform(gt, 6);
  CHECK(g.at({2, 3}) == 1.0f);
  CHECK(g.at({4, 4}) == 0.0f);
  CHECK(g.at({5, 5}) == 1.0f);
  float sum = 0;
  for (float v : g.to_vector()) sum += v;
  CHECK(sum == 2.0f);
  CHECK_THROWS_AS(io::gt_transform(Image8(4, 4, 3), 6), Error);

  const Tensor t = io::rgb_transform(Image8(30, 20, 3, 255), 16);
  REQUIRE(t.shape() == Shape{3, 16, 16});
  CHECK(t.at({0, 3, 4}) == doctest::Approx((1.0f - 0.485f) / 0.229f));
}
