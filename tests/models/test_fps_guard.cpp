#include <doctest/doctest.h>

#include "engine/error.hpp"
#include "models/point_mae.hpp"

using namespace cmdr;

TEST_CASE("fps refuses more centres than points instead of repeating index 0") {
  Tensor pts = Tensor::zeros({5, 3});
  for (int64_t i = 0; i < 5; ++i) pts.at({i, 0}) = static_cast<float>(i);
  CHECK(models::farthest_point_sample(pts, 5).size() == 5);
  CHECK_THROWS_WITH_AS(models::farthest_point_sample(pts, 6),
                       doctest::Contains("6 centres requested from only 5 points"), Error);
}
