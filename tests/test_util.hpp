#pragma once
// Shared test helpers (header-only; #include "tests/test_util.hpp"): tolerance checks with a
// max-abs / max-rel report, fixture loading, and central finite differences.
//
//   auto r = test::compare(got, want, /*rtol=*/1e-4, /*atol=*/1e-6);
//   CHECK_MESSAGE(r.ok, r.msg);          // or: CHECK_CLOSE(got, want, 1e-4, 1e-6);
//   test::Fixture fx("ops/dense_linear.safetensors");
//   Tensor x = fx.get("x");
//   Tensor g = test::fd_grad([&](const Tensor& x) { return test::dot(f(x), w); }, x, 1e-2);
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "io/safetensors.hpp"

#ifndef CMDR_FIXTURES
#define CMDR_FIXTURES "tests/fixtures"
#endif

namespace cmdr::test {

// Result of comparing two tensors elementwise with |got − want| <= atol + rtol·|want|
// (NumPy allclose). max_rel is |got − want| / |want| over elements with |want| > atol
// (elements near zero are judged by atol alone); worst is the first failing element.
struct CloseReport {
  bool ok = true;
  double max_abs = 0, max_rel = 0;
  int64_t worst = -1;  // linear index of the first element breaking the tolerance
  std::string msg;
};

inline CloseReport compare(const Tensor& got, const Tensor& want, double rtol, double atol) {
  CloseReport r;
  std::ostringstream os;
  if (got.shape() != want.shape()) {
    r.ok = false;
    os << "shape mismatch: got " << got.str() << " want " << want.str();
    r.msg = os.str();
    return r;
  }
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double gi = g[i], wi = w[i];
    const double d = std::abs(gi - wi);
    if (!std::isfinite(gi) || !std::isfinite(wi)) {
      if (!(std::isnan(gi) && std::isnan(wi)) && gi != wi) {
        if (r.ok) r.worst = static_cast<int64_t>(i);
        r.ok = false;
        r.max_abs = std::numeric_limits<double>::infinity();
      }
      continue;
    }
    r.max_abs = std::max(r.max_abs, d);
    if (std::abs(wi) > atol) r.max_rel = std::max(r.max_rel, d / std::abs(wi));
    if (d > atol + rtol * std::abs(wi)) {
      if (r.ok) r.worst = static_cast<int64_t>(i);
      r.ok = false;
    }
  }
  os << "shape " << got.str() << " max_abs " << r.max_abs << " max_rel " << r.max_rel << " (rtol "
     << rtol << ", atol " << atol << ")";
  if (!r.ok && r.worst >= 0) {
    const auto k = static_cast<std::size_t>(r.worst);
    os << "; first failure at " << r.worst << ": got " << g[k] << " want " << w[k];
  }
  r.msg = os.str();
  return r;
}

// Scale-aware variant: atol = tol · max(|want|) so tensors with tiny entries are judged
// relative to their magnitude (useful for gradients). rtol = tol as well.
inline CloseReport compare_scaled(const Tensor& got, const Tensor& want, double tol) {
  double m = 0;
  for (float v : want.to_vector()) m = std::max(m, static_cast<double>(std::abs(v)));
  return compare(got, want, tol, tol * std::max(m, 1e-30));
}

// Bitwise identity (determinism tests).
inline bool bit_identical(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  return std::equal(x.begin(), x.end(), y.begin(),
                    [](float p, float q) { return std::memcmp(&p, &q, sizeof(float)) == 0; });
}

// Double-precision inner product of two same-shape tensors (a scalar "loss" sum(a·b)).
inline double dot(const Tensor& a, const Tensor& b) {
  CMDR_CHECK(a.shape() == b.shape(), "test::dot: shapes ", a.str(), " vs ", b.str());
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  double s = 0;
  for (std::size_t i = 0; i < x.size(); ++i) s += static_cast<double>(x[i]) * y[i];
  return s;
}

// Random tensor (uniform [lo, hi)) from a seeded generator.
inline Tensor random(const Shape& shape, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t = Tensor::empty(shape);
  rng.fill_uniform(t, lo, hi);
  return t;
}

// Central finite difference of a scalar function f at x: g[i] = (f(x+h·eᵢ) − f(x−h·eᵢ)) / 2h.
// x is copied (contiguous); f receives the perturbed copy. Perturbation happens in float32,
// so the step actually taken ((x+h) − (x−h) after rounding) is used as the denominator.
inline Tensor fd_grad(const std::function<double(const Tensor&)>& f, const Tensor& x, double h) {
  Tensor xc = x.clone();
  Tensor g = Tensor::empty(x.shape());
  // Each write takes a fresh non-const data() (engine/storage.hpp "Versioning"): a pointer
  // kept across op calls would let the weight cache (ops/weight_cache.hpp) see stale data.
  for (int64_t i = 0; i < xc.numel(); ++i) {
    const float orig = std::as_const(xc).data()[i];
    const float up = static_cast<float>(orig + h), dn = static_cast<float>(orig - h);
    xc.data()[i] = up;
    const double fu = f(xc);
    xc.data()[i] = dn;
    const double fd = f(xc);
    xc.data()[i] = orig;
    g.data()[i] = static_cast<float>((fu - fd) / (static_cast<double>(up) - dn));
  }
  return g;
}

inline std::string fixture_path(const std::string& rel) {
  return std::string(CMDR_FIXTURES) + "/" + rel;
}

// A fixture file (safetensors written by tools/golden/*.py) under tests/fixtures/.
class Fixture {
 public:
  explicit Fixture(const std::string& rel) : file_(std::make_unique<st::File>(fixture_path(rel))) {}
  bool has(const std::string& name) const { return file_->has(name); }
  Tensor get(const std::string& name) const { return file_->get(name, /*convert=*/true); }
  std::vector<int64_t> get_i64(const std::string& name) const { return file_->get_i64(name); }
  // A scalar stored as a 1-element tensor (e.g. stride, scale), as float.
  float scalar(const std::string& name) const { return get(name).item(); }
  const st::File& file() const { return *file_; }

 private:
  std::unique_ptr<st::File> file_;
};

}  // namespace cmdr::test

// CHECK_CLOSE(got, want, rtol, atol): doctest CHECK with the max-abs/max-rel report.
// With CMDR_TEST_VERBOSE set in the environment, passing comparisons print their report too
// (to collect measured errors for documentation).
#define CHECK_CLOSE(got, want, rtol, atol)                                               \
  do {                                                                                   \
    const ::cmdr::test::CloseReport cmdr_r_ =                                            \
        ::cmdr::test::compare((got), (want), (rtol), (atol));                            \
    CHECK_MESSAGE(cmdr_r_.ok, #got " vs " #want ": ", cmdr_r_.msg);                      \
    if (cmdr_r_.ok && std::getenv("CMDR_TEST_VERBOSE")) MESSAGE(#got ": ", cmdr_r_.msg); \
  } while (0)
