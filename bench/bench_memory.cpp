// Steady-state memory behaviour of repeated CMDR training steps and inferences (issue 8):
// per step after a warm-up step, the wall time, minor page faults (getrusage ru_minflt:
// fresh pages touched), the engine's peak tensor bytes and the bytes of large blocks that
// had to come from the OS allocator instead of the storage block cache (fresh_MiB; 0 means
// the step reused only cached blocks; last_*: the last of the steps alone). range(0) = S, range(1)
// = 0 train step, 1 inference.
//   cmdr_bench --benchmark_filter='BM_cmdr_steady' (S = 56 and 112: tens of seconds)
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdlib>
#include <iostream>

#include "engine/profiler.hpp"
#include "engine/rng.hpp"
#include "engine/storage.hpp"
#include "models/cmdr.hpp"

namespace {

long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

void BM_cmdr_steady(benchmark::State& st) {
  using namespace cmdr;
  const int64_t side = st.range(0), l = side * side;
  const bool infer = st.range(1) != 0;
  models::Cmdr model(models::CmdrConfig::spec(models::Mode::Fused2D3D, side));
  Rng rng(1);
  Tensor rgb = Tensor::empty({l, 768}), xyz = Tensor::empty({l, 1152}), valid = Tensor::ones({l});
  rng.fill_normal(rgb, 0.0f, 1.0f);
  rng.fill_normal(xyz, 0.0f, 1.0f);
  for (int64_t p = 0; p < l; ++p)
    if (rng.uniform01() < 0.3) valid.data()[p] = 0.0f;  // MVTec-like: 70% valid
  auto step = [&] {
    if (infer) {
      models::CmdrOutputs out = model.infer(rgb, xyz, valid, models::Mode::Fused2D3D, true);
      benchmark::DoNotOptimize(out.fusion.image_score);
    } else {
      models::StepResult r = model.train_step(rgb, xyz, valid);
      benchmark::DoNotOptimize(r.loss[0]);
    }
  };
  step();  // warm-up: first touch of parameters, Adam state, primitives, cache
  // CMDR_BENCH_PROFILE=1: per-op table of the measured steps on stderr (engine/profiler).
  const bool profile = std::getenv("CMDR_BENCH_PROFILE") != nullptr;
  Profiler::reset();
  Profiler::enable(profile);
  const MemoryStats m0 = memory_stats();
  reset_peak_memory();
  const long f0 = minor_faults();
  double secs = 0;
  int64_t before_last = 0, flt_before_last = 0;
  for (auto _ : st) {
    before_last = memory_stats().fresh_bytes;
    flt_before_last = minor_faults();
    const int64_t t0 = now_ns();
    step();
    secs += static_cast<double>(now_ns() - t0) * 1e-9;
  }
  const MemoryStats m1 = memory_stats();
  Profiler::enable(false);
  if (profile) Profiler::print_table(std::cerr);
  st.counters["last_fresh_MiB"] = static_cast<double>(m1.fresh_bytes - before_last) / (1 << 20);
  st.counters["last_minflt"] = static_cast<double>(minor_faults() - flt_before_last);
  const double it = static_cast<double>(st.iterations());
  st.counters["ms"] = 1e3 * secs / it;
  st.counters["minflt"] = static_cast<double>(minor_faults() - f0) / it;
  st.counters["peak_MiB"] = static_cast<double>(m1.peak_bytes - m0.current_bytes) / (1 << 20);
  st.counters["fresh_MiB"] = static_cast<double>(m1.fresh_bytes - m0.fresh_bytes) / it / (1 << 20);
  st.counters["cached_MiB"] = static_cast<double>(m1.cached_bytes) / (1 << 20);
  st.SetLabel(infer ? "inference" : "train step");
}
BENCHMARK(BM_cmdr_steady)
    ->Args({56, 0})
    ->Args({56, 1})
    ->Args({112, 0})
    ->Args({112, 1})
    ->Iterations(3)
    ->Unit(benchmark::kSecond);

}  // namespace
