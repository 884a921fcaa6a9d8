// CMDR-IAD networks at SPEC widths (768 / 1152): inference of one sample (all four networks
// + fusion, eval mode) and one training step, at side S. 70% of positions valid (MVTec-like);
// valid_only = SPEC 10 restriction of the per-position networks. S = 224 is the real size
// (about 1.4 TFLOP per inference without the restriction): run it deliberately, e.g.
//   cmdr_bench --benchmark_filter='BM_cmdr_infer/224'
#include <benchmark/benchmark.h>

#include "engine/rng.hpp"
#include "models/cmdr.hpp"

namespace {

struct Inputs {
  cmdr::Tensor rgb, xyz, valid;
};

Inputs make_inputs(int64_t side) {
  const int64_t l = side * side;
  cmdr::Rng rng(1);
  Inputs in{cmdr::Tensor::empty({l, 768}), cmdr::Tensor::empty({l, 1152}), cmdr::Tensor::ones({l})};
  rng.fill_normal(in.rgb, 0.0f, 1.0f);
  rng.fill_normal(in.xyz, 0.0f, 1.0f);
  for (int64_t p = 0; p < l; ++p) {
    if (rng.uniform01() < 0.3) {
      in.valid.data()[p] = 0.0f;
      for (int64_t c = 0; c < 1152; ++c) in.xyz.data()[p * 1152 + c] = 0.0f;
    }
  }
  return in;
}

void BM_cmdr_infer(benchmark::State& st) {
  const int64_t side = st.range(0);
  const bool valid_only = st.range(1) != 0;
  cmdr::models::Cmdr model(cmdr::models::CmdrConfig::spec(cmdr::models::Mode::Fused2D3D, side));
  const Inputs in = make_inputs(side);
  for (auto _ : st) {
    cmdr::models::CmdrOutputs out =
        model.infer(in.rgb, in.xyz, in.valid, cmdr::models::Mode::Fused2D3D, valid_only);
    benchmark::DoNotOptimize(out.fusion.image_score);
  }
}
BENCHMARK(BM_cmdr_infer)
    ->Args({56, 0})
    ->Args({56, 1})
    ->Args({224, 1})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

void BM_cmdr_train_step(benchmark::State& st) {
  const int64_t side = st.range(0);
  cmdr::models::Cmdr model(cmdr::models::CmdrConfig::spec(cmdr::models::Mode::Fused2D3D, side));
  const Inputs in = make_inputs(side);
  for (auto _ : st) {
    cmdr::models::StepResult r = model.train_step(in.rgb, in.xyz, in.valid);
    benchmark::DoNotOptimize(r.loss[0]);
  }
}
BENCHMARK(BM_cmdr_train_step)->Arg(56)->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace
