// Frozen extractor benchmarks (issue 3 item 9), per sample:
//   BM_dino_vit_224      ViT-B/8 forward at 224 (GFLOP/s from dino_vit_flops)
//   BM_point_mae_224     Point-MAE forward on a 224×224 organised cloud with ~40k valid
//                        points: FPS + KNN + mini-PointNet + blocks, then 3-NN
//                        interpolation and assembly (rgb + xyz + valid) at S = 224
//   BM_fps / BM_knn / BM_assembly_xyz  the geometric parts alone
// Counters: GFLOP/s (dense model FLOPs only) and peak_MiB (engine memory_stats, measured
// over one iteration after reset_peak_memory). Weights are seeded random (not loaded).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "engine/profiler.hpp"
#include "engine/rng.hpp"
#include "engine/storage.hpp"
#include "models/dino_vit.hpp"
#include "models/feature_assembly.hpp"
#include "models/point_mae.hpp"
#include "ops/ops.hpp"

namespace {

using namespace cmdr;
using namespace cmdr::models;

void random_init(const std::vector<ParamSpec>& specs, uint64_t seed) {
  Rng rng(seed);
  init_params(specs, rng);
}

// ~40k valid points: a cap on a disc of radius 113 px inside 224×224 (as the full-size test).
Tensor bench_cloud(int64_t S = 224) {
  Tensor c = Tensor::zeros({3, S, S});
  float* x = c.data();
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j) {
      const int64_t a = 2 * i - (S - 1), b = 2 * j - (S - 1);
      if (a * a + b * b >= 226 * 226) continue;
      const float xv = static_cast<float>(b) * 0.00025f, yv = static_cast<float>(a) * 0.00025f;
      x[i * S + j] = xv;
      x[S * S + i * S + j] = yv;
      x[2 * S * S + i * S + j] =
          (xv * xv + yv * yv) * 0.5f + 0.7f + static_cast<float>((i * 7 + j * 13) % 17) * 1e-5f;
    }
  return c;
}

// SGEMM peak (FLOP/s) right before the ViT benchmark, same method as bench_dense.cpp
// (oneDNN sgemm 2048³, best of 3): on a shared machine only a peak taken under the same
// load makes the fraction meaningful.
double sgemm_peak() {
  const int64_t n = 2048;
  std::vector<float> a(static_cast<std::size_t>(n * n), 0.5f), b(a), c(a);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const int64_t t0 = now_ns();
    dnnl::sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    best = std::min(best, static_cast<double>(now_ns() - t0) * 1e-9);
  }
  return 2.0 * static_cast<double>(n * n * n) / best;
}

void BM_dino_vit_224(benchmark::State& st) {
  DinoVit m;
  random_init(m.param_specs(), 1);
  Rng rng(2);
  Tensor img = Tensor::empty({3, 224, 224});
  rng.fill_normal(img, 0.0f, 1.0f);
  const double peak = sgemm_peak();
  reset_peak_memory();
  const int64_t base = memory_stats().current_bytes;
  const int64_t t0 = now_ns();
  for (auto _ : st) {
    Tensor out = dino_vit_forward(m, img);
    benchmark::DoNotOptimize(out.data());
  }
  const double rate = dino_vit_flops(m.cfg) * static_cast<double>(st.iterations()) /
                      (static_cast<double>(now_ns() - t0) * 1e-9);
  st.counters["GFLOP/s"] = rate * 1e-9;
  st.counters["peak_GFLOP/s"] = peak * 1e-9;
  st.counters["peak_frac"] = rate / peak;
  st.counters["peak_MiB"] = static_cast<double>(memory_stats().peak_bytes - base) / (1 << 20);
}
BENCHMARK(BM_dino_vit_224)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_point_mae_224(benchmark::State& st) {
  PointMae m;
  random_init(m.param_specs(), 3);
  Tensor cloud = bench_cloud();
  Rng rng(4);
  Tensor tokens = Tensor::empty({784, 768});
  rng.fill_normal(tokens, 0.0f, 1.0f);
  reset_peak_memory();
  const int64_t base = memory_stats().current_bytes;
  for (auto _ : st) {
    ValidPoints vp = valid_points(cloud);
    PointMaeOutput o = point_mae_forward(m, vp.xyz);
    Tensor rgb = assemble_rgb(tokens, 28, 224);
    Tensor xyz = assemble_xyz(vp.xyz, vp.pixel, o.centers, o.features, 224);
    Tensor valid = valid_mask(xyz);
    benchmark::DoNotOptimize(valid.data());
    st.counters["points"] = static_cast<double>(vp.xyz.size(0));
  }
  st.counters["GFLOP/s"] =
      benchmark::Counter(point_mae_flops(m.cfg) * 1e-9 * static_cast<double>(st.iterations()),
                         benchmark::Counter::kIsRate);
  st.counters["peak_MiB"] = static_cast<double>(memory_stats().peak_bytes - base) / (1 << 20);
}
BENCHMARK(BM_point_mae_224)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(3);

void BM_fps(benchmark::State& st) {
  ValidPoints vp = valid_points(bench_cloud());
  for (auto _ : st) benchmark::DoNotOptimize(farthest_point_sample(vp.xyz, 1024).data());
  st.counters["points"] = static_cast<double>(vp.xyz.size(0));
}
BENCHMARK(BM_fps)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_knn(benchmark::State& st) {
  ValidPoints vp = valid_points(bench_cloud());
  Tensor centers = ops::index_select_forward(vp.xyz, farthest_point_sample(vp.xyz, 1024));
  for (auto _ : st) benchmark::DoNotOptimize(knn_indices(vp.xyz, centers, 128).data());
}
BENCHMARK(BM_knn)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_assembly_xyz(benchmark::State& st) {
  ValidPoints vp = valid_points(bench_cloud());
  Tensor centers = ops::index_select_forward(vp.xyz, farthest_point_sample(vp.xyz, 1024));
  Rng rng(5);
  Tensor feats = Tensor::empty({1024, 1152});
  rng.fill_normal(feats, 0.0f, 1.0f);
  reset_peak_memory();
  const int64_t base = memory_stats().current_bytes;
  for (auto _ : st) {
    Tensor xyz = assemble_xyz(vp.xyz, vp.pixel, centers, feats, 224);
    benchmark::DoNotOptimize(xyz.data());
  }
  st.counters["peak_MiB"] = static_cast<double>(memory_stats().peak_bytes - base) / (1 << 20);
}
BENCHMARK(BM_assembly_xyz)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same xyz_patch through the explicit sparse operator (SPEC 10): build P, then P·G.
void BM_assembly_xyz_csr(benchmark::State& st) {
  ValidPoints vp = valid_points(bench_cloud());
  Tensor centers = ops::index_select_forward(vp.xyz, farthest_point_sample(vp.xyz, 1024));
  Rng rng(5);
  Tensor feats = Tensor::empty({1024, 1152});
  rng.fill_normal(feats, 0.0f, 1.0f);
  for (auto _ : st) {
    CsrMatrix P = build_xyz_operator(vp.xyz, vp.pixel, centers, 224);
    Tensor xyz = P.matmul(feats);
    benchmark::DoNotOptimize(xyz.data());
    st.counters["nnz_per_row"] = static_cast<double>(P.nnz()) / static_cast<double>(P.rows);
  }
}
BENCHMARK(BM_assembly_xyz_csr)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
