#pragma once
// Helpers shared by tests/models/test_cmdr_*.cpp: fixture loading, the reduced widths used
// by tools/golden/cmdr_nets.py, and a norm-relative error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "autograd/modules.hpp"
#include "engine/tensor.hpp"
#include "io/safetensors.hpp"
#include "models/cmdr.hpp"

namespace cmdr::test {

inline std::string model_fixture(const std::string& name) {
  return std::string(CMDR_FIXTURES) + "/models/" + name;
}

// max|a − b| / max(max|b|, 1e-12): the error relative to the reference's scale.
inline double rel_err(const Tensor& a, const Tensor& b) {
  REQUIRE_MESSAGE(a.shape() == b.shape(), "shape ", a.str(), " vs ", b.str());
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(x[i]) - y[i]));
    den = std::max(den, std::abs(static_cast<double>(y[i])));
  }
  if (!std::isfinite(num)) return INFINITY;
  return num / std::max(den, 1e-12);
}

// The widths of tools/golden/cmdr_nets.py (SPEC 5 structure, reduced channels).
inline models::CmdrConfig small_config(int64_t side, models::Mode mode = models::Mode::Fused2D3D) {
  models::CmdrConfig c;
  c.mode = mode;
  c.side = side;
  c.rgb_dim = 32;
  c.xyz_dim = 48;
  c.dec2d.dim = 32;
  c.dec2d.hidden = 16;
  c.dec2d.heads = 8;
  c.dec2d.window = 128;
  c.dec2d.mlp_hidden = 32;
  c.dec2d.conv1 = 12;
  c.dec2d.conv2 = 8;
  c.dec2d.rec_hidden = 64;
  c.dec3d.length = side * side;
  c.dec3d.channels = 48;
  c.dec3d.widths = {32, 24, 16, 8};
  c.dec3d.att_hidden = 6;
  c.seed = 7;
  return c;
}

// Tensors of `f` whose names start with `prefix`, the prefix removed.
inline ag::StateDict load_prefixed(const st::File& f, const std::string& prefix) {
  ag::StateDict sd;
  for (const auto& info : f.tensors()) {
    if (info.name.rfind(prefix, 0) == 0) {
      sd[info.name.substr(prefix.size())] = f.get(info.name, /*convert=*/true);
    }
  }
  return sd;
}

}  // namespace cmdr::test
