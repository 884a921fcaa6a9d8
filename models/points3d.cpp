// 3D-only anomaly detection on unorganised point-cloud chunks (see points3d.hpp).
#include "models/points3d.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "engine/rng.hpp"
#include "io/pointcloud.hpp"
#include "io/safetensors.hpp"
#include "io/sha256.hpp"
#include "models/feature_assembly.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

int64_t grid_side(int64_t n) {
  CMDR_CHECK(n >= 1, "grid_side: n = ", n, " must be >= 1");
  int64_t g = static_cast<int64_t>(std::sqrt(static_cast<double>(n)));
  while (g * g < n) ++g;
  while (g > 1 && (g - 1) * (g - 1) >= n) --g;
  return g;
}

// points [N, 3] -> [3, G, G]
Tensor points_to_grid(const Tensor& points) {
  CMDR_CHECK(points.dim() == 2 && points.size(1) == 3 && points.size(0) >= 1,
             "points_to_grid: points ", points.str(), ", expected [N >= 1, 3]");
  const int64_t n = points.size(0), g = grid_side(n);
  const Tensor pc = points.contiguous();
  Tensor out = Tensor::zeros({3, g, g});
  const float* p = pc.data();
  float* o = out.data();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < 3; ++k) o[k * g * g + i] = p[3 * i + k];
  return out;
}

// labels [N] -> [G, G]
Tensor labels_to_grid(const std::vector<uint8_t>& labels) {
  const int64_t n = static_cast<int64_t>(labels.size()), g = grid_side(n);
  Tensor out = Tensor::zeros({g, g});
  float* o = out.data();
  for (int64_t i = 0; i < n; ++i) o[i] = labels[static_cast<std::size_t>(i)] ? 1.0f : 0.0f;
  return out;
}

// [C, G, G] -> [C, S, S]
Tensor resize_grid(const Tensor& grid, int64_t S) {
  CMDR_CHECK(grid.dim() == 3 && S >= 1, "resize_grid: grid ", grid.str(), ", S ", S);
  const Tensor x = grid.reshape({1, grid.size(0), grid.size(1), grid.size(2)});
  return ops::resize_nearest2d_forward(x, S, S).reshape({grid.size(0), S, S});
}

PointPixels point_pixels(int64_t n, int64_t S) {
  const int64_t g = grid_side(n);
  // The resize's own source index per output column (and row: the grid is square), taken
  // from the op itself on an index ramp so the inverse can never disagree with it.
  Tensor ramp = Tensor::empty({1, 1, 1, g});
  for (int64_t i = 0; i < g; ++i) ramp.data()[i] = static_cast<float>(i);
  const Tensor src = ops::resize_nearest2d_forward(ramp, 1, S);
  std::vector<int64_t> lo(static_cast<std::size_t>(g), -1), hi(static_cast<std::size_t>(g), -1);
  for (int64_t d = 0; d < S; ++d) {
    const int64_t r = static_cast<int64_t>(src.data()[d]);
    if (lo[r] < 0) lo[r] = d;
    hi[r] = d + 1;
  }
  for (int64_t r = 0; r < g; ++r) {
    if (lo[r] >= 0) continue;
    const int64_t d = std::min<int64_t>(
        S - 1, static_cast<int64_t>((static_cast<double>(r) + 0.5) * static_cast<double>(S) /
                                    static_cast<double>(g)));
    lo[r] = d;
    hi[r] = d + 1;
  }
  PointPixels pp;
  pp.n = n;
  pp.side = S;
  pp.offset.reserve(static_cast<std::size_t>(n + 1));
  pp.offset.push_back(0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = i / g, c = i % g;
    for (int64_t y = lo[r]; y < hi[r]; ++y)
      for (int64_t x = lo[c]; x < hi[c]; ++x) pp.pixel.push_back(y * S + x);
    pp.offset.push_back(static_cast<int64_t>(pp.pixel.size()));
  }
  return pp;
}

std::vector<float> point_scores(const Tensor& map, const PointPixels& pp) {
  CMDR_CHECK(map.numel() == pp.side * pp.side, "point_scores: map ", map.str(), " vs side ",
             pp.side);
  const Tensor mc = map.contiguous();
  const float* m = mc.data();
  std::vector<float> out(static_cast<std::size_t>(pp.n));
  for (int64_t i = 0; i < pp.n; ++i) {
    double s = 0;
    for (int64_t k = pp.offset[i]; k < pp.offset[i + 1]; ++k) s += m[pp.pixel[k]];
    out[i] = static_cast<float>(s / static_cast<double>(pp.offset[i + 1] - pp.offset[i]));
  }
  return out;
}

PointsMaps points_maps(const Tensor& d_rec3d) {
  CMDR_CHECK(d_rec3d.dim() == 2, "points_maps: d_rec3d ", d_rec3d.str(), ", expected [S, S]");
  PointsMaps r;
  r.map = box_filter(d_rec3d, 5);  // once (issue 5 item 6)
  const float* m = r.map.data();
  const int64_t n = r.map.numel();
  double sum = 0;
  int64_t cnt = 0;
  float mx = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (m[i] != 0.0f) {
      sum += m[i];
      ++cnt;
    }
    mx = std::max(mx, m[i]);
  }
  // An all-zero map (no valid position) divides by 1: maps stay zero, score 0.
  const double mnz = cnt > 0 ? sum / static_cast<double>(cnt) : 1.0;
  const float inv_sqrt = static_cast<float>(1.0 / std::sqrt(mnz));
  const float inv = static_cast<float>(1.0 / mnz);
  r.pixel_map = Tensor::empty(r.map.shape());
  r.aupro_map = Tensor::empty(r.map.shape());
  for (int64_t i = 0; i < n; ++i) {
    r.pixel_map.data()[i] = m[i] * inv_sqrt;
    r.aupro_map.data()[i] = m[i] * inv;
  }
  r.image_score = mx * inv_sqrt;
  return r;
}

ChunkFeatures chunk_features(const PointMae& pmae, const Tensor& points, int64_t S,
                             const std::string& what) {
  const Tensor cloud = resize_grid(points_to_grid(points), S);
  ValidPoints vp = valid_points(cloud);
  const int64_t nv = vp.xyz.size(0);
  const int64_t need = std::max(pmae.cfg.group_size, pmae.cfg.num_group);
  CMDR_CHECK(nv >= need, "points: '", what, "' has ", nv,
             " valid points (all coordinates "
             "non-zero) of ",
             points.size(0), " after resizing to ", S, "×", S, ", fewer than the ", need,
             " needed by Point-MAE (", pmae.cfg.num_group, " groups of ", pmae.cfg.group_size, ")");
  PointMaeOutput pm;
  {
    ProfileScope prof("points.point_mae");
    pm = point_mae_forward(pmae, vp.xyz);
  }
  ChunkFeatures f;
  f.points = vp.xyz;
  f.pixel = std::move(vp.pixel);
  f.centers = pm.centers;
  f.features = pm.features;
  return f;
}

FeatureCache::Entry chunk_entry(const ChunkFeatures& f, int64_t S) {
  Tensor pix = Tensor::empty({static_cast<int64_t>(f.pixel.size())});
  for (std::size_t i = 0; i < f.pixel.size(); ++i) pix.data()[i] = static_cast<float>(f.pixel[i]);
  return {{"points", f.points},
          {"pixel", pix},
          {"centers", f.centers},
          {"features", f.features},
          {"side", Tensor::full({1}, static_cast<float>(S))}};
}

Sample expand_chunk_entry(const FeatureCache::Entry& e) {
  const Tensor& pix = e.at("pixel");
  std::vector<int64_t> pixel(static_cast<std::size_t>(pix.numel()));
  for (std::size_t i = 0; i < pixel.size(); ++i) pixel[i] = static_cast<int64_t>(pix.data()[i]);
  const int64_t S = static_cast<int64_t>(e.at("side").data()[0]);
  ProfileScope prof("points.assemble_xyz");
  Sample s;
  // Mode 3d never reads rgb, but Cmdr wraps it in a Var, which must hold a tensor.
  s.rgb = Tensor::zeros({1});
  s.xyz = assemble_xyz(e.at("points"), pixel, e.at("centers"), e.at("features"), S);
  s.valid = valid_mask(s.xyz);
  return s;
}

void init_point_mae_random(PointMae& m, uint64_t seed) {
  Rng rng(seed);
  init_params(m.param_specs(), rng);  // the same timm-style init as `init-extractors`
}

namespace {

using json = nlohmann::json;

void say(bool quiet, const std::string& s) {
  if (!quiet) std::cerr << "points: " << s << "\n";
}

json pmae_json(const PointMaeConfig& c) {
  return {{"num_group", c.num_group},
          {"group_size", c.group_size},
          {"enc_c1", c.enc_c1},
          {"enc_c2", c.enc_c2},
          {"enc_c3", c.enc_c3},
          {"pos_hidden", c.pos_hidden},
          {"dim", c.dim},
          {"depth", c.depth},
          {"heads", c.heads},
          {"mlp", c.mlp},
          {"taps", c.taps},
          {"bn_running_stats", c.bn_running_stats}};
}

PointMaeConfig pmae_from_json(const json& j) {
  PointMaeConfig c;
  c.num_group = j.at("num_group");
  c.group_size = j.at("group_size");
  c.enc_c1 = j.at("enc_c1");
  c.enc_c2 = j.at("enc_c2");
  c.enc_c3 = j.at("enc_c3");
  c.pos_hidden = j.at("pos_hidden");
  c.dim = j.at("dim");
  c.depth = j.at("depth");
  c.heads = j.at("heads");
  c.mlp = j.at("mlp");
  c.taps = j.at("taps").get<std::vector<int64_t>>();
  c.bn_running_stats = j.at("bn_running_stats");
  return c;
}

CmdrConfig points_cmdr_config(int64_t S, const PointMaeConfig& pc, const Decoder3DConfig& d3,
                              float lr, float clip, uint64_t seed) {
  CMDR_CHECK(S >= 8 && S % 8 == 0, "points: --size ", S,
             " must be a positive multiple of 8 (Decoder3D needs S² divisible by 32)");
  CmdrConfig c;
  c.mode = Mode::Only3D;
  c.side = S;
  c.xyz_dim = pc.out_dim();
  c.dec3d = d3;
  c.dec3d.length = S * S;
  c.dec3d.channels = pc.out_dim();
  c.lr = lr;
  c.clip_grad = clip;
  c.seed = seed;
  return c;
}

// Loads the Point-MAE weights (or random ones) and returns the identity recorded in the
// checkpoint: the SHA-256 of the file, or "random:<seed>".
std::string load_pmae(PointMae& m, const std::string& path, uint64_t seed, bool quiet) {
  if (path.empty()) {
    std::cerr << "points: WARNING: no --xyz-weights given: Point-MAE uses RANDOM weights (seed "
              << seed << "); results are not meaningful beyond tests\n";
    init_point_mae_random(m, seed);
    return "random:" + std::to_string(seed);
  }
  st::File f(path);
  const LoadReport r = m.load(f);
  if (!r.note().empty()) say(quiet, r.note());
  return sha256_file_hex(path);
}

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Scores one sample: Decoder3D in eval mode, d_rec3d (masked), step 5.
PointsMaps score_sample(Cmdr& model, const Sample& s) {
  ProfileScope prof("points.score");
  const CmdrOutputs out = model.infer(s.rgb, s.xyz, s.valid, Mode::Only3D);
  return points_maps(out.fusion.d_rec3d);
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

}  // namespace

int run_points_train(const PointsTrainOptions& opt) {
  CMDR_CHECK(!opt.out.empty(), "points train: --out is required");
  CMDR_CHECK(opt.epochs >= 1, "points train: --epochs ", opt.epochs, " must be >= 1");
  const CmdrConfig cfg =
      points_cmdr_config(opt.side, opt.pmae, opt.dec3d, opt.lr, opt.clip_grad, opt.seed);
  const io::PointDataset ds = io::list_point_dataset(opt.points_dir, true, false);
  PointMae pmae(opt.pmae);
  const std::string pmae_id = load_pmae(pmae, opt.xyz_weights, opt.seed, opt.quiet);
  const int64_t S = opt.side;
  if (opt.profile) Profiler::enable(true);

  // Frozen features once per chunk, compact (SPEC 10), expanded on demand.
  const auto t0 = Clock::now();
  FeatureCache cache(int64_t{4} << 30, "", expand_chunk_entry);
  int64_t flagged = 0;
  for (std::size_t i = 0; i < ds.train.size(); ++i) {
    const io::PointChunk c = io::read_point_chunk(ds.train[i].path);
    for (uint8_t l : c.labels) flagged += l;
    cache.add(chunk_entry(chunk_features(pmae, c.xyz, S, c.path), S));
    if (!opt.quiet)
      std::fprintf(stderr, "points: features %zu/%zu (%.1f s)\n", i + 1, ds.train.size(),
                   since(t0));
  }
  if (flagged > 0)
    std::cerr << "points: WARNING: " << flagged
              << " training point(s) are labelled anomalous; training uses them as normal\n";
  say(opt.quiet, std::to_string(cache.size()) + " training chunks, features cached in memory (" +
                     std::to_string(cache.bytes_in_memory() >> 10) + " KiB)");

  Cmdr model(cfg);
  TrainOptions to;
  to.epochs = opt.epochs;
  to.seed = opt.seed;
  to.progress = !opt.quiet;
  const std::vector<EpochStats> hist = train(model, cache, to);
  json losses = json::array();
  for (const EpochStats& e : hist) {
    const double l = e.mean_loss[kDec3D];
    losses.push_back({{"epoch", e.epoch}, {"rec3d", std::isfinite(l) ? json(l) : json(nullptr)}});
  }
  CMDR_CHECK(!hist.empty() && std::isfinite(hist.back().mean_loss[kDec3D]),
             "points train: the last epoch has no finite rec3d loss (training diverged; "
             "try --clip-grad); no checkpoint written");

  // Decision threshold: 1.05 × the largest image score of normal chunks (validation if
  // present, else the training chunks, which under-estimates the spread of unseen data).
  float max_score = 0.0f;
  std::string rule;
  if (!ds.validation.empty()) {
    for (const io::PointFile& f : ds.validation) {
      const io::PointChunk c = io::read_point_chunk(f.path);
      const Sample s = expand_chunk_entry(chunk_entry(chunk_features(pmae, c.xyz, S, c.path), S));
      max_score = std::max(max_score, score_sample(model, s).image_score);
    }
    rule =
        "1.05 x max image score of " + std::to_string(ds.validation.size()) + " validation chunks";
  } else {
    for (int64_t i = 0; i < cache.size(); ++i)
      max_score = std::max(max_score, score_sample(model, cache.get(i)).image_score);
    rule = "1.05 x max image score of " + std::to_string(cache.size()) +
           " training chunks (no validation folder)";
  }
  const float threshold = 1.05f * max_score;
  say(opt.quiet, "threshold " + fmt(threshold) + " (" + rule + ")");

  st::Writer w;
  for (const auto& [k, t] : model.state_dict()) w.add(k, t);
  w.set_metadata("cmdr.format", "cmdr-iad-points/1");
  w.set_metadata("cmdr.kind", "points");
  w.set_metadata("cmdr.mode", "3d");
  w.set_metadata("cmdr.size", std::to_string(S));
  w.set_metadata("cmdr.class", "points");
  w.set_metadata("cmdr.epochs", std::to_string(opt.epochs));
  w.set_metadata("cmdr.seed", std::to_string(opt.seed));
  w.set_metadata("cmdr.lr", fmt(opt.lr));
  w.set_metadata("cmdr.losses", losses.dump());
  w.set_metadata("cmdr.threshold", fmt(threshold));
  w.set_metadata("cmdr.threshold_rule", rule);
  w.set_metadata("cmdr.xyz_sha256", pmae_id);
  w.set_metadata("cmdr.xyz_weights", opt.xyz_weights);
  w.set_metadata("cmdr.version", CMDR_VERSION);
  w.set_metadata("cmdr.points.pmae", pmae_json(opt.pmae).dump());
  w.set_metadata("cmdr.points.dec3d",
                 json{{"widths", cfg.dec3d.widths}, {"att_hidden", cfg.dec3d.att_hidden}}.dump());
  w.write(opt.out);
  say(opt.quiet, "wrote " + opt.out + " (" + std::to_string(hist.size()) + " epochs, " +
                     fmt(since(t0)) + " s, final rec3d loss " + fmt(hist.back().mean_loss[kDec3D]) +
                     ")");
  if (opt.profile) Profiler::print_table(std::cerr);
  return 0;
}

int run_points_evaluate(const PointsEvalOptions& opt, PointsEvalResult* result) {
  st::File ck(opt.checkpoint);
  const auto& md = ck.metadata();
  auto meta = [&](const char* k) -> std::string {
    const auto it = md.find(k);
    CMDR_CHECK(it != md.end(), "points evaluate: checkpoint '", opt.checkpoint,
               "' lacks metadata '", k, "' (not written by the points trainer?)");
    return it->second;
  };
  CMDR_CHECK(meta("cmdr.kind") == "points" && meta("cmdr.mode") == "3d", "points evaluate: '",
             opt.checkpoint, "' is a ", meta("cmdr.kind"), " checkpoint of mode ",
             meta("cmdr.mode"), ", expected a points checkpoint of mode 3d");
  const int64_t S = std::stoll(meta("cmdr.size"));
  const uint64_t seed = std::stoull(meta("cmdr.seed"));
  const PointMaeConfig pc = pmae_from_json(json::parse(meta("cmdr.points.pmae")));
  const json dj = json::parse(meta("cmdr.points.dec3d"));
  Decoder3DConfig d3;
  d3.widths = dj.at("widths").get<std::array<int64_t, 4>>();
  d3.att_hidden = dj.at("att_hidden");
  const float threshold = std::stof(meta("cmdr.threshold"));

  PointMae pmae(pc);
  const std::string want = meta("cmdr.xyz_sha256");
  std::string have;
  if (opt.xyz_weights.empty() && want.rfind("random:", 0) == 0) {
    have = load_pmae(pmae, "", std::stoull(want.substr(7)), opt.quiet);
  } else {
    have = load_pmae(pmae, opt.xyz_weights, seed, opt.quiet);
  }
  if (have != want) {
    CMDR_CHECK(opt.ignore_hash, "points evaluate: the Point-MAE weights '", opt.xyz_weights, "' (",
               have, ") are not the ones the checkpoint was trained with (", want,
               "); pass the right --xyz-weights or override with --allow-weight-mismatch "
               "(`points evaluate`: --ignore-weights-hash)");
    std::cerr << "points: WARNING: Point-MAE weights differ from the checkpoint's (" << have
              << " vs " << want << "); continuing as asked (weight-mismatch override)\n";
  }

  Cmdr model(points_cmdr_config(S, pc, d3, 1e-3f, 0.0f, seed));
  ag::StateDict sd;
  for (const st::TensorInfo& t : ck.tensors()) sd[t.name] = ck.get(t.name);
  model.load_state_dict(sd, true);

  const io::PointDataset ds = io::list_point_dataset(opt.points_dir, false, true);
  if (opt.profile) Profiler::enable(true);
  PointsEvalResult r;
  r.threshold = threshold;
  std::vector<float> pscores;
  std::vector<uint8_t> plabels, gt;
  std::vector<float> aupro_maps;
  const auto t0 = Clock::now();
  for (std::size_t i = 0; i < ds.test.size(); ++i) {
    const io::PointFile& f = ds.test[i];
    io::PointChunk c = io::read_point_chunk(f.path);
    const int64_t n = c.xyz.size(0);
    if (c.labels.empty()) {
      CMDR_CHECK(f.known_good, "points evaluate: test chunk '", f.path,
                 "' has no labels (no label column/property, no <stem>.labels.npy|txt) and is "
                 "not under a 'good' folder");
      c.labels.assign(static_cast<std::size_t>(n), 0);
    }
    const Sample s = expand_chunk_entry(chunk_entry(chunk_features(pmae, c.xyz, S, c.path), S));
    const PointsMaps m = score_sample(model, s);
    const std::vector<float> ps = point_scores(m.pixel_map, point_pixels(n, S));
    pscores.insert(pscores.end(), ps.begin(), ps.end());
    plabels.insert(plabels.end(), c.labels.begin(), c.labels.end());
    const Tensor g =
        resize_grid(labels_to_grid(c.labels).reshape({1, grid_side(n), grid_side(n)}), S);
    for (int64_t k = 0; k < S * S; ++k) gt.push_back(g.data()[k] != 0.0f ? 1 : 0);
    aupro_maps.insert(aupro_maps.end(), m.aupro_map.data(), m.aupro_map.data() + S * S);
    uint8_t any = 0;
    for (uint8_t l : c.labels) any |= l;
    for (uint8_t l : c.labels) r.anomalous_points += l;
    r.points += n;
    r.paths.push_back(f.path);
    r.image_scores.push_back(m.image_score);
    r.image_labels.push_back(any);
    if (!opt.quiet)
      std::fprintf(stderr, "points: %zu/%zu %s score %.4f %s (%.1f s)\n", i + 1, ds.test.size(),
                   f.path.c_str(), m.image_score, m.image_score > threshold ? "NOK" : "OK",
                   since(t0));
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t nimg = static_cast<int64_t>(r.image_scores.size());
  int64_t pos_img = 0;
  for (uint8_t l : r.image_labels) pos_img += l;
  r.i_auroc = (pos_img > 0 && pos_img < nimg)
                  ? metrics::auroc(r.image_scores.data(), r.image_labels.data(), nimg, "I-AUROC")
                  : nan;
  r.p_auroc = (r.anomalous_points > 0 && r.anomalous_points < r.points)
                  ? metrics::auroc(pscores.data(), plabels.data(), r.points, "P-AUROC (per point)")
                  : nan;
  bool any_gt = false, any_ok = false;
  for (uint8_t v : gt) (v ? any_gt : any_ok) = true;
  if (any_gt && any_ok) {
    const metrics::ProCurve pro =
        metrics::pro_curve(aupro_maps.data(), gt.data(), nimg, S, S,
                           metrics::protocol_thresholds(metrics::Protocol::Paper));
    for (std::size_t k = 0; k < metrics::kAuproLimits.size(); ++k)
      r.aupro[k] = metrics::aupro(pro, metrics::kAuproLimits[k]);
  } else {
    r.aupro.fill(nan);
  }
  if (!opt.quiet && (pos_img == 0 || pos_img == nimg))
    std::cerr << "points: WARNING: the test set has only " << (pos_img ? "anomalous" : "normal")
              << " chunks: I-AUROC is undefined\n";

  metrics::Result mr;
  mr.i_auroc = r.i_auroc;
  mr.p_auroc = r.p_auroc;
  mr.aupro = r.aupro;
  if (opt.print) {
    std::cout << "points (" << nimg << " chunks, " << r.points << " points, " << r.anomalous_points
              << " anomalous; P-AUROC per point, AUPRO on the " << S << "×" << S << " grids)\n";
    std::cout << metrics::format_table({{"points", mr}});
    int64_t nok = 0;
    for (float s : r.image_scores) nok += s > threshold;
    std::cout << "threshold " << fmt(threshold) << ": " << nok << " NOK, " << nimg - nok << " OK\n";
  }
  if (!opt.json.empty()) {
    auto num = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
    json aj;
    for (std::size_t k = 0; k < metrics::kAuproLimits.size(); ++k) {
      char key[16];
      std::snprintf(key, sizeof key, "%g", metrics::kAuproLimits[k]);
      aj[key] = num(r.aupro[k]);
    }
    json cls = {{"i_auroc", num(r.i_auroc)}, {"p_auroc", num(r.p_auroc)}, {"aupro", aj}};
    const json j = {{"protocol", "points"},
                    {"p_auroc_unit", "point"},
                    {"aupro_grid", S},
                    {"chunks", nimg},
                    {"points", r.points},
                    {"anomalous_points", r.anomalous_points},
                    {"threshold", threshold},
                    {"classes", {{"points", cls}}},
                    {"mean", cls}};
    std::ofstream f(opt.json);
    CMDR_CHECK(f.good(), "points evaluate: cannot write --json '", opt.json, "'");
    f << j.dump(2) << "\n";
  }
  if (!opt.scores_csv.empty()) {
    std::ofstream f(opt.scores_csv);
    CMDR_CHECK(f.good(), "points evaluate: cannot write '", opt.scores_csv, "'");
    f << "path,score,label,decision\n";
    for (int64_t i = 0; i < nimg; ++i)
      f << r.paths[i] << "," << fmt(r.image_scores[i]) << "," << int(r.image_labels[i]) << ","
        << (r.image_scores[i] > threshold ? "NOK" : "OK") << "\n";
  }
  if (opt.profile) Profiler::print_table(std::cerr);
  if (result) *result = std::move(r);
  return 0;
}

}  // namespace cmdr::models
