// autograd/ benchmarks: optimizer steps over 16M parameters (GB/s of compulsory traffic:
// Adam reads g, p, m, v and writes p, m, v = 28 B/parameter; SGD with momentum 20 B), and the
// tape's own overhead (record + backward of a long chain of tiny ops, per node).
// Runs are kept short (the machine is shared): fixed iteration counts.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cmath>

#include "autograd/autograd.hpp"
#include "autograd/optim.hpp"

namespace {
constexpr int64_t kParams = 16 << 20;
}  // namespace

static void BM_adam_step_16M(benchmark::State& st) {
  cmdr::ag::Var p(cmdr::Tensor::zeros({kParams}), true);
  p.grad() = cmdr::Tensor::full({kParams}, 0.5f);
  cmdr::ag::Adam opt({&p});
  opt.step();  // allocates the state
  for (auto _ : st) opt.step();
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * 28.0 * kParams));
}
BENCHMARK(BM_adam_step_16M)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

static long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

static bool all_finite(const cmdr::Tensor& t) {
  bool ok = true;
  for (int64_t i = 0; i < t.numel(); ++i) ok &= std::isfinite(t.data()[i]);
  return ok;
}

// A rollback-safe Adam step over 16M parameters, as Cmdr::train_step does it (issue 8):
// range(0) = 0: snapshot p, m, v (clones), step, check p, m, v for non-finite values (the
// previous train_step); 1: Adam::step_checked (dry run, then commit; no copies).
// minflt: minor page faults per step (fresh memory touched by the snapshots).
static void BM_adam_rollback_safe_step_16M(benchmark::State& st) {
  cmdr::ag::Var p(cmdr::Tensor::zeros({kParams}), true);
  p.grad() = cmdr::Tensor::full({kParams}, 0.5f);
  cmdr::ag::Adam opt({&p});
  opt.step();  // allocates the state
  const bool checked = st.range(0) == 1;
  const long f0 = minor_faults();
  for (auto _ : st) {
    if (checked) {
      benchmark::DoNotOptimize(opt.step_checked());
    } else {
      const cmdr::Tensor pb = p.value().clone(), mb = opt.exp_avg()[0].clone();
      const cmdr::Tensor vb = opt.exp_avg_sq()[0].clone();
      opt.step();
      const bool ok =
          all_finite(p.value()) && all_finite(opt.exp_avg()[0]) && all_finite(opt.exp_avg_sq()[0]);
      benchmark::DoNotOptimize(ok);
    }
  }
  st.counters["minflt"] =
      static_cast<double>(minor_faults() - f0) / static_cast<double>(st.iterations());
  st.SetLabel(checked ? "step_checked" : "clone + step + check");
}
BENCHMARK(BM_adam_rollback_safe_step_16M)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5)
    ->UseRealTime();

static void BM_sgd_momentum_step_16M(benchmark::State& st) {
  cmdr::ag::Var p(cmdr::Tensor::zeros({kParams}), true);
  p.grad() = cmdr::Tensor::full({kParams}, 0.5f);
  cmdr::ag::SGD opt({&p}, {.lr = 0.1f, .momentum = 0.9f});
  opt.step();
  for (auto _ : st) opt.step();
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations() * 20.0 * kParams));
}
BENCHMARK(BM_sgd_momentum_step_16M)->Unit(benchmark::kMillisecond)->Iterations(5)->UseRealTime();

// 10k reshape nodes on a 1-element tensor: the cost is the tape (node, closure, topological
// sort, accumulation), not arithmetic. Reported per node via items/s.
static void BM_tape_chain_10k(benchmark::State& st) {
  constexpr int kNodes = 10000;
  for (auto _ : st) {
    cmdr::ag::Var x(cmdr::Tensor::from_vector({1}, {1.0f}), true);
    cmdr::ag::Var h = x;
    for (int i = 0; i < kNodes; ++i)
      h = cmdr::ag::reshape(h, i % 2 == 0 ? cmdr::Shape{1, 1} : cmdr::Shape{1});
    cmdr::ag::backward(cmdr::ag::reshape(h, {1}), cmdr::Tensor::ones({1}));
    benchmark::DoNotOptimize(x.grad().data());
  }
  st.SetItemsProcessed(st.iterations() * kNodes);
}
BENCHMARK(BM_tape_chain_10k)->Unit(benchmark::kMillisecond)->Iterations(10)->UseRealTime();
