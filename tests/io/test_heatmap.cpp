// Heatmap overlays (io/heatmap.hpp): colour map ends, upscaling to the minimum side, gt
// contour in white, the verdict text drawn in its colour.
#include <doctest/doctest.h>

#include "engine/error.hpp"
#include "io/heatmap.hpp"

using namespace cmdr;

TEST_CASE("heatmap: colormap ends are blue and red") {
  uint8_t c[3];
  io::colormap(0.0f, c);
  CHECK(c[0] == 0);
  CHECK(c[2] > 100);
  io::colormap(1.0f, c);
  CHECK(c[0] > 100);
  CHECK(c[2] == 0);
  io::colormap(2.0f, c);  // clamped
  CHECK(c[0] > 100);
}

TEST_CASE("heatmap: overlay size, gt contour and verdict text") {
  io::Image8 rgb(40, 30, 3, 100);  // non-square: padded like SPEC 3.1
  Tensor map = Tensor::zeros({16, 16});
  Tensor gt = Tensor::zeros({16, 16});
  for (int y = 10; y < 14; ++y)
    for (int x = 10; x < 14; ++x) gt.data()[y * 16 + x] = 1.0f;
  const io::Image8 out = io::heatmap_overlay(rgb, map, gt, "S 1.0", "NOK", true);
  CHECK(out.width == 256);  // 16 × 16 (integer factor to reach 256)
  CHECK(out.height == 256);
  // Contour pixel (10, 10) -> upscaled block at (160, 160) is white; interior (11, 11) is not.
  CHECK(out.at(160, 160, 0) == 255);
  CHECK(out.at(160, 160, 1) == 255);
  CHECK(out.at(11 * 16 + 8, 11 * 16 + 8, 1) != 255);
  // The NOK line (second line, red) has red pixels in the corner.
  int red = 0;
  for (int y = 18; y < 40; ++y)
    for (int x = 0; x < 60; ++x) red += out.at(y, x, 0) == 255 && out.at(y, x, 1) == 40;
  CHECK(red > 10);
  CHECK_THROWS_AS(io::heatmap_overlay(rgb, Tensor::zeros({4, 5}), Tensor(), "", "", false), Error);
}
