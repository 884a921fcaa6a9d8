#pragma once
// Test helpers for the pointwise op tests: fixture access, allclose with the worst element
// reported, exactly reproducible "pattern" tensors (same formula as tools/golden/
// ops_pointwise.py), and seeded random tensors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "io/safetensors.hpp"

namespace cmdr::test_pw {

// Concatenates streamable pieces (avoids GCC 12's false -Wrestrict on string operator+).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

inline std::string fixture(const std::string& name) {
  return std::string(CMDR_FIXTURES) + "/ops/" + name;
}

struct CloseStats {
  double max_abs = 0.0, max_rel = 0.0;
  bool ok = true;
};

// |a − e| <= atol + rtol·|e| elementwise (NaN never close). Reports the worst element.
inline CloseStats allclose(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                           const std::string& what) {
  CloseStats s;
  INFO(what);
  REQUIRE(actual.defined());
  REQUIRE(expected.defined());
  REQUIRE_MESSAGE(actual.shape() == expected.shape(), what, ": shape ", actual.str(), " vs ",
                  expected.str());
  const std::vector<float> a = actual.to_vector(), e = expected.to_vector();
  double worst = -1.0;
  std::size_t wi = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(static_cast<double>(a[i]) - e[i]);
    const bool bad = !(d <= atol + rtol * std::fabs(static_cast<double>(e[i])));
    if (std::isnan(d) && !(std::isnan(a[i]) && std::isnan(e[i]))) s.ok = false;
    if (!std::isnan(d)) {
      s.max_abs = std::max(s.max_abs, d);
      if (std::fabs(e[i]) > 1e-30) s.max_rel = std::max(s.max_rel, d / std::fabs(e[i]));
    }
    const double excess = std::isnan(d) ? 1e300 : d - atol - rtol * std::fabs(double(e[i]));
    if (bad && !(std::isnan(a[i]) && std::isnan(e[i]))) {
      s.ok = false;
      if (excess > worst) {
        worst = excess;
        wi = i;
      }
    }
  }
  CHECK_MESSAGE(s.ok, what, ": element ", wi, " actual ", (a.empty() ? 0.f : a[wi]), " expected ",
                (e.empty() ? 0.f : e[wi]), " (max abs err ", s.max_abs, ", max rel err ", s.max_rel,
                ")");
  return s;
}

inline bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

// ((i·mul) mod mod)/mod − 0.5 for flat index i (exact in float32).
inline Tensor pattern(const Shape& shape, int64_t mul = 7919, int64_t mod = 1000) {
  Tensor t = Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data()[i] = static_cast<float>((i * mul) % mod) / static_cast<float>(mod) - 0.5f;
  return t;
}

inline Tensor randn(const Shape& shape, uint64_t seed, float scale = 1.0f, float shift = 0.0f) {
  Rng rng(seed);
  Tensor t = Tensor::empty(shape);
  rng.fill_normal(t, shift, scale);
  return t;
}
inline Tensor randu(const Shape& shape, uint64_t seed, float lo, float hi) {
  Rng rng(seed);
  Tensor t = Tensor::empty(shape);
  rng.fill_uniform(t, lo, hi);
  return t;
}

}  // namespace cmdr::test_pw
