// CMDR-IAD networks at SPEC widths (768 / 1152), literal vs SPEC 10 restructured, in the same
// run: one training step (all four networks, forward + backward + Adam) and one inference
// (all four networks + fusion, eval mode) at side S. Inputs are compact features (28×28
// tokens, 1024 group features) with the real bilinear U and a random P whose non-empty rows
// (~50 % of the positions, MVTec-like) hold 4 centres; the literal path gets the dense
// patches U·T and P·G. Compare the ratio literal / restructured, not the absolute times
// (the machine is shared). S = 224 is the real size; run it deliberately, e.g.
//   cmdr_bench --benchmark_filter='BM_cmdr_(train_step|infer)/224'
#include <benchmark/benchmark.h>

#include <memory>

#include "engine/rng.hpp"
#include "models/cmdr.hpp"
#include "models/feature_assembly.hpp"

namespace {

using cmdr::models::CompactPatches;
using cmdr::models::CsrMatrix;

CompactPatches make_compact(int64_t side) {
  const int64_t l = side * side, g = 28, groups = 1024;
  cmdr::Rng rng(1);
  CompactPatches c;
  c.side = side;
  c.rgb_tokens = cmdr::Tensor::empty({g * g, 768});
  c.group_features = cmdr::Tensor::empty({groups, 1152});
  rng.fill_normal(c.rgb_tokens, 0.0f, 1.0f);
  rng.fill_normal(c.group_features, 0.0f, 1.0f);
  c.up = cmdr::models::bilinear_operator_for(g, side);
  auto p = std::make_shared<CsrMatrix>();
  p->rows = l;
  p->cols = groups;
  p->row_ptr.push_back(0);
  c.valid = cmdr::Tensor::zeros({l});
  for (int64_t r = 0; r < l; ++r) {
    if (rng.uniform01() < 0.5) {
      const auto g0 = static_cast<int32_t>(rng.uniform01() * (groups - 4));
      for (int32_t k = 0; k < 4; ++k) {
        p->col.push_back(g0 + k);
        p->val.push_back(0.25f);
      }
      c.valid.data()[r] = 1.0f;
    }
    p->row_ptr.push_back(p->nnz());
  }
  c.xyz_op = p;
  return c;
}

struct Dense {
  cmdr::Tensor rgb, xyz;
};

// Args: side, restructured (0 = literal dense path, 1 = SPEC 10 path).
void BM_cmdr_train_step(benchmark::State& st) {
  const int64_t side = st.range(0);
  const bool restructured = st.range(1) != 0;
  cmdr::models::Cmdr model(cmdr::models::CmdrConfig::spec(cmdr::models::Mode::Fused2D3D, side));
  const CompactPatches c = make_compact(side);
  Dense d;
  if (!restructured) d = {c.rgb_rows(), c.xyz_rows()};
  for (auto _ : st) {
    const cmdr::models::StepResult r =
        restructured ? model.train_step(c) : model.train_step(d.rgb, d.xyz, c.valid);
    benchmark::DoNotOptimize(r.loss[0]);
  }
  st.SetLabel(restructured ? "restructured" : "literal");
}
BENCHMARK(BM_cmdr_train_step)
    ->Args({56, 0})
    ->Args({56, 1})
    ->Args({224, 0})
    ->Args({224, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

void BM_cmdr_infer(benchmark::State& st) {
  const int64_t side = st.range(0);
  const bool restructured = st.range(1) != 0;
  cmdr::models::Cmdr model(cmdr::models::CmdrConfig::spec(cmdr::models::Mode::Fused2D3D, side));
  const CompactPatches c = make_compact(side);
  Dense d;
  if (!restructured) d = {c.rgb_rows(), c.xyz_rows()};
  for (auto _ : st) {
    const cmdr::models::CmdrOutputs out =
        restructured ? model.infer(c, cmdr::models::Mode::Fused2D3D)
                     : model.infer(d.rgb, d.xyz, c.valid, cmdr::models::Mode::Fused2D3D, false);
    benchmark::DoNotOptimize(out.fusion.image_score);
  }
  st.SetLabel(restructured ? "restructured" : "literal");
}
BENCHMARK(BM_cmdr_infer)
    ->Args({56, 0})
    ->Args({56, 1})
    ->Args({224, 0})
    ->Args({224, 1})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
