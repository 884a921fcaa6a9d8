// Engine micro-benchmarks: contiguous copy of a permuted tensor (GB/s).
#include <benchmark/benchmark.h>

#include "engine/tensor.hpp"

static void BM_permute_copy(benchmark::State& st) {
  cmdr::Tensor t = cmdr::Tensor::ones({196, 256, 96});
  for (auto _ : st) {
    cmdr::Tensor c = t.permute({2, 0, 1}).contiguous();
    benchmark::DoNotOptimize(c.data());
  }
  st.SetBytesProcessed(st.iterations() * t.numel() * 8);
}
BENCHMARK(BM_permute_copy)->Unit(benchmark::kMillisecond);
