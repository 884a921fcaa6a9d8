// Preprocessing (SPEC 2) on an 800×800 organized scan of MVTec 3D-AD density (~0.15 mm
// pixel spacing at 0.3 m): tilted support plane, a 40 mm sphere cap, outliers, dropouts.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "engine/rng.hpp"
#include "io/preprocess.hpp"

namespace {
std::vector<float> make_scan(int64_t h, int64_t w) {
  cmdr::Rng rng(5);
  const double f = 2000.0;
  Eigen::Vector3d n(0.1, -0.05, -1.0);
  n.normalize();
  const Eigen::Vector3d p0(0, 0, 0.3);
  const Eigen::Vector3d up = n.z() < 0 ? n : Eigen::Vector3d(-n);
  const Eigen::Vector3d centre = p0 + up * 0.015;
  const double radius = 0.04;
  std::vector<float> xyz(h * w * 3, 0.f);
  for (int64_t v = 0; v < h; ++v)
    for (int64_t u = 0; u < w; ++u) {
      const Eigen::Vector3d r((u - (w - 1) / 2.0) / f, (v - (h - 1) / 2.0) / f, 1.0);
      double t = p0.dot(n) / r.dot(n);
      const double a = r.dot(r), b = -2 * r.dot(centre), c = centre.dot(centre) - radius * radius;
      const double disc = b * b - 4 * a * c;
      if (disc >= 0) t = std::min(t, (-b - std::sqrt(disc)) / (2 * a));
      t += 0.0002 * rng.normal();
      if (rng.bernoulli(0.0005)) t *= 0.8;  // outlier
      if (rng.bernoulli(0.01)) continue;    // dropout
      const Eigen::Vector3d p = r * t;
      for (int k = 0; k < 3; ++k) xyz[(v * w + u) * 3 + k] = static_cast<float>(p(k));
    }
  return xyz;
}
}  // namespace

static void BM_preprocess_800(benchmark::State& st) {
  static const std::vector<float> scan = make_scan(800, 800);
  cmdr::preprocess::Stats s;
  for (auto _ : st) {
    auto out = cmdr::preprocess::preprocess_cloud(scan.data(), 800, 800, 1, {}, &s);
    benchmark::DoNotOptimize(out.xyz.data());
  }
  st.counters["input"] = static_cast<double>(s.input_points);
  st.counters["plane_removed"] = static_cast<double>(s.plane_removed);
  st.counters["kept"] = static_cast<double>(s.kept);
  st.counters["clusters"] = static_cast<double>(s.clusters);
}
BENCHMARK(BM_preprocess_800)->Unit(benchmark::kMillisecond)->Iterations(1);
