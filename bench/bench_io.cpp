// Data-path benchmarks: the SPEC 3 transforms on an MVTec-sized sample (800×800 → 224) and
// synthetic sample generation (io/synth) at the demo size.
#include <benchmark/benchmark.h>

#include "engine/rng.hpp"
#include "io/synth.hpp"
#include "io/transforms.hpp"

namespace {

cmdr::io::Image8 noise_image(int64_t w, int64_t h) {
  cmdr::io::Image8 img(w, h, 3);
  cmdr::Rng r(1);
  for (auto& v : img.data) v = static_cast<uint8_t>(r.below(256));
  return img;
}

void BM_RgbTransform800(benchmark::State& st) {  // pad + Pillow BICUBIC + normalise
  const cmdr::io::Image8 img = noise_image(800, 800);
  for (auto _ : st) benchmark::DoNotOptimize(cmdr::io::rgb_transform(img, 224));
}
BENCHMARK(BM_RgbTransform800)->Unit(benchmark::kMillisecond);

void BM_RgbTransform900x400(benchmark::State& st) {
  const cmdr::io::Image8 img = noise_image(900, 400);
  for (auto _ : st) benchmark::DoNotOptimize(cmdr::io::rgb_transform(img, 224));
}
BENCHMARK(BM_RgbTransform900x400)->Unit(benchmark::kMillisecond);

void BM_CloudTransform800(benchmark::State& st) {
  const cmdr::Tensor c = cmdr::Tensor::ones({800, 800, 3});
  for (auto _ : st) benchmark::DoNotOptimize(cmdr::io::cloud_transform(c, 224));
}
BENCHMARK(BM_CloudTransform800)->Unit(benchmark::kMillisecond);

void BM_SynthSample(benchmark::State& st) {  // one defective sample, in memory
  const int size = static_cast<int>(st.range(0));
  uint64_t seed = 0;
  for (auto _ : st) benchmark::DoNotOptimize(cmdr::io::synth_sample(0, "crack", ++seed, size));
}
BENCHMARK(BM_SynthSample)->Arg(256)->Arg(800)->Unit(benchmark::kMillisecond);

}  // namespace
