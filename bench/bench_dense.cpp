// Dense-op benchmarks at CMDR shapes (issue 2 §6): GFLOP/s and the fraction of the SGEMM
// peak measured in this binary (oneDNN sgemm 2048³, best of 3). Shapes: linear
// 50176×768→960 and 50176×960→1152 (forward, dx, dW), attention 785 tokens 12×64 (ViT) and
// windowed 50176 tokens 8×48 / 128 (Decoder2D at S = 224), conv_transpose2d 384→256 3×3 on
// 224², conv_transpose1d 1152→768 k4 s2 on L = 1568.
// These are long kernels (0.1–1 s each): run with --benchmark_min_time=0.1 or a filter.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "engine/precision.hpp"
#include "engine/profiler.hpp"
#include "engine/rng.hpp"
#include "engine/storage.hpp"
#include "engine/tensor.hpp"
#include "ops/ops.hpp"
#include "ops/weight_cache.hpp"

using namespace cmdr;

namespace {
long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

Tensor rnd(const Shape& s, uint64_t seed) {
  Rng r(seed);
  Tensor t = Tensor::empty(s);
  r.fill_uniform(t, -1.0f, 1.0f);
  return t;
}

double sgemm_once(int64_t n, std::vector<float>& a, std::vector<float>& b, std::vector<float>& c) {
  const int64_t t0 = now_ns();
  dnnl::sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  return static_cast<double>(now_ns() - t0) * 1e-9;
}

// SGEMM peak (FLOP/s) of this machine and thread count: best of 3 square 2048³ products.
// Re-measured right before every benchmark: the machine is shared, and a peak taken under
// the same load as the kernel gives a meaningful fraction.
double sgemm_peak() {
  const int64_t n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  sgemm_once(n, a, b, c);  // warm-up (thread pool, JIT)
  double best = 1e30;
  for (int i = 0; i < 3; ++i) best = std::min(best, sgemm_once(n, a, b, c));
  return 2.0 * n * n * n / best;
}

// Runs f in the benchmark loop; reports GFLOP/s and the fraction of the SGEMM peak.
void run(benchmark::State& st, double flops, const std::function<void()>& f) {
  const double peak = sgemm_peak();
  f();  // warm-up: primitive creation and first-touch of buffers
  double secs = 0;
  for (auto _ : st) {
    const int64_t t0 = now_ns();
    f();
    secs += static_cast<double>(now_ns() - t0) * 1e-9;
  }
  const double rate = flops * static_cast<double>(st.iterations()) / secs;
  st.counters["GFLOP/s"] = rate * 1e-9;
  st.counters["peak_frac"] = rate / peak;
  st.counters["peak_GFLOP/s"] = peak * 1e-9;
}
}  // namespace

static void BM_sgemm_peak_2048(benchmark::State& st) {
  const int64_t n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  run(st, 2.0 * n * n * n, [&] { sgemm_once(n, a, b, c); });
}
BENCHMARK(BM_sgemm_peak_2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// linear: x [50176, K] -> [50176, N]; mode 0 forward (+bias), 1 dx, 2 dW (+db)
static void BM_linear(benchmark::State& st) {
  const int64_t M = 50176, K = st.range(0), N = st.range(1), mode = st.range(2);
  Tensor x = rnd({M, K}, 1), w = rnd({N, K}, 2), b = rnd({N}, 3), dy = rnd({M, N}, 4);
  const double flops = 2.0 * M * N * K;
  if (mode == 0) run(st, flops, [&] { benchmark::DoNotOptimize(ops::linear_forward(x, w, b)); });
  if (mode == 1)
    run(st, flops,
        [&] { benchmark::DoNotOptimize(ops::linear_backward(dy, x, w, true, false, false)); });
  if (mode == 2)
    run(st, flops,
        [&] { benchmark::DoNotOptimize(ops::linear_backward(dy, x, w, false, true, true)); });
  st.SetLabel(mode == 0 ? "forward" : mode == 1 ? "backward dx" : "backward dW+db");
}
BENCHMARK(BM_linear)
    ->Args({768, 960, 0})
    ->Args({768, 960, 1})
    ->Args({768, 960, 2})
    ->Args({960, 1152, 0})
    ->Args({960, 1152, 1})
    ->Args({960, 1152, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// attention: [1, H, T, d]; range(4) = 0 forward (inference: fused kernel, no probability
// tensor), 1 backward, 2 forward of the training path (probabilities saved for a backward),
// 3 training forward + backward without dropout, 4 the same with attention dropout p = 0.1
// (counter-based mask made in the forward and remade in the backward, issue 8).
// peak_MiB: engine memory peak of one call above the inputs; minflt: minor page faults per
// call (getrusage), i.e. fresh memory touched.
static void BM_attention(benchmark::State& st) {
  const int64_t H = st.range(0), T = st.range(1), d = st.range(2), window = st.range(3);
  const int64_t mode = st.range(4);
  Tensor q = rnd({1, H, T, d}, 1), k = rnd({1, H, T, d}, 2), v = rnd({1, H, T, d}, 3);
  Tensor dy = rnd({1, H, T, d}, 4);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const int64_t W = window == 0 ? T : window;
  const double pairs = static_cast<double>(H) * ((T / W) * W * W + (T % W) * (T % W));
  ops::AttentionSaved sv;
  if (mode == 1) ops::attention_forward(q, k, v, scale, window, 0.0f, false, nullptr, &sv);
  const int64_t base = memory_stats().current_bytes;
  reset_peak_memory();
  const long flt0 = minor_faults();
  if (mode == 0)
    run(st, 4.0 * pairs * d, [&] {
      benchmark::DoNotOptimize(
          ops::attention_forward(q, k, v, scale, window, 0.0f, false, nullptr));
    });
  if (mode == 2)
    run(st, 4.0 * pairs * d, [&] {
      ops::AttentionSaved s2;
      benchmark::DoNotOptimize(
          ops::attention_forward(q, k, v, scale, window, 0.0f, false, nullptr, &s2));
    });
  if (mode == 1)
    run(st, 8.0 * pairs * d, [&] {
      benchmark::DoNotOptimize(ops::attention_backward(dy, q, k, v, scale, window, 0.0f, sv));
    });
  if (mode == 3 || mode == 4) {
    const float pd = mode == 4 ? 0.1f : 0.0f;
    Rng rng(6);
    run(st, 12.0 * pairs * d, [&] {
      ops::AttentionSaved s3;
      benchmark::DoNotOptimize(
          ops::attention_forward(q, k, v, scale, window, pd, true, &rng, &s3).data());
      benchmark::DoNotOptimize(ops::attention_backward(dy, q, k, v, scale, window, pd, s3));
    });
  }
  st.counters["peak_MiB"] = static_cast<double>(memory_stats().peak_bytes - base) / (1 << 20);
  st.counters["minflt"] =
      static_cast<double>(minor_faults() - flt0) / static_cast<double>(st.iterations() + 1);
  static const char* const kLabels[] = {"forward fused (inference)", "backward",
                                        "forward with probs (training)", "fwd+bwd, no dropout",
                                        "fwd+bwd, dropout 0.1"};
  st.SetLabel(kLabels[mode]);
}
BENCHMARK(BM_attention)
    ->Args({12, 785, 64, 0, 0})
    ->Args({12, 785, 64, 0, 2})
    ->Args({12, 785, 64, 0, 1})
    ->Args({8, 50176, 48, 128, 0})
    ->Args({8, 50176, 48, 128, 2})
    ->Args({8, 50176, 48, 128, 1})
    ->Args({8, 50176, 48, 128, 3})
    ->Args({8, 50176, 48, 128, 4})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// conv_transpose2d 384→256, 3×3, stride 1, pad 1 on 224×224 (Decoder2D); 0 fwd, 1 dx, 2 dW
static void BM_conv_transpose2d(benchmark::State& st) {
  const int64_t S = 224, mode = st.range(0);
  Tensor x = rnd({1, 384, S, S}, 1), w = rnd({384, 256, 3, 3}, 2), b = rnd({256}, 3);
  Tensor dy = rnd({1, 256, S, S}, 4);
  const double flops = 2.0 * 384 * 256 * 9 * S * S;
  if (mode == 0)
    run(st, flops, [&] { benchmark::DoNotOptimize(ops::conv_transpose2d_forward(x, w, b, 1, 1)); });
  if (mode == 1)
    run(st, flops, [&] {
      benchmark::DoNotOptimize(ops::conv_transpose2d_backward(dy, x, w, 1, 1, true, false, false));
    });
  if (mode == 2)
    run(st, flops, [&] {
      benchmark::DoNotOptimize(ops::conv_transpose2d_backward(dy, x, w, 1, 1, false, true, true));
    });
  st.SetLabel(mode == 0 ? "forward" : mode == 1 ? "backward dx" : "backward dW+db");
}
BENCHMARK(BM_conv_transpose2d)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Decoder3D's five ConvTranspose1d forwards at S = 224 (SPEC 5.3: k4 s2 p1, L/32 = 1568 doubling
// to 50176): layer N = 0..4; P = 0 oneDNN's deconvolution, 1 the polyphase GEMMs (ops/conv.cpp).
static void BM_conv_transpose1d_dec3d(benchmark::State& st) {
  static const int64_t cin[5] = {1152, 768, 512, 256, 128}, cout[5] = {768, 512, 256, 128, 1152};
  const int64_t n = st.range(0), L = 1568 << n;
  Tensor x = rnd({1, cin[n], L}, 1), w = rnd({cin[n], cout[n], 4}, 2), b = rnd({cout[n]}, 3);
  ops::set_conv_transpose1d_polyphase(st.range(1) != 0);
  run(st, 2.0 * cin[n] * cout[n] * 4 * L,
      [&] { benchmark::DoNotOptimize(ops::conv_transpose1d_forward(x, w, b, 2, 1)); });
  ops::set_conv_transpose1d_polyphase(true);
  st.SetLabel(st.range(1) ? "polyphase GEMMs" : "oneDNN deconvolution");
}
BENCHMARK(BM_conv_transpose1d_dec3d)
    ->ArgsProduct({{0, 1, 2, 3, 4}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// conv_transpose1d 1152→768, k4 s2 p1, L = 1568 -> 3136 (Decoder3D at S = 224); 0 fwd, 1 dx, 2 dW
static void BM_conv_transpose1d(benchmark::State& st) {
  const int64_t L = 1568, mode = st.range(0);
  Tensor x = rnd({1, 1152, L}, 1), w = rnd({1152, 768, 4}, 2), b = rnd({768}, 3);
  Tensor dy = rnd({1, 768, 2 * L}, 4);
  const double flops = 2.0 * 1152 * 768 * 4 * L;
  if (mode == 0)
    run(st, flops, [&] { benchmark::DoNotOptimize(ops::conv_transpose1d_forward(x, w, b, 2, 1)); });
  if (mode == 1)
    run(st, flops, [&] {
      benchmark::DoNotOptimize(ops::conv_transpose1d_backward(dy, x, w, 2, 1, true, false, false));
    });
  if (mode == 2)
    run(st, flops, [&] {
      benchmark::DoNotOptimize(ops::conv_transpose1d_backward(dy, x, w, 2, 1, false, true, true));
    });
  st.SetLabel(mode == 0 ? "forward" : mode == 1 ? "backward dx" : "backward dW+db");
}
BENCHMARK(BM_conv_transpose1d)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- precision fp32 vs bf16 (issue 8 item 3), side by side in one run -----------------------
// Every entry below takes the precision as its last argument (0 fp32, 1 bf16); the ratio of
// two neighbouring rows is the bf16 speed-up at the same load.

// bf16 GEMM peak: a oneDNN matmul primitive 2048³ with bf16 operands already in memory,
// f32 accumulation and output (2.6 has no public gemm_bf16bf16f32).
static void BM_bf16gemm_peak_2048(benchmark::State& st) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const int64_t n = 2048;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  dnnl::memory::desc a_md({n, n}, dt::bf16, tag::ab), c_md({n, n}, dt::f32, tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, a_md, c_md), eng);
  dnnl::matmul mm(pd);
  std::vector<uint16_t> a(n * n, 0x3f00), b(n * n, 0x3e80);  // 0.5, 0.25
  std::vector<float> c(n * n);
  dnnl::memory am(a_md, eng, a.data()), bm(a_md, eng, b.data()), cm(c_md, eng, c.data());
  run(st, 2.0 * n * n * n, [&] {
    mm.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
    s.wait();
  });
  st.SetLabel(pd.impl_info_str());
}
BENCHMARK(BM_bf16gemm_peak_2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// linear [M, K] -> N; mode 0 forward (+bias), 1 dx, 2 dW+db; precision last
static void BM_linear_prec(benchmark::State& st) {
  const int64_t M = st.range(0), K = st.range(1), N = st.range(2), mode = st.range(3);
  PrecisionScope ps(st.range(4) ? Precision::BF16 : Precision::FP32);
  Tensor x = rnd({M, K}, 1), w = rnd({N, K}, 2), b = rnd({N}, 3), dy = rnd({M, N}, 4);
  const double flops = 2.0 * M * N * K;
  if (mode == 0) run(st, flops, [&] { benchmark::DoNotOptimize(ops::linear_forward(x, w, b)); });
  if (mode == 1)
    run(st, flops,
        [&] { benchmark::DoNotOptimize(ops::linear_backward(dy, x, w, true, false, false)); });
  if (mode == 2)
    run(st, flops,
        [&] { benchmark::DoNotOptimize(ops::linear_backward(dy, x, w, false, true, true)); });
  st.SetLabel(std::string(mode == 0   ? "forward"
                          : mode == 1 ? "dx"
                                      : "dW+db") +
              " " + precision_name(precision()));
}
BENCHMARK(BM_linear_prec)
    ->ArgsProduct({{50176}, {768}, {960}, {0, 1, 2}, {0, 1}})
    ->ArgsProduct({{50176}, {960}, {1152}, {0}, {0, 1}})
    ->ArgsProduct({{784}, {768}, {2304}, {0}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// conv_transpose2d 384→256 3×3 s1 p1 on 224²; mode 0 fwd, 1 dx, 2 dW+db; precision last
static void BM_conv_transpose2d_prec(benchmark::State& st) {
  const int64_t S = 224, mode = st.range(0);
  PrecisionScope ps(st.range(1) ? Precision::BF16 : Precision::FP32);
  Tensor x = rnd({1, 384, S, S}, 1), w = rnd({384, 256, 3, 3}, 2), b = rnd({256}, 3);
  Tensor dy = rnd({1, 256, S, S}, 4);
  const double flops = 2.0 * 384 * 256 * 9 * S * S;
  if (mode == 0)
    run(st, flops, [&] { benchmark::DoNotOptimize(ops::conv_transpose2d_forward(x, w, b, 1, 1)); });
  if (mode == 1)
    run(st, flops, [&] {
      benchmark::DoNotOptimize(ops::conv_transpose2d_backward(dy, x, w, 1, 1, true, false, false));
    });
  if (mode == 2)
    run(st, flops, [&] {
      benchmark::DoNotOptimize(ops::conv_transpose2d_backward(dy, x, w, 1, 1, false, true, true));
    });
  st.SetLabel(std::string(mode == 0   ? "forward"
                          : mode == 1 ? "dx"
                                      : "dW+db") +
              " " + precision_name(precision()));
}
BENCHMARK(BM_conv_transpose2d_prec)
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// bias + exact GELU after a linear layer (issue 8 item 2): oneDNN matmul with the bias and an
// eltwise_gelu_erf post-op (one pass over y) vs linear_forward + gelu_forward (y written,
// read and written again). Shapes: ViT MLP fc1 785×768→3072, a 50176-row MLP 960→960.
// mode 0 = separate ops (what the models run), 1 = fused post-op.
static void BM_linear_gelu(benchmark::State& st) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const int64_t M = st.range(0), K = st.range(1), N = st.range(2), mode = st.range(3);
  Tensor x = rnd({M, K}, 1), w = rnd({N, K}, 2), b = rnd({N}, 3);
  const double flops = 2.0 * M * N * K;
  if (mode == 0) {
    run(st, flops,
        [&] { benchmark::DoNotOptimize(ops::gelu_forward(ops::linear_forward(x, w, b))); });
  } else {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream s(eng);
    dnnl::memory::desc xmd({M, K}, dt::f32, tag::ab), wmd({K, N}, dt::f32, tag::ba),
        bmd({1, N}, dt::f32, tag::ab), ymd({M, N}, dt::f32, tag::ab);
    dnnl::post_ops po;
    po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(xmd, wmd, bmd, ymd), attr, eng);
    dnnl::matmul mm(pd);
    dnnl::memory xm(xmd, eng, x.data()), wm(wmd, eng, w.data()), bm(bmd, eng, b.data());
    run(st, flops, [&] {
      Tensor y = Tensor::empty({M, N});
      dnnl::memory ym(ymd, eng, y.data());
      mm.execute(
          s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, bm}, {DNNL_ARG_DST, ym}});
      s.wait();
      benchmark::DoNotOptimize(y);
    });
    st.SetLabel(pd.impl_info_str());
  }
}
BENCHMARK(BM_linear_gelu)
    ->ArgsProduct({{785}, {768}, {3072}, {0, 1}})
    ->ArgsProduct({{50176}, {960}, {960}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Weight cache (issue 8 item 2, ops/weight_cache.hpp): linear forward with the weight
// prepared per call (mode 0: plain weights, the cache disabled — oneDNN packs / the bf16 path
// rounds the weight on every call) vs prepared once and reused (mode 1: the inference case,
// same weight tensor every call). Shapes: ViT qkv 785×768→2304, a 50176-row MLP 960→960.
// Args: M, K, N, mode, precision (0 fp32, 1 bf16).
static void BM_linear_weight_cache(benchmark::State& st) {
  const int64_t M = st.range(0), K = st.range(1), N = st.range(2), mode = st.range(3);
  PrecisionScope ps(st.range(4) ? Precision::BF16 : Precision::FP32);
  Tensor x = rnd({M, K}, 1), w = rnd({N, K}, 2), b = rnd({N}, 3);
  std::unique_ptr<ops::weight_cache::Disable> off;
  if (mode == 0) off = std::make_unique<ops::weight_cache::Disable>();
  run(st, 2.0 * M * N * K, [&] { benchmark::DoNotOptimize(ops::linear_forward(x, w, b)); });
  st.counters["cache_MiB"] =
      static_cast<double>(ops::weight_cache::stats().bytes) / static_cast<double>(1 << 20);
  st.SetLabel(std::string(mode == 0 ? "uncached " : "cached ") + precision_name(precision()));
}
BENCHMARK(BM_linear_weight_cache)
    ->ArgsProduct({{785}, {768}, {2304}, {0, 1}, {0, 1}})
    ->ArgsProduct({{50176}, {960}, {960}, {0, 1}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
