// Strided copies (issue 8): Tensor::contiguous() of permuted and narrowed views at CMDR shapes,
// the engine's former scalar loop (detail::copy_strided_ref: gather into a temporary, scatter)
// against detail::copy_strided (merged dims, memcpy runs, 32×32-tiled transpose, OpenMP).
// Arg 0 = reference, 1 = optimised; GB/s of compulsory traffic (8 B per element copied).
// Short fixed iteration counts: the machine is shared.
#include <benchmark/benchmark.h>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"

namespace {
cmdr::Tensor filled(const cmdr::Shape& s) {
  cmdr::Tensor t = cmdr::Tensor::empty(s);
  cmdr::Rng rng(3);
  rng.fill_uniform(t, -1.0f, 1.0f);
  return t;
}
void run_copy(benchmark::State& st, const cmdr::Tensor& view) {
  cmdr::Tensor out = cmdr::Tensor::empty(view.shape());
  const cmdr::Shape cs = cmdr::contiguous_strides(view.shape());
  for (auto _ : st) {
    if (st.range(0) == 0)
      cmdr::detail::copy_strided_ref(out.data(), cs, view.data(), view.strides(), view.shape());
    else
      cmdr::detail::copy_strided(out.data(), cs, view.data(), view.strides(), view.shape());
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * 8 * view.numel());
}
}  // namespace

// Decoder2D at S = 224: tokens [L = 50176, 384] -> image [1, 384, 224, 224] (permute+reshape).
static void BM_copy_tokens_to_image(benchmark::State& st) {
  static const cmdr::Tensor tok = filled({50176, 384});
  run_copy(st, tok.view({1, 224, 224, 384}).permute({0, 3, 1, 2}));
}
BENCHMARK(BM_copy_tokens_to_image)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ... and back: image [1, 384, 224, 224] -> tokens [50176, 384].
static void BM_copy_image_to_tokens(benchmark::State& st) {
  static const cmdr::Tensor img = filled({1, 384, 224, 224});
  run_copy(st, img.permute({0, 2, 3, 1}));
}
BENCHMARK(BM_copy_image_to_tokens)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// Point-MAE-like narrow of the channel dim: [512, 65536].narrow(1, 0, 32768).contiguous().
static void BM_copy_narrow(benchmark::State& st) {
  static const cmdr::Tensor h = filled({512, 65536});
  run_copy(st, h.narrow(1, 0, 32768));
}
BENCHMARK(BM_copy_narrow)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
