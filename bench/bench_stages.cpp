// Per-stage benchmark of one sample, all stages side by side in one run (issue 8 items 4-5).
//   OMP_NUM_THREADS=2 ./build/bench/cmdr_bench --benchmark_filter='BM_stage'
// Environment:
//   CMDR_BENCH_S          side S (default 224; e.g. 56 for a quick run; multiple of 8)
//   CMDR_BENCH_SAMPLE     object (default: support plane removed as SPEC 2 preprocessing does,
//                         only the object valid, like a preprocessed MVTec part) or full
//                         (plane kept: every position valid, the per-position worst case)
//   CMDR_BENCH_PROFILE    set: each stage runs once more under the op profiler, table to stderr
//   CMDR_BENCH_DECONV     polyphase (default) or onednn: Decoder3D's ConvTranspose1d forward path
//   CMDR_BENCH_PRECISION  fp32 (default) or bf16: the process-wide precision
//                         (engine/precision.hpp) for the whole run; peak_frac is then taken
//                         against the bf16 GEMM peak instead of the SGEMM peak.
// The sample is a synthetic MVTec-3D-like "good" sample (io/synth, class 0, 256×256; its
// valid fraction is reported by BM_stage_peaks, see CMDR_BENCH_SAMPLE), written to a temporary
// folder as rgb PNG + xyz TIFF so that the whole detect stage reads files exactly like `cmdr-iad
// detect`. Weights are seeded random with the SPEC sizes (timings do not depend on the values).
//
// Counters of every stage:
//   GFLOP        useful FLOPs per iteration: 2·multiply-adds of the dense layers (linear,
//                convolutions, attention products q·kᵀ and p·v); norms, activations,
//                softmax, geometry (FPS, KNN, interpolation) not counted. Forward+backward
//                counts 3× the forward (dx and dW products each cost one forward).
//   GFLOP/s, peak_frac = GFLOP/s ÷ fp32 SGEMM peak (oneDNN sgemm 2048³, best of 3,
//                re-measured right before each stage, same load), peak_GFLOP/s.
//   peak_MiB     engine memory_stats peak over the stage minus what was live before.
//   maxrss_MiB   getrusage ru_maxrss of the process after the stage (monotonic: the
//                process-wide high-water mark so far).
// BM_stage_peaks also reports a bf16 GEMM peak (oneDNN matmul bf16×bf16→f32, 2048³) for
// the bf16 precision setting to be compared against.
// Startup: BM_startup_load/0 = the previous load path (map + copy tensors, then re-read the
// file with fread and hash it with the portable SHA-256), /1 = load_extractors today (map,
// copy, hash the mapped bytes with SHA-NI when the CPU has it). A 343 MB ViT-B/8 file.
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "autograd/autograd.hpp"
#include "engine/error.hpp"
#include "engine/precision.hpp"
#include "engine/profiler.hpp"
#include "engine/rng.hpp"
#include "engine/storage.hpp"
#include "io/image.hpp"
#include "io/safetensors.hpp"
#include "io/sha256.hpp"
#include "io/synth.hpp"
#include "io/tiff.hpp"
#include "io/transforms.hpp"
#include "models/cmdr.hpp"
#include "models/dino_vit.hpp"
#include "models/feature_assembly.hpp"
#include "models/pipeline.hpp"
#include "models/point_mae.hpp"
#include "models/workflow.hpp"
#include "ops/ops.hpp"
#include "ops/weight_cache.hpp"

namespace {

using namespace cmdr;
using namespace cmdr::models;
namespace fs = std::filesystem;

int64_t env_side() {
  const char* e = std::getenv("CMDR_BENCH_S");
  if (!e || !*e) return 224;
  const int64_t s = std::atoll(e);
  CMDR_CHECK(s >= 16 && s % 8 == 0, "CMDR_BENCH_S = '", e,
             "': expected a multiple of 8, at least 16");
  return s;
}

std::string env_sample_kind() {
  const char* e = std::getenv("CMDR_BENCH_SAMPLE");
  const std::string k = e && *e ? e : "object";
  CMDR_CHECK(k == "object" || k == "full", "CMDR_BENCH_SAMPLE = '", k,
             "': expected object (plane removed, default) or full (every position valid)");
  return k;
}

// The process-wide precision of the run (CMDR_BENCH_PRECISION, default fp32).
std::string set_precision() {
  const char* e = std::getenv("CMDR_BENCH_PRECISION");
  const std::string p = e && *e ? e : "fp32";
  cmdr::set_precision(cmdr::parse_precision(p, "CMDR_BENCH_PRECISION"));
  // CMDR_BENCH_DECONV=onednn: Decoder3D's ConvTranspose1d forwards on oneDNN's deconvolution
  // instead of the polyphase GEMMs (ops::set_conv_transpose1d_polyphase), for a side-by-side run.
  const char* d = std::getenv("CMDR_BENCH_DECONV");
  const std::string dv = d && *d ? d : "polyphase";
  CMDR_CHECK(dv == "polyphase" || dv == "onednn", "CMDR_BENCH_DECONV = '", dv,
             "': expected polyphase (default) or onednn");
  ops::set_conv_transpose1d_polyphase(dv == "polyphase");
  return p;
}

double sgemm_peak() {
  const int64_t n = 2048;
  std::vector<float> a(static_cast<std::size_t>(n * n), 0.5f), b(a), c(a);
  double best = 1e30;
  for (int r = 0; r < 4; ++r) {  // first run warms up (thread pool, JIT)
    const int64_t t0 = now_ns();
    dnnl::sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    if (r > 0) best = std::min(best, static_cast<double>(now_ns() - t0) * 1e-9);
  }
  return 2.0 * static_cast<double>(n * n * n) / best;
}

// bf16 GEMM peak: oneDNN matmul, bf16 A and B, f32 C, 2048³, best of 3 (0 if unsupported).
double bf16_gemm_peak() {
  try {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const int64_t n = 2048;
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream s(eng);
    dnnl::memory::desc a({n, n}, dt::bf16, tag::ab), b({n, n}, dt::bf16, tag::ab),
        c({n, n}, dt::f32, tag::ab);
    dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), eng));
    dnnl::memory am(a, eng), bm(b, eng), cm(c, eng);
    std::memset(am.get_data_handle(), 0x3f, static_cast<std::size_t>(n * n * 2));
    std::memset(bm.get_data_handle(), 0x3f, static_cast<std::size_t>(n * n * 2));
    double best = 1e30;
    for (int r = 0; r < 4; ++r) {
      const int64_t t0 = now_ns();
      mm.execute(s, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
      s.wait();
      if (r > 0) best = std::min(best, static_cast<double>(now_ns() - t0) * 1e-9);
    }
    return 2.0 * static_cast<double>(n * n * n) / best;
  } catch (const dnnl::error&) {
    return 0.0;
  }
}

double maxrss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // KiB on Linux
}

// ---- FLOP counts (2·MAC of the dense layers, SPEC 5 widths) ----
double mlp_flops(int64_t rows, int64_t in, int64_t out) {
  const double r = static_cast<double>((in + out) / 2);
  return 2.0 * static_cast<double>(rows) *
         (static_cast<double>(in) * r + 2 * r * r + r * static_cast<double>(out));
}
double dec2d_flops(const Decoder2DConfig& c, int64_t side, int64_t rec_rows) {
  const double L = static_cast<double>(side * side), r = static_cast<double>(c.hidden);
  const double dim = static_cast<double>(c.dim);
  const double w = static_cast<double>(c.window);
  const double full = std::floor(L / w), rest = L - full * w;
  const double pairs = full * w * w + rest * rest;  // query-key pairs inside windows
  double f = 2 * L * (dim * r + r * r);             // projection
  f += 2 * L * (3 * r * r + r * r + 2 * r * static_cast<double>(c.mlp_hidden));  // qkv, proj, mlp
  f += 4 * pairs * r;  // q·kᵀ and p·v over all heads (heads × head_dim = r)
  f += 2 * L * 9 *
       (r * static_cast<double>(c.conv1) + static_cast<double>(c.conv1 * c.conv2) +
        static_cast<double>(c.conv2) * r);  // 3 ConvT2d 3×3
  f += 2 * static_cast<double>(rec_rows) *
       (r * static_cast<double>(c.rec_hidden) +
        static_cast<double>(c.rec_hidden) * dim);  // reconstruct
  return f;
}
double dec3d_flops(const Decoder3DConfig& c) {
  const double L = static_cast<double>(c.length), C = static_cast<double>(c.channels);
  const double lb = L / 32;
  double f = 2 * C * (L * lb + lb * lb);  // projection over the position axis
  double in = C, len = lb;
  for (int64_t w : c.widths) {  // ConvT1d k4 s2: 2·Cin·Cout·4·Lin
    f += 2 * in * static_cast<double>(w) * 4 * len;
    in = static_cast<double>(w);
    len *= 2;
  }
  f += 2 * in * C * 4 * len;
  f += 2 * 2 * C * static_cast<double>(c.att_hidden);  // squeeze-excitation 1×1 convs
  return f;
}

// ---- The shared sample, extractors and model (built once) ----
struct Ctx {
  int64_t side = 224;
  std::string precision;
  std::string sample_kind;  // "object" | "full"

  fs::path dir;
  std::string rgb_png, xyz_tiff;
  Extractors ex;
  std::unique_ptr<Cmdr> model;
  SampleFeatures feats;    // compact features of the sample
  Sample sample;           // expanded
  CompactPatches compact;  // the compact form (as the trainer's cache and detect use)
  std::vector<int64_t> valid_rows;
};

Ctx& ctx() {
  static Ctx* c = [] {
    auto* x = new Ctx;
    x->side = env_side();
    x->precision = set_precision();
    x->dir = fs::temp_directory_path() / ("cmdr_bench_stages_" + std::to_string(::getpid()));
    fs::create_directories(x->dir);
    // The context lives until exit (benchmarks share it); its folder goes at exit.
    static std::string dir_to_remove = x->dir.string();
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(dir_to_remove, ec);
    });
    // CMDR_BENCH_SAMPLE=object (default): the support plane removed as `preprocess` does
    // (SPEC 2), so only the object's positions are valid — like a preprocessed MVTec 3D-AD
    // part; =full: the plane kept, every position valid (the worst case for the
    // per-position networks, SPEC 10's valid-rows saving is zero).
    x->sample_kind = env_sample_kind();
    const io::SynthSample s =
        io::synth_sample(0, "good", 7, 256, 0, false, x->sample_kind == "object");
    x->rgb_png = (x->dir / "rgb.png").string();
    x->xyz_tiff = (x->dir / "xyz.tiff").string();
    io::write_png(x->rgb_png, s.rgb);
    io::write_xyz_tiff(x->xyz_tiff, s.xyz);
    Rng rng(1);
    x->ex.vit = std::make_unique<DinoVit>();
    init_params(x->ex.vit->param_specs(), rng);
    x->ex.pmae = std::make_unique<PointMae>();
    init_params(x->ex.pmae->param_specs(), rng);
    x->model = std::make_unique<Cmdr>(CmdrConfig::spec(Mode::Fused2D3D, x->side));
    x->feats = extract_features(x->ex, x->rgb_png, x->xyz_tiff, x->side);
    x->sample = expand_features(x->feats, x->ex.rgb_dim(), x->ex.xyz_dim());
    x->compact = cache_expander(x->side, x->ex.rgb_dim(), x->ex.xyz_dim(),
                                /*dense=*/false)(to_cache_entry(x->feats))
                     .compact;
    const Tensor v = x->sample.valid.contiguous();
    for (int64_t i = 0; i < v.numel(); ++i)
      if (v.data()[i] != 0.0f) x->valid_rows.push_back(i);
    return x;
  }();
  return *c;
}

// Runs f once as warm-up, then in the benchmark loop; sets the counters.
void run_stage(benchmark::State& st, double flops, const std::function<void()>& f) {
  Ctx& c = ctx();
  // The peak of the kernel class the run uses: SGEMM in fp32, bf16 GEMM in bf16.
  const double peak = c.precision == "bf16" ? bf16_gemm_peak() : sgemm_peak();
  f();  // warm-up: primitive creation, first touch
  reset_peak_memory();
  const int64_t base = memory_stats().current_bytes;
  double secs = 0;
  for (auto _ : st) {
    const int64_t t0 = now_ns();
    f();
    const double dt = static_cast<double>(now_ns() - t0) * 1e-9;
    secs += dt;
    st.SetIterationTime(dt);
  }
  const double it = static_cast<double>(st.iterations());
  st.counters["S"] = static_cast<double>(c.side);
  st.counters["GFLOP"] = flops * 1e-9;
  if (flops > 0) {
    const double rate = flops * it / secs;
    st.counters["GFLOP/s"] = rate * 1e-9;
    st.counters["peak_frac"] = rate / peak;
  }
  st.counters["peak_GFLOP/s"] = peak * 1e-9;
  st.counters["peak_MiB"] = static_cast<double>(memory_stats().peak_bytes - base) / (1 << 20);
  st.counters["maxrss_MiB"] = maxrss_mib();
  st.SetLabel(c.precision);
  // Weights kept prepared for oneDNN (issue 8, ops/weight_cache.hpp): not in peak_MiB.
  st.counters["wcache_MiB"] =
      static_cast<double>(ops::weight_cache::stats().bytes) / static_cast<double>(1 << 20);
  if (std::getenv("CMDR_BENCH_PROFILE")) {  // one more run under the op profiler, to stderr
    Profiler::reset();
    Profiler::enable(true);
    f();
    Profiler::enable(false);
    std::fprintf(stderr, "---- profile of the stage above (%s) ----\n", c.precision.c_str());
    Profiler::print_table(std::cerr);
  }
}

#define CMDR_STAGE(fn) BENCHMARK(fn)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(2)

void BM_stage_peaks(benchmark::State& st) {
  ctx();
  double sg = 0, bf = 0;
  for (auto _ : st) {
    sg = sgemm_peak();
    bf = bf16_gemm_peak();
  }
  st.counters["sgemm_GFLOP/s"] = sg * 1e-9;
  st.counters["bf16_gemm_GFLOP/s"] = bf * 1e-9;
  st.counters["valid_frac"] =
      static_cast<double>(ctx().valid_rows.size()) / static_cast<double>(ctx().side * ctx().side);
  st.counters["points"] = static_cast<double>(ctx().feats.n_valid_points);
  st.SetLabel(ctx().sample_kind + " sample, sha256 " + sha256_auto_impl_name());
}
BENCHMARK(BM_stage_peaks)->Unit(benchmark::kMillisecond)->Iterations(1);

// ---- Extractors ----
void BM_stage_dino_vit(benchmark::State& st) {
  Ctx& c = ctx();
  const io::Image8 img = io::read_rgb_png(c.rgb_png);
  const Tensor in = io::rgb_transform(img, c.ex.vit->cfg.image);
  run_stage(st, dino_vit_flops(c.ex.vit->cfg),
            [&] { benchmark::DoNotOptimize(dino_vit_forward(*c.ex.vit, in).data()); });
}
CMDR_STAGE(BM_stage_dino_vit);

void BM_stage_pmae_fps(benchmark::State& st) {
  Ctx& c = ctx();
  const Tensor& pts = c.feats.points;
  run_stage(st, 0, [&] {
    benchmark::DoNotOptimize(farthest_point_sample(pts, c.ex.pmae->cfg.num_group).data());
  });
  st.counters["points"] = static_cast<double>(pts.size(0));
}
CMDR_STAGE(BM_stage_pmae_fps);

void BM_stage_pmae_knn(benchmark::State& st) {
  Ctx& c = ctx();
  run_stage(st, 0, [&] {
    benchmark::DoNotOptimize(
        knn_indices(c.feats.points, c.feats.centers, c.ex.pmae->cfg.group_size).data());
  });
}
CMDR_STAGE(BM_stage_pmae_knn);

// Mini-PointNet alone (neighbourhoods from a traced forward).
void BM_stage_pmae_encoder(benchmark::State& st) {
  Ctx& c = ctx();
  PointMaeTrace tr;
  point_mae_forward(*c.ex.pmae, c.feats.points, &tr);
  const PointMaeConfig& pc = c.ex.pmae->cfg;
  const double gk = static_cast<double>(pc.num_group * pc.group_size);
  // As point_mae_flops: the second conv's 2·c2 -> c3 split into a per-point c2 -> c3 and a
  // per-group c2 -> c3 on the max-pooled half (the implementation computes it that way).
  const double enc = 2 * gk *
                         static_cast<double>(3 * pc.enc_c1 + pc.enc_c1 * pc.enc_c2 +
                                             pc.enc_c2 * pc.enc_c3 + pc.enc_c3 * pc.dim) +
                     2 * static_cast<double>(pc.num_group * pc.enc_c2 * pc.enc_c3);
  run_stage(st, enc, [&] {
    benchmark::DoNotOptimize(point_mae_encoder_forward(*c.ex.pmae, tr.neighborhood).data());
  });
}
CMDR_STAGE(BM_stage_pmae_encoder);

// The whole Point-MAE forward: FPS + KNN + encoder + pos + 12 blocks (blocks alone =
// this − fps − knn − encoder).
void BM_stage_pmae_forward(benchmark::State& st) {
  Ctx& c = ctx();
  run_stage(st, point_mae_flops(c.ex.pmae->cfg), [&] {
    benchmark::DoNotOptimize(point_mae_forward(*c.ex.pmae, c.feats.points).features.data());
  });
}
CMDR_STAGE(BM_stage_pmae_forward);

// Compact features -> rgb_patch, xyz_patch, valid (SPEC 4.3), as detect / the cache do.
void BM_stage_assembly(benchmark::State& st) {
  Ctx& c = ctx();
  run_stage(st, 0, [&] {
    benchmark::DoNotOptimize(expand_features(c.feats, c.ex.rgb_dim(), c.ex.xyz_dim()).xyz.data());
  });
}
CMDR_STAGE(BM_stage_assembly);

// ---- Networks, one at a time. Arg 1 = 1: the product path (as `detect` /
// Cmdr::infer(CompactPatches) and Cmdr::train_step(CompactPatches): SPEC 10 restructured
// first layers on the compact features, per-position layers on the valid rows only);
// Arg 1 = 0: the literal networks on the dense patches, every row. GFLOP always counts
// the literal formulation on the rows the path computes (so restructured rates are
// effective rates). ----
struct NetInputs {
  std::vector<int64_t> rows;  // valid rows; empty = every position
  std::shared_ptr<const ops::CsrMatrix> u_rows, p_rows;
  ag::Var tokens, groups;
  Tensor rgb_t, xyz_t, mask;  // targets at the rows used, and the loss mask
};
NetInputs net_inputs(Ctx& c) {
  const CompactPatches& x = c.compact;
  NetInputs in;
  if (static_cast<int64_t>(c.valid_rows.size()) < c.side * c.side) in.rows = c.valid_rows;
  in.u_rows =
      in.rows.empty() ? x.up : std::make_shared<const ops::CsrMatrix>(x.up->select_rows(in.rows));
  in.p_rows = in.rows.empty()
                  ? x.xyz_op
                  : std::make_shared<const ops::CsrMatrix>(x.xyz_op->select_rows(in.rows));
  in.tokens = ag::Var(x.rgb_tokens);
  in.groups = ag::Var(x.group_features);
  in.rgb_t = x.rgb_rows(in.rows);
  in.xyz_t = x.xyz_rows(in.rows);
  in.mask = Tensor::ones({in.rgb_t.size(0)});
  return in;
}
// The product path's output of network n (rows: valid rows, Dec3D: every row).
ag::Var net_product(Ctx& c, const NetInputs& in, int n) {
  Cmdr& m = *c.model;
  switch (n) {
    case kMap2Dto3D:
      return m.map2Dto3D->forward_sparse(in.u_rows, in.tokens);
    case kMap3Dto2D:
      return m.map3Dto2D->forward_sparse(in.p_rows, in.groups);
    case kDec2D:
      return m.dec2d->forward_sparse(c.compact.up, in.tokens, in.rows);
    default:
      return m.dec3d->forward_sparse(c.compact.xyz_op, in.groups);
  }
}
ag::Var net_literal(Ctx& c, int n, const ag::Var& rgb, const ag::Var& xyz,
                    const std::vector<int64_t>* rows) {
  Cmdr& m = *c.model;
  switch (n) {
    case kMap2Dto3D:
      return m.map2Dto3D->forward(rgb);
    case kMap3Dto2D:
      return m.map3Dto2D->forward(xyz);
    case kDec2D:
      return rows ? m.dec2d->forward_rows(rgb, *rows) : m.dec2d->forward(rgb);
    default:
      return m.dec3d->forward(xyz);
  }
}

double net_flops(const Ctx& c, int n, int64_t rows) {
  const CmdrConfig& k = c.model->config();
  switch (n) {
    case kMap2Dto3D:
      return mlp_flops(rows, k.rgb_dim, k.xyz_dim);
    case kMap3Dto2D:
      return mlp_flops(rows, k.xyz_dim, k.rgb_dim);
    case kDec2D:
      return dec2d_flops(k.dec2d, k.side, rows);
    default:
      return dec3d_flops(k.dec3d);
  }
}

// Forward, eval mode, no gradient.
void BM_stage_net_forward(benchmark::State& st) {
  Ctx& c = ctx();
  const int n = static_cast<int>(st.range(0));
  const bool product = st.range(1) == 1;
  ag::Module* m = c.model->net(static_cast<Net>(n));
  m->eval();
  const ag::Var rgb(c.sample.rgb), xyz(c.sample.xyz);
  const NetInputs in = net_inputs(c);
  const int64_t rows = product && n != kDec3D && !in.rows.empty()
                           ? static_cast<int64_t>(in.rows.size())
                           : c.side * c.side;
  run_stage(st, net_flops(c, n, rows), [&] {
    ag::NoGrad ng;
    benchmark::DoNotOptimize(
        (product ? net_product(c, in, n) : net_literal(c, n, rgb, xyz, nullptr)).value().data());
  });
  m->train();
  st.SetLabel(std::string(kNetNames[static_cast<std::size_t>(n)]) + " forward " +
              (product ? "product " : "literal ") + c.precision);
}
BENCHMARK(BM_stage_net_forward)
    ->ArgsProduct({{0, 1, 2, 3}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime()
    ->Iterations(2);

// Forward + masked cosine loss + backward, train mode, no optimizer step. Both paths use
// the valid rows only for the per-position networks, as Cmdr::train_step does.
void BM_stage_net_train(benchmark::State& st) {
  Ctx& c = ctx();
  const int n = static_cast<int>(st.range(0));
  const bool product = st.range(1) == 1;
  ag::Module* m = c.model->net(static_cast<Net>(n));
  m->train();
  const std::vector<int64_t>& rows = c.valid_rows;
  const bool sel = n != kDec3D && static_cast<int64_t>(rows.size()) < c.side * c.side;
  const ag::Var rgb(c.sample.rgb), xyz(c.sample.xyz);
  const ag::Var rgb_sel(sel ? ops::index_select_forward(c.sample.rgb, rows) : c.sample.rgb);
  const ag::Var xyz_sel(sel ? ops::index_select_forward(c.sample.xyz, rows) : c.sample.xyz);
  const Tensor sel_valid = Tensor::ones({static_cast<int64_t>(rows.size())});
  const int64_t nrows = sel ? static_cast<int64_t>(rows.size()) : c.side * c.side;
  const NetInputs in = net_inputs(c);
  run_stage(st, 3 * net_flops(c, n, nrows), [&] {
    m->zero_grad();
    ag::Var out, target;
    if (product) {
      out = net_product(c, in, n);
      target = ag::Var(n == kMap2Dto3D || n == kDec3D ? in.xyz_t : in.rgb_t);
      if (n == kDec3D && !in.rows.empty()) out = ag::index_select(out, in.rows);
      ag::backward(masked_cosine_loss(out, target, in.mask));
      return;
    }
    if (n == kMap2Dto3D) out = net_literal(c, n, rgb_sel, xyz_sel, nullptr), target = xyz_sel;
    if (n == kMap3Dto2D) out = net_literal(c, n, rgb_sel, xyz_sel, nullptr), target = rgb_sel;
    if (n == kDec2D) out = net_literal(c, n, rgb, xyz, sel ? &rows : nullptr), target = rgb_sel;
    if (n == kDec3D) out = net_literal(c, n, rgb, xyz, nullptr), target = xyz;
    ag::Var loss = masked_cosine_loss(out, target, sel ? sel_valid : c.sample.valid);
    ag::backward(loss);
  });
  m->zero_grad();
  st.SetLabel(std::string(kNetNames[static_cast<std::size_t>(n)]) + " fwd+bwd " +
              (product ? "product " : "literal ") + c.precision);
}
BENCHMARK(BM_stage_net_train)
    ->ArgsProduct({{0, 1, 2, 3}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime()
    ->Iterations(2);

// ---- Fusion: per-position error maps of the four outputs + SPEC 7 fusion ----
void BM_stage_fusion(benchmark::State& st) {
  Ctx& c = ctx();
  const CmdrOutputs o = c.model->infer(c.sample.rgb, c.sample.xyz, c.sample.valid, Mode::Fused2D3D);
  const int64_t s = c.side;
  run_stage(st, 0, [&] {
    FusionInputs fi;
    fi.valid = c.sample.valid.reshape({s, s});
    fi.d_map2d = error_map(o.mapped_2d, c.sample.rgb, s);
    fi.d_map3d = error_map(o.mapped_3d, c.sample.xyz, s);
    fi.d_rec2d = error_map(o.recon_2d, c.sample.rgb, s);
    fi.d_rec3d = error_map(o.recon_3d, c.sample.xyz, s);
    benchmark::DoNotOptimize(fuse(fi, Mode::Fused2D3D).image_score);
  });
}
CMDR_STAGE(BM_stage_fusion);

// ---- Whole detect (weights loaded beforehand): read → transforms → extractors →
// assembly → networks → fusion → score, through score_sample as `detect` calls it ----
void BM_stage_detect(benchmark::State& st) {
  Ctx& c = ctx();
  // Useful work: the literal formulation at the valid rows (what the output needs).
  const int64_t rows = static_cast<int64_t>(c.valid_rows.size());
  const double flops = dino_vit_flops(c.ex.vit->cfg) + point_mae_flops(c.ex.pmae->cfg) +
                       net_flops(c, 0, rows) + net_flops(c, 1, rows) + net_flops(c, 2, rows) +
                       net_flops(c, 3, rows);
  StageTimes t;
  run_stage(st, flops, [&] {
    ScoredSample r = score_sample(*c.model, c.ex, c.rgb_png, c.xyz_tiff);
    t = r.t;
    benchmark::DoNotOptimize(r.out.fusion.image_score);
  });
  st.counters["read_ms"] = t.read;
  st.counters["transform_ms"] = t.transform;
  st.counters["rgb_ext_ms"] = t.rgb_extractor;
  st.counters["xyz_ext_ms"] = t.xyz_extractor;
  st.counters["assemble_ms"] = t.assemble;
  st.counters["networks_ms"] = t.networks;  // networks + fusion (one call)
}
CMDR_STAGE(BM_stage_detect);

// ---- Whole training step: cache entry -> Sample (as the trainer's FeatureCache::get) and
// Cmdr::train_step (4 networks, forward + backward + Adam, batch 1). /1 = the trainer's
// path (compact features, SPEC 10 restructured step), /0 = the literal dense step. GFLOP
// counts the literal formulation in both, so /1's GFLOP/s is an effective rate. ----
void BM_stage_train_step(benchmark::State& st) {
  Ctx& c = ctx();
  const bool compact = st.range(0) == 1;
  const FeatureCache::Entry entry = to_cache_entry(c.feats);
  const FeatureCache::Expand expand =
      cache_expander(c.side, c.ex.rgb_dim(), c.ex.xyz_dim(), /*dense=*/!compact);
  const int64_t rows = static_cast<int64_t>(c.valid_rows.size());
  const double flops = 3 * (net_flops(c, 0, rows) + net_flops(c, 1, rows) + net_flops(c, 2, rows) +
                            net_flops(c, 3, rows));
  run_stage(st, flops, [&] {
    const Sample s = expand(entry);
    const StepResult r =
        compact ? c.model->train_step(s.compact) : c.model->train_step(s.rgb, s.xyz, s.valid);
    benchmark::DoNotOptimize(r.loss[0]);
  });
  st.SetLabel(std::string(compact ? "restructured " : "literal ") + c.precision);
}
CMDR_STAGE(BM_stage_train_step)->Arg(1)->Arg(0);

// ---- Start-up: load + hash a 343 MB ViT-B/8 weight file ----
struct WeightFile {
  std::string path;
  WeightFile() {
    path = (fs::temp_directory_path() /
            ("cmdr_bench_vit_" + std::to_string(::getpid()) + ".safetensors"))
               .string();
    DinoVit m;
    Rng rng(3);
    const std::vector<ParamSpec> specs = m.param_specs();
    init_params(specs, rng);
    st::Writer w;  // no random-weights flag: loading must not print warnings every iteration
    for (const ParamSpec& s : specs) w.add(s.name, *s.target);
    w.write(path);
  }
  ~WeightFile() { std::remove(path.c_str()); }
};

// The previous hash: a second pass over the file with fread and the portable kernel.
std::string sha256_fread_portable(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  CMDR_CHECK(f, "cannot open '", path, "'");
  Sha256 s(Sha256Impl::Portable);
  std::vector<uint8_t> chunk(1 << 20);
  for (;;) {
    const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), f.get());
    if (got) s.update(chunk.data(), got);
    if (got < chunk.size()) break;
  }
  return s.hex_digest();
}

void BM_startup_load(benchmark::State& st) {
  static WeightFile wf;
  const bool now = st.range(0) != 0;
  std::string hash;
  for (auto _ : st) {
    if (now) {
      Extractors ex = load_extractors(wf.path, "", ExtractorOptions{}, true);
      hash = ex.rgb_sha256;
    } else {
      st::File f(wf.path);
      DinoVit vit(dino_config_from(f));
      vit.load(f);
      hash = sha256_fread_portable(wf.path);
    }
    benchmark::DoNotOptimize(hash.data());
  }
  st.counters["MB"] = static_cast<double>(fs::file_size(wf.path)) * 1e-6;
  st.SetLabel(now ? std::string("mapped hash, ") + sha256_auto_impl_name()
                  : "fread re-read, portable hash");
}
BENCHMARK(BM_startup_load)
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

// SHA-256 throughput of each kernel on 64 MiB in memory.
void BM_sha256(benchmark::State& st) {
  const auto impl = static_cast<Sha256Impl>(st.range(0));
  if (!sha256_impl_available(impl)) {
    st.SkipWithError("kernel not available on this CPU");
    return;
  }
  std::vector<uint8_t> buf(64u << 20, 0xa5);
  for (auto _ : st) {
    Sha256 h(impl);
    h.update(buf.data(), buf.size());
    benchmark::DoNotOptimize(h.hex_digest());
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * static_cast<int64_t>(buf.size()));
  st.SetLabel(impl == Sha256Impl::Portable ? "portable" : "sha-ni");
}
BENCHMARK(BM_sha256)
    ->Arg(static_cast<int>(Sha256Impl::Portable))
    ->Arg(static_cast<int>(Sha256Impl::ShaNi))
    ->Unit(benchmark::kMillisecond);

}  // namespace
