// Non-dense op benchmarks at CMDR shapes (issue 2, item 6): layer_norm and gelu over
// 50176×960 (S² tokens × the 960-wide mapping MLP hidden size), forward and backward, in GB/s
// of compulsory traffic (each tensor read or written once). A plain copy of the same tensor
// gives the machine's practical bandwidth in the same binary, for comparison.
// Runs are kept short (the machine is shared): fixed iteration counts.
#include <benchmark/benchmark.h>

#include <cstring>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "ops/ops.hpp"

namespace {
constexpr int64_t kRows = 50176, kCols = 960;
const cmdr::Tensor& input() {
  static cmdr::Tensor x = [] {
    cmdr::Tensor t = cmdr::Tensor::empty({kRows, kCols});
    cmdr::Rng rng(1);
    rng.fill_uniform(t, -3.0f, 3.0f);
    return t;
  }();
  return x;
}
void set_bytes(benchmark::State& st, double bytes_per_elem) {
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * bytes_per_elem * kRows * kCols));
}
}  // namespace

// Reference: copy 50176×960 floats (read + write = 8 B/element).
static void BM_copy_50176x960(benchmark::State& st) {
  const cmdr::Tensor& x = input();
  cmdr::Tensor y = cmdr::Tensor::empty(x.shape());
  for (auto _ : st) {
    std::memcpy(y.data(), x.data(), sizeof(float) * x.numel());
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 8.0);
}
BENCHMARK(BM_copy_50176x960)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

// Floor for ops that return a fresh tensor: allocate 50176×960 and write it once (page
// faults of a new 193 MB buffer + 4 B/element written).
static void BM_alloc_write_50176x960(benchmark::State& st) {
  for (auto _ : st) {
    cmdr::Tensor y = cmdr::Tensor::empty({kRows, kCols});
    float* p = y.data();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kRows * kCols; ++i) p[i] = 1.0f;
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 4.0);
}
BENCHMARK(BM_alloc_write_50176x960)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

static void BM_layer_norm_fwd_50176x960(benchmark::State& st) {
  const cmdr::Tensor& x = input();
  const cmdr::Tensor w = cmdr::Tensor::ones({kCols}), b = cmdr::Tensor::zeros({kCols});
  for (auto _ : st) {
    cmdr::ops::LayerNormSaved s;
    cmdr::Tensor y = cmdr::ops::layer_norm_forward(x, w, b, 1e-5f, &s);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 8.0);  // x read, y written
}
BENCHMARK(BM_layer_norm_fwd_50176x960)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

static void BM_layer_norm_bwd_50176x960(benchmark::State& st) {
  const cmdr::Tensor& x = input();
  const cmdr::Tensor w = cmdr::Tensor::ones({kCols}), b = cmdr::Tensor::zeros({kCols});
  cmdr::ops::LayerNormSaved s;
  cmdr::ops::layer_norm_forward(x, w, b, 1e-5f, &s);
  const cmdr::Tensor& dy = x;
  for (auto _ : st) {
    cmdr::ops::LayerNormGrads g = cmdr::ops::layer_norm_backward(dy, x, w, s);
    benchmark::DoNotOptimize(g.dx.data());
  }
  set_bytes(st, 12.0);  // x, dy read, dx written
}
BENCHMARK(BM_layer_norm_bwd_50176x960)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

static void BM_gelu_fwd_50176x960(benchmark::State& st) {
  const cmdr::Tensor& x = input();
  for (auto _ : st) {
    cmdr::Tensor y = cmdr::ops::gelu_forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(st, 8.0);
}
BENCHMARK(BM_gelu_fwd_50176x960)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

// Dropout forward + backward (p = 0.1), issue 8, at Decoder2D's S = 224 shapes: range(1) ×
// range(2) = 50176×384 (its activations) or 401408×128 (its attention probabilities, 8 heads ×
// 392 windows × 128 queries × 128 keys). range(0) = 0: the former scheme — a stored 0/1 float
// mask from one serial xoshiro stream (Rng::fill_bernoulli01), y = x·m·s in parallel, the
// backward dx = dy·m·s from the stored mask; 1: the counter-based mask
// (ops::dropout_forward/backward: no mask tensor, regenerated in the backward, parallel).
// GB/s of x, y, dy, dx (16 B/element) for both, so the ratio is the time ratio.
static void BM_dropout_fwd_bwd(benchmark::State& st) {
  const int64_t rows = st.range(1), cols = st.range(2), n = rows * cols;
  cmdr::Tensor x = cmdr::Tensor::empty({rows, cols});
  cmdr::Rng(1).fill_uniform(x, -3.0f, 3.0f);
  const float s = 1.0f / 0.9f;
  cmdr::Rng rng(5);
  for (auto _ : st) {
    if (st.range(0) == 0) {
      cmdr::Tensor m = cmdr::Tensor::empty(x.shape()), y = cmdr::Tensor::empty(x.shape());
      rng.fill_bernoulli01(m.data(), n, 0.9);
      const float *xp = x.data(), *mp = m.data();
      float* yp = y.data();
#pragma omp parallel for simd schedule(static)
      for (int64_t i = 0; i < n; ++i) yp[i] = xp[i] * mp[i] * s;
      benchmark::DoNotOptimize(cmdr::ops::dropout_backward(y, m, 0.1f).data());
    } else {
      cmdr::ops::DropoutMask m;
      const cmdr::Tensor y = cmdr::ops::dropout_forward(x, 0.1f, true, rng, &m);
      benchmark::DoNotOptimize(cmdr::ops::dropout_backward(y, m).data());
    }
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * 16.0 * static_cast<double>(n)));
  st.counters["mask_MiB"] = st.range(0) == 0 ? 4.0 * static_cast<double>(n) / (1 << 20) : 0.0;
  st.SetLabel(st.range(0) == 0 ? "stored serial mask" : "counter-based, regenerated");
}
BENCHMARK(BM_dropout_fwd_bwd)
    ->Args({0, 50176, 384})
    ->Args({1, 50176, 384})
    ->Args({0, 401408, 128})
    ->Args({1, 401408, 128})
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3)
    ->UseRealTime();

static void BM_gelu_bwd_50176x960(benchmark::State& st) {
  const cmdr::Tensor& x = input();
  for (auto _ : st) {
    cmdr::Tensor dx = cmdr::ops::gelu_backward(x, x);
    benchmark::DoNotOptimize(dx.data());
  }
  set_bytes(st, 12.0);
}
BENCHMARK(BM_gelu_bwd_50176x960)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

// SPEC 4.3: 768×28×28 → 768×224×224 bilinear (GB/s of the 154 MB output + input).
static void BM_bilinear_768x28_to_224(benchmark::State& st) {
  cmdr::Tensor x = cmdr::Tensor::empty({1, 768, 28, 28});
  cmdr::Rng rng(2);
  rng.fill_uniform(x, -1.0f, 1.0f);
  for (auto _ : st) {
    cmdr::Tensor y = cmdr::ops::upsample_bilinear2d_forward(x, 224, 224);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * 4.0 * 768 * (28 * 28 + 224 * 224)));
}
BENCHMARK(BM_bilinear_768x28_to_224)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

// SPEC 4.3: xyz feature map 1152×224×224 → AvgPool 3×3 (no pad) → adaptive 222 → 224.
static void BM_avgpool3_1152x224(benchmark::State& st) {
  cmdr::Tensor x = cmdr::Tensor::empty({1, 1152, 224, 224});
  cmdr::Rng rng(3);
  rng.fill_uniform(x, -1.0f, 1.0f);
  for (auto _ : st) {
    cmdr::Tensor p = cmdr::ops::avg_pool2d_forward(x, 3, 0);
    benchmark::DoNotOptimize(p.data());
  }
  st.SetBytesProcessed(
      static_cast<int64_t>(st.iterations() * 4.0 * 1152 * (224 * 224 + 222 * 222)));
}
BENCHMARK(BM_avgpool3_1152x224)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();

static void BM_adaptive_1152x222_to_224(benchmark::State& st) {
  cmdr::Tensor x = cmdr::Tensor::empty({1, 1152, 222, 222});
  cmdr::Rng rng(4);
  rng.fill_uniform(x, -1.0f, 1.0f);
  for (auto _ : st) {
    cmdr::Tensor y = cmdr::ops::adaptive_avg_pool2d_forward(x, 224, 224);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(
      static_cast<int64_t>(st.iterations() * 4.0 * 1152 * (224 * 224 + 222 * 222)));
}
BENCHMARK(BM_adaptive_1152x222_to_224)->Unit(benchmark::kMillisecond)->Iterations(3)->UseRealTime();
