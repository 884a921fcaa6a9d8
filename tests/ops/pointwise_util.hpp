#pragma once
// Test helpers for the pointwise op tests, on top of tests/test_util.hpp: a CHECKing
// allclose, exactly reproducible "pattern" tensors (same formula as tools/golden/
// ops_pointwise.py), and seeded random tensors.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "io/safetensors.hpp"
#include "tests/test_util.hpp"

namespace cmdr::test_pw {

// Concatenates streamable pieces (avoids GCC 12's false -Wrestrict on string operator+).
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

inline std::string fixture(const std::string& name) {
  return test::fixture_path("ops/" + name);
}

// |a − e| <= atol + rtol·|e| elementwise (tests/test_util.hpp's compare), as a doctest CHECK
// whose message names `what` and reports the max errors and the first failing element.
inline test::CloseReport allclose(const Tensor& actual, const Tensor& expected, double rtol,
                                  double atol, const std::string& what) {
  REQUIRE_MESSAGE(actual.defined(), what, ": result undefined");
  REQUIRE_MESSAGE(expected.defined(), what, ": expected undefined");
  const test::CloseReport r = test::compare(actual, expected, rtol, atol);
  CHECK_MESSAGE(r.ok, what, ": ", r.msg);
  if (std::getenv("CMDR_PW_VERBOSE")) MESSAGE(what, ": ", r.msg);  // error table for reports
  return r;
}

inline bool bit_equal(const Tensor& a, const Tensor& b) {
  return test::bit_identical(a, b);
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
