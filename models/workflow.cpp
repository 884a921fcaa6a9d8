#include "models/workflow.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "io/heatmap.hpp"
#include "io/image.hpp"
#include "io/safetensors.hpp"
#include "io/tiff.hpp"
#include "io/transforms.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

namespace fs = std::filesystem;

namespace {

double ms_since(int64_t t0) {
  return static_cast<double>(now_ns() - t0) / 1e6;
}

double seconds_since(int64_t t0) {
  return static_cast<double>(now_ns() - t0) / 1e9;
}

void note(bool quiet, const std::string& s) {
  if (!quiet) std::cerr << s << "\n";
}

// The split used to calibrate: validation/good, else train/good.
const std::vector<io::Sample>& calibration_split(const io::ClassSplit& cs, std::string* which) {
  if (!cs.validation.empty()) {
    *which = "validation/good";
    return cs.validation;
  }
  *which = "train/good (no validation split)";
  return cs.train;
}

// "mm:ss" (or "h:mm:ss"); "--:--" when unknown.
std::string hms(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto t = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, t / 60 % 60, t % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", t / 60, t % 60);
  }
  return buf;
}

// One progress line like train's: "<what> i/n (elapsed s, s/sample ETA mm:ss)".
void progress(const std::string& what, int64_t done, int64_t n, double elapsed) {
  const bool tty = ::isatty(2) != 0;
  const double per = done > 0 ? elapsed / static_cast<double>(done) : 0.0;
  std::fprintf(stderr, "%s%s %lld/%lld (%.1f s, %.2f s/sample, ETA %s)%s", tty ? "\r" : "",
               what.c_str(), static_cast<long long>(done), static_cast<long long>(n), elapsed, per,
               hms(per * static_cast<double>(n - done)).c_str(), tty ? "\033[K" : "\n");
}

std::string fmt3(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

}  // namespace

double quantile(std::vector<float> v, double q) {
  CMDR_CHECK(!v.empty(), "quantile: no values");
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return static_cast<double>(v[lo]) + frac * (static_cast<double>(v[hi]) - v[lo]);
}

float calibrate_threshold(std::vector<float> normal_scores) {
  std::vector<float> finite;
  for (float s : normal_scores) {
    if (std::isfinite(s)) finite.push_back(s);
  }
  CMDR_CHECK(!finite.empty(), "threshold calibration: no finite image score among ",
             normal_scores.size(), " normal samples");
  return static_cast<float>(kThresholdMargin * quantile(finite, kThresholdQuantile));
}

std::vector<float> calibrate_checkpoint(Cmdr& model, const Extractors& ex,
                                        const std::vector<io::Sample>& split,
                                        const std::string& split_name, CheckpointMeta& meta,
                                        bool quiet) {
  const Mode mode = model.config().mode;
  // A 2d3d model serves samples without geometry (2d) and without rgb (3d): score each
  // sample again with that modality removed, exactly as a fallback sample is scored.
  const bool per_mode = mode == Mode::Fused2D3D;
  std::map<Mode, std::vector<float>> scores;
  float map_max = 0.0f;
  for (const io::Sample& s : split) {
    try {
      const SampleFeatures f =
          extract_features(ex, mode_needs_rgb(mode) ? s.rgb : std::string(),
                           mode_needs_xyz(mode) ? s.xyz : std::string(), model.config().side);
      const ScoredSample r = score_features(model, f, s.rgb, s.xyz);
      if (score_computable(r.out.fusion)) {
        scores[r.mode_used].push_back(r.out.fusion.image_score);
        if (!r.fallback()) {
          for (float v : r.out.fusion.pixel_map.to_vector()) map_max = std::max(map_max, v);
        }
      } else {
        note(quiet, "train: calibration: " + s.rgb + ": score not computable, not used");
      }
      if (per_mode && !r.fallback()) {
        SampleFeatures no3d = f;
        no3d.has_3d = false;
        SampleFeatures norgb = f;
        norgb.has_rgb = false;
        for (const SampleFeatures* g : {&no3d, &norgb}) {
          const ScoredSample rf = score_features(model, *g, s.rgb, s.xyz);
          if (score_computable(rf.out.fusion)) {
            scores[rf.mode_used].push_back(rf.out.fusion.image_score);
          }
        }
      }
    } catch (const Error& e) {
      note(quiet, std::string("train: calibration skips a sample: ") + e.what());
    }
  }
  std::vector<float>& main = scores[mode];
  CMDR_CHECK(!main.empty(), "threshold calibration: no sample of ", split_name, " (", split.size(),
             ") could be scored in mode ", mode_name(mode));
  meta.threshold = calibrate_threshold(main);
  meta.map_scale = map_max > 0 ? 1.5f * map_max : 1.0f;
  meta.threshold_rule = "1.05 x q99 of the image scores of " + split_name + " (" +
                        std::to_string(main.size()) + " samples)";
  meta.fallback_thresholds.clear();
  if (per_mode) {
    for (const Mode m : {Mode::Only2D, Mode::Only3D}) {
      if (scores[m].empty()) continue;
      meta.fallback_thresholds[mode_name(m)] = calibrate_threshold(scores[m]);
      meta.threshold_rule += std::string("; ") + mode_name(m) + " fallback: the same rule on " +
                             std::to_string(scores[m].size()) + " samples scored without " +
                             (m == Mode::Only2D ? "geometry" : "rgb");
    }
  }
  return main;
}

bool mode_needs_rgb(Mode m) {
  return mode_uses_dec2d(m) || mode_uses_mapping(m);
}
bool mode_needs_xyz(Mode m) {
  return mode_uses_dec3d(m) || mode_uses_mapping(m);
}

ScoredSample score_sample(Cmdr& model, const Extractors& ex, const std::string& rgb,
                          const std::string& xyz, bool keep_expanded) {
  const CmdrConfig& c = model.config();
  const Mode mode = c.mode;
  const bool read_rgb = mode_needs_rgb(mode) && !rgb.empty();
  const bool read_xyz = mode_needs_xyz(mode) && !xyz.empty();
  if (read_rgb && read_xyz) {
    // A misaligned pair would give a plausible score: refuse it (the dataset walker's rule).
    const io::PngInfo pi = io::png_info(rgb);
    const io::TiffInfo ti = io::tiff_info(xyz);
    CMDR_CHECK(io::xyz_size_ok(pi.width, pi.height, ti.width, ti.height), "size mismatch: rgb '",
               rgb, "' is ", pi.width, "x", pi.height, " but xyz '", xyz, "' is ", ti.width, "x",
               ti.height, " (they must be the same size, or the SPEC 2 padded square)");
  }
  SampleFeatures f = extract_features(ex, read_rgb ? rgb : std::string(),
                                      read_xyz ? xyz : std::string(), c.side, keep_expanded);
  return score_features(model, std::move(f), rgb, xyz, keep_expanded);
}

ScoredSample score_features(Cmdr& model, SampleFeatures f, const std::string& rgb,
                            const std::string& xyz, bool keep_expanded) {
  ScoredSample r;
  const CmdrConfig& c = model.config();
  const Mode mode = c.mode;
  r.model_mode = mode;
  r.features = std::move(f);
  r.t = r.features.t;
  r.warning = r.features.warning;
  // Compact (SPEC 10) form for the networks; the dense patches only for the dump.
  Sample s = expand_features(r.features, c.rgb_dim, c.xyz_dim, &r.t, keep_expanded);
  Mode use = mode;
  if (!r.features.has_3d && mode_needs_xyz(mode)) {
    CMDR_CHECK(model.has(kDec2D), "sample '", xyz, "': no usable geometry and the ",
               mode_name(mode), " model has no 2D branch to fall back to (", r.warning, ")");
    use = Mode::Only2D;
    if (r.warning.empty()) r.warning = "no valid 3D position: 2D fallback";
  } else if (!r.features.has_rgb && mode_needs_rgb(mode)) {
    CMDR_CHECK(model.has(kDec3D), "sample '", rgb,
               "': no rgb and the model has no 3D branch to fall back to");
    use = Mode::Only3D;
    r.warning = "no rgb image: 3D-only fallback";
  }
  int64_t t0 = now_ns();
  {
    ProfileScope p("stage.networks+fusion");
    // Restructured networks; valid rows only, except for the dump (every row, so that
    // mapped_* / recon_2d match the literal computation at invalid rows too).
    // Outputs kept only for the dump; detect / evaluate need the maps and the score.
    r.out = model.infer(s.compact, use, /*all_rows=*/keep_expanded,
                        /*keep_outputs=*/keep_expanded);
  }
  r.t.networks += ms_since(t0);
  r.mode_used = r.out.fusion.mode_used;
  if (r.mode_used != mode && r.warning.empty()) r.warning = r.out.fusion.warning;
  if (!r.out.fusion.warning.empty() && r.warning.empty()) r.warning = r.out.fusion.warning;
  if (keep_expanded) r.expanded = std::move(s);
  return r;
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Ok:
      return "OK";
    case Verdict::Nok:
      return "NOK";
    case Verdict::Unknown:
      return "UNKNOWN";
    case Verdict::Error:
      return "ERROR";
    case Verdict::Skipped:
      return "SKIPPED";
  }
  return "?";
}

bool score_computable(const FusionResult& f) {
  return std::isfinite(f.image_score) && (!f.fused.defined() || all_finite(f.fused));
}

float threshold_for(const CheckpointMeta& meta, Mode used, float override_threshold,
                    std::string* source) {
  auto say = [&](const std::string& s) {
    if (source) *source = s;
  };
  if (used == meta.mode) {
    if (std::isfinite(override_threshold)) {
      say("--threshold");
      return override_threshold;
    }
    say(std::isfinite(meta.threshold) ? "checkpoint" : "none (the checkpoint has no threshold)");
    return meta.threshold;
  }
  const auto it = meta.fallback_thresholds.find(mode_name(used));
  if (it != meta.fallback_thresholds.end() && std::isfinite(it->second)) {
    say(std::string("checkpoint (") + mode_name(used) + " fallback)");
    return it->second;
  }
  say(std::string("none: the checkpoint has no threshold for ") + mode_name(used) +
      " fallback samples (it predates per-mode thresholds, or was not calibrated)");
  return std::numeric_limits<float>::quiet_NaN();
}

Judgement judge(const ScoredSample& r, const CheckpointMeta& meta, float override_threshold) {
  Judgement j;
  j.threshold = threshold_for(meta, r.mode_used, override_threshold, &j.threshold_source);
  if (!score_computable(r.out.fusion)) {
    j.verdict = Verdict::Error;
    const float sc = r.out.fusion.image_score;
    j.error = std::isfinite(sc) ? std::string("the anomaly map holds non-finite values")
                                : std::string("the image score is ") + (std::isnan(sc) ? "nan"
                                                                        : sc > 0       ? "inf"
                                                                                       : "-inf");
    j.error = "score not computable: " + j.error;
    return j;
  }
  if (!std::isfinite(j.threshold)) {
    j.verdict = Verdict::Unknown;
    return j;
  }
  j.verdict = r.out.fusion.image_score > j.threshold ? Verdict::Nok : Verdict::Ok;
  return j;
}

std::string resume_path(const std::string& out) {
  return out + ".resume.safetensors";
}

namespace {

std::string spill_dir_of(const std::string& out) {
  const fs::path dir =
      fs::path(out).parent_path().empty() ? fs::path(".") : fs::path(out).parent_path();
  return (dir / ".cmdr-feature-cache").string();
}

}  // namespace

StaleCleanup preflight_train(const TrainJob& job) {
  CMDR_CHECK(!job.out.empty(), "train: --out is required");
  CMDR_CHECK(job.epochs >= 1, "train: --epochs ", job.epochs, " must be >= 1");
  CMDR_CHECK(job.side >= 8 && job.side % 8 == 0, "train: --size ", job.side,
             " must be a positive multiple of 8 (SPEC 5)");
  CMDR_CHECK(job.mode == Mode::Fused2D3D || job.mode == Mode::Only2D || job.mode == Mode::Only3D,
             "train: --mode ", mode_name(job.mode), " is an inference ablation; train 2d3d");
  // Nothing is overwritten silently.
  if (fs::exists(job.out) && !job.force) {
    fail("train: --out '", job.out, "' exists; pass --force to overwrite it");
  }
  CMDR_CHECK(!fs::is_directory(job.out), "train: --out '", job.out,
             "' is a folder; give the checkpoint file to write");
  const std::string resume_file = resume_path(job.out);
  if (fs::exists(resume_file) && !job.resume && !job.force) {
    fail("train: '", resume_file,
         "' holds an interrupted run: pass --resume to continue it or "
         "--force to start over");
  }
  io::ScanOptions so;
  so.quiet = true;  // train_class scans again and reports skipped files once
  const io::ClassSplit cs = io::scan_class(job.data, job.cls, so);
  CMDR_CHECK(!cs.train.empty(), "train: class '", job.cls, "' under '", job.data,
             "' has no usable train/good sample");
  const fs::path dir =
      fs::path(job.out).parent_path().empty() ? fs::path(".") : fs::path(job.out).parent_path();
  std::error_code ec;
  fs::create_directories(dir, ec);
  CMDR_CHECK(!ec, "train: cannot create the folder of --out '", job.out, "': ", ec.message());
  std::vector<std::string> dirs = {dir.string(), spill_dir_of(job.out)};
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code e2;
    if (name.rfind("random-extractors-seed", 0) == 0 && it->is_directory(e2))
      dirs.push_back(it->path().string());
  }
  StaleCleanup cleaned = remove_stale_files(dirs, job.quiet);
  // --out must be writable before hours of features and epochs: probe with the longest
  // name training creates (the resumable file's temporary, same folder, same length).
  const std::string probe = st::temp_path(resume_file, static_cast<long>(::getpid()),
                                          std::numeric_limits<uint32_t>::max());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  CMDR_CHECK(fd >= 0, "train: --out '", job.out, "' is not writable: cannot create '", probe, "' (",
             std::strerror(errno), "); checked before feature extraction");
  ::close(fd);
  ::unlink(probe.c_str());
  return cleaned;
}

TrainReport train_class(const TrainJob& job, const Extractors& ex, const StaleCleanup* earlier) {
  TrainReport rep;
  rep.checkpoint = job.out;
  rep.resume_file = resume_path(job.out);
  const bool q = job.quiet;
  CMDR_CHECK(!mode_needs_rgb(job.mode) || ex.vit, "train: mode ", mode_name(job.mode),
             " needs --rgb-weights");
  CMDR_CHECK(!mode_needs_xyz(job.mode) || ex.pmae, "train: mode ", mode_name(job.mode),
             " needs --xyz-weights");
  rep.cleanup = preflight_train(job);
  if (earlier) {
    rep.cleanup.removed.insert(rep.cleanup.removed.begin(), earlier->removed.begin(),
                               earlier->removed.end());
    rep.cleanup.bytes += earlier->bytes;
  }
  const bool have_resume = fs::exists(rep.resume_file);

  io::ScanOptions so;
  so.quiet = q;
  const io::ClassSplit cs = io::scan_class(job.data, job.cls, so);
  CMDR_CHECK(!cs.train.empty(), "train: class '", job.cls, "' under '", job.data,
             "' has no usable train/good sample");

  // Model: fresh, from --init, or resumed.
  CmdrConfig cfg = CmdrConfig::spec(job.mode, job.side);
  cfg.rgb_dim = ex.rgb_dim();
  cfg.xyz_dim = ex.xyz_dim();
  cfg.dec2d.dim = cfg.rgb_dim;
  cfg.dec3d.channels = cfg.xyz_dim;
  cfg.lr = job.lr;
  cfg.clip_grad = job.clip_grad;
  cfg.seed = job.seed;
  cfg.p_drop = job.no_dropout ? 0.0f : 0.1f;
  std::unique_ptr<Cmdr> model;
  CheckpointMeta meta;
  int start_epoch = 0;
  if (job.resume && have_resume) {
    LoadOptions lo;
    lo.mode = mode_name(job.mode);
    lo.side = job.side;
    lo.restore_optimizer = true;
    lo.quiet = q;
    LoadedCheckpoint lc = load_checkpoint(rep.resume_file, lo);
    CMDR_CHECK(lc.meta.cls == job.cls && lc.meta.seed == job.seed, "train --resume: '",
               rep.resume_file, "' is class '", lc.meta.cls, "' seed ", lc.meta.seed,
               ", not class '", job.cls, "' seed ", job.seed);
    check_extractor_hashes(lc.meta, ex, false);
    model = std::move(lc.model);
    meta = lc.meta;
    start_epoch = meta.epochs;
    rep.resumed_from = rep.resume_file;
    rep.resume_note = "resumed from '" + rep.resume_file + "' after epoch " +
                      std::to_string(start_epoch) + " (step " + std::to_string(meta.steps) + ")";
    note(q, "train: --resume: " + rep.resume_note);
  } else {
    if (job.resume) {
      // Why not: say whether a write of the resumable file was interrupted.
      std::string why = "no '" + rep.resume_file + "' (no epoch of a previous run finished)";
      for (const StaleFile& f : rep.cleanup.removed) {
        if (st::temp_file_pid(f.path) >= 0 &&
            fs::path(f.path).filename().string().rfind(
                fs::path(rep.resume_file).filename().string() + ".tmp.", 0) == 0) {
          why = "no '" + rep.resume_file + "': its write was interrupted (process " +
                std::to_string(f.pid) + " killed; the partial '" + f.path + "' was removed)";
        }
      }
      rep.resume_note = "not resumed: " + why + "; starting from scratch";
      note(q, "train: --resume: " + rep.resume_note);
    }
    model = std::make_unique<Cmdr>(cfg);
    if (!job.init.empty()) {
      LoadOptions lo;
      lo.mode = mode_name(job.mode);
      lo.side = job.side;
      lo.quiet = q;
      LoadedCheckpoint init = load_checkpoint(job.init, lo);
      model->load_state_dict(init.model->state_dict(), true);
      note(q, "train: initial weights from '" + job.init + "'");
    }
  }
  meta.mode = job.mode;
  meta.side = job.side;
  meta.cls = job.cls;
  meta.seed = job.seed;
  meta.rgb_sha256 = ex.rgb_sha256;
  meta.xyz_sha256 = ex.xyz_sha256;
  meta.rgb_weights = ex.rgb_path.empty() ? "" : fs::absolute(ex.rgb_path).string();
  meta.xyz_weights = ex.xyz_path.empty() ? "" : fs::absolute(ex.xyz_path).string();
  meta.extractor = ex.opt;
  meta.version = CMDR_VERSION;

  // Opened before the features, so a bad path fails in seconds, not after extraction.
  std::ofstream csv;
  if (!job.dump_losses.empty()) {
    csv.open(job.dump_losses);
    CMDR_CHECK(csv.good(), "train: cannot write --dump-losses '", job.dump_losses, "'");
    csv << "step,map2d,map3d,rec2d,rec3d\n";
    csv.precision(9);
  }

  // Frozen features once per training sample (SPEC 6), compact form (SPEC 10).
  int64_t t0 = now_ns();
  const std::string spill = spill_dir_of(job.out);
  FeatureCache cache(job.cache_budget_mb << 20, spill,
                     cache_expander(job.side, cfg.rgb_dim, cfg.xyz_dim, /*dense=*/false));
  const int64_t n = static_cast<int64_t>(cs.train.size());
  for (int64_t i = 0; i < n; ++i) {
    const io::Sample& s = cs.train[static_cast<std::size_t>(i)];
    try {
      SampleFeatures f =
          extract_features(ex, mode_needs_rgb(job.mode) ? s.rgb : std::string(),
                           mode_needs_xyz(job.mode) ? s.xyz : std::string(), job.side);
      if (mode_needs_xyz(job.mode) && !f.has_3d) {
        ++rep.no_geometry;
        note(q, "train: skipping " + f.warning);
        continue;
      }
      if (!f.note.empty()) {
        ++rep.scaled_groups;
        note(q, "train: " + f.note);
      }
      cache.add(to_cache_entry(f));
    } catch (const Error& e) {
      ++rep.skipped;
      note(q, std::string("train: skipping unreadable sample: ") + e.what());
    }
    if (!q) progress("features", i + 1, n, seconds_since(t0));
  }
  if (!q && ::isatty(2)) std::fprintf(stderr, "\n");
  rep.samples = cache.size();
  rep.feature_seconds = seconds_since(t0);
  rep.cache_bytes_memory = cache.bytes_in_memory();
  rep.cache_bytes_disk = cache.bytes_on_disk();
  CMDR_CHECK(cache.size() > 0, "train: class '", job.cls, "': no training sample could be used (",
             rep.skipped, " unreadable, ", rep.no_geometry, " without geometry)");
  note(q, "train: " + std::to_string(cache.size()) + " samples cached (" +
              std::to_string(cache.bytes_in_memory() >> 20) + " MiB in memory, " +
              std::to_string(cache.bytes_on_disk() >> 20) + " MiB spilled to disk) in " +
              fmt3(rep.feature_seconds) + " s");

  // Training (SPEC 6).
  TrainOptions to;
  to.epochs = job.epochs;
  to.start_epoch = start_epoch;
  to.seed = job.seed;
  to.shuffle = !job.no_shuffle;
  to.max_steps = job.steps;
  to.progress = !q;
  to.on_step = [&](int64_t step, const StepResult& r) {
    if (!csv.is_open()) return;
    // map2d = mapped_2d vs rgb (map3Dto2D), map3d = mapped_3d vs xyz (map2Dto3D).
    csv << step << "," << r.loss[kMap3Dto2D] << "," << r.loss[kMap2Dto3D] << "," << r.loss[kDec2D]
        << "," << r.loss[kDec3D] << "\n";
  };
  to.on_epoch = [&](const EpochStats& es) {
    meta.epochs = es.epoch;
    nlohmann::json e{{"epoch", es.epoch},
                     {"steps", es.steps},
                     {"rollbacks", es.rollbacks},
                     {"seconds", es.seconds}};
    const char* names[4] = {"map3d", "map2d", "rec2d", "rec3d"};  // Net slot order
    for (int j = 0; j < 4; ++j) {
      e[names[j]] = std::isfinite(es.mean_loss[j]) ? nlohmann::json(es.mean_loss[j]) : nullptr;
    }
    meta.losses.push_back(e);
    // Resumable state after every epoch, atomically (temp + rename).
    save_checkpoint(rep.resume_file, *model, meta, true);
  };
  t0 = now_ns();
  rep.epochs = train(*model, cache, to);
  rep.train_seconds = seconds_since(t0);
  rep.rollbacks = model->rollbacks();
  if (csv.is_open()) {
    csv.close();
    CMDR_CHECK(csv.good(), "train: error writing --dump-losses '", job.dump_losses, "'");
  }

  // Decision threshold and heatmap scale (see calibrate_threshold for the rule).
  t0 = now_ns();
  if (job.calibrate) {
    std::string which;
    const std::vector<io::Sample>& cal = calibration_split(cs, &which);
    rep.calibration_scores = calibrate_checkpoint(*model, ex, cal, which, meta, q);
    rep.calibration_split = which;
  }
  rep.calibrate_seconds = seconds_since(t0);
  meta.steps = model->steps();
  save_checkpoint(job.out, *model, meta, false);
  std::error_code ec;
  fs::remove(rep.resume_file, ec);  // the run finished: nothing to resume
  rep.meta = meta;
  return rep;
}

Tensor map_to_native(const Tensor& map, int64_t h, int64_t w) {
  const int64_t side = std::max(h, w);
  const int64_t S = map.size(0);
  Tensor sq =
      ops::upsample_bilinear2d_forward(map.reshape({1, 1, S, S}), side, side).reshape({side, side});
  const int64_t top = (side - h) / 2, left = (side - w) / 2;  // SPEC 3.1 padding
  return sq.narrow(0, top, h).narrow(1, left, w).contiguous();
}

EvalReport evaluate_class(Cmdr& model, const CheckpointMeta& meta, const Extractors& ex,
                          const EvalJob& job) {
  EvalReport rep;
  rep.cls = job.cls;
  const int64_t t_start = now_ns();
  const bool q = job.quiet;
  io::ScanOptions so;
  so.quiet = q;
  const io::ClassSplit cs = io::scan_class(job.data, job.cls, so);
  CMDR_CHECK(!cs.test.empty(), "evaluate: class '", job.cls, "' has no test sample");
  const int64_t S = model.config().side;
  rep.threshold = threshold_for(meta, meta.mode, job.threshold_override, &rep.threshold_source);
  // Samples the scanner dropped (missing partner, unreadable header, size mismatch) count.
  rep.skipped = static_cast<int64_t>(cs.dropped_test.size());
  rep.skipped_messages = cs.dropped_test;
  metrics::Inputs paper, official;
  paper.h = paper.w = S;
  std::vector<Tensor> native_maps;
  std::vector<std::vector<uint8_t>> native_gt;
  int64_t nh = 0, nw = 0;
  bool native_same = true;
  if (!job.heatmaps.empty()) fs::create_directories(fs::path(job.heatmaps) / job.cls);
  const int64_t n = static_cast<int64_t>(cs.test.size());
  for (int64_t i = 0; i < n; ++i) {
    const io::Sample& s = cs.test[static_cast<std::size_t>(i)];
    if (!q && i > 0) progress("evaluate " + job.cls, i, n, seconds_since(t_start));
    EvalSampleRecord rec;
    rec.rgb = s.rgb;
    rec.xyz = s.xyz;
    rec.defect = s.defect;
    rec.gt = s.label;
    ScoredSample r;
    io::Image8 gt_img;
    try {
      r = score_sample(model, ex, s.rgb, s.xyz);
      if (!s.gt.empty()) {
        gt_img = io::read_gray_png(s.gt);
      } else {
        const io::PngInfo pi = io::png_info(s.rgb);
        gt_img = io::Image8(pi.width, pi.height, 1, 0);
      }
    } catch (const Error& e) {
      ++rep.skipped;
      rep.skipped_messages.push_back(e.what());
      note(q, std::string("evaluate: skipping sample: ") + e.what());
      rec.verdict = Verdict::Skipped;
      rec.error = e.what();
      rep.records.push_back(std::move(rec));
      continue;
    }
    if (!r.warning.empty() || r.fallback()) {
      ++rep.fallbacks;
      note(q, "evaluate: " + s.rgb + ": " + r.warning);
    }
    if (!r.features.note.empty()) note(q, "evaluate: " + r.features.note);
    const FusionResult& fr = r.out.fusion;
    const Judgement jd = judge(r, meta, job.threshold_override);
    rec.score = fr.image_score;
    rec.verdict = jd.verdict;
    rec.mode = mode_name(r.mode_used);
    rec.threshold = jd.threshold;
    rec.error = jd.error;
    rep.records.push_back(rec);
    if (jd.verdict == Verdict::Error) {
      // Not computable: kept out of the metrics (a NaN would corrupt every curve), counted.
      ++rep.errors;
      note(q, "evaluate: " + s.rgb + ": ERROR: " + jd.error);
      continue;
    }
    const float thr = jd.threshold;
    // Paper protocol: S×S, per-image normalised maps (SPEC 7-8).
    const Tensor gt_s = io::gt_transform(gt_img, S);
    const std::vector<float> pm = fr.pixel_map.to_vector(), am = fr.aupro_map.to_vector(),
                             g = gt_s.to_vector();
    paper.pixel_maps.insert(paper.pixel_maps.end(), pm.begin(), pm.end());
    paper.aupro_maps.insert(paper.aupro_maps.end(), am.begin(), am.end());
    for (float v : g) paper.gt.push_back(v > 0.5f ? 1 : 0);
    paper.image_scores.push_back(fr.image_score);
    paper.labels.push_back(static_cast<uint8_t>(s.label));
    // Official protocol: F at the native gt resolution, no normalisation, score = max.
    const Tensor nat = map_to_native(fr.fused, gt_img.height, gt_img.width);
    if (native_maps.empty()) {
      nh = gt_img.height;
      nw = gt_img.width;
    }
    native_same &= gt_img.height == nh && gt_img.width == nw;
    std::vector<uint8_t> ng(gt_img.data.size());
    for (std::size_t k = 0; k < ng.size(); ++k) ng[k] = gt_img.data[k] > 127 ? 1 : 0;
    native_gt.push_back(std::move(ng));
    native_maps.push_back(nat);
    ++rep.samples;
    const bool nok = jd.verdict == Verdict::Nok;
    if (jd.verdict == Verdict::Unknown) {
      ++rep.unknown;
    } else if (s.label == 1) {
      (nok ? rep.true_pos : rep.false_neg)++;
    } else {
      (nok ? rep.false_pos : rep.true_neg)++;
    }
    for (auto* acc : {&rep.t}) {
      acc->read += r.t.read;
      acc->transform += r.t.transform;
      acc->rgb_extractor += r.t.rgb_extractor;
      acc->xyz_extractor += r.t.xyz_extractor;
      acc->assemble += r.t.assemble;
      acc->networks += r.t.networks;
    }
    if (!job.heatmaps.empty()) {
      io::OverlayOptions oo;
      oo.scale = std::isfinite(meta.map_scale) ? meta.map_scale : 1.0f;
      io::Image8 rgb_img;
      try {
        rgb_img = io::read_rgb_png(s.rgb);
      } catch (const Error&) {
      }
      const io::Image8 ov = io::heatmap_overlay(rgb_img, fr.pixel_map, gt_s,
                                                "S " + fmt3(fr.image_score) + " T " + fmt3(thr),
                                                verdict_name(jd.verdict), nok, oo);
      const std::string file =
          (fs::path(job.heatmaps) / job.cls / (s.defect + "_" + s.name + ".png")).string();
      io::write_png(file, ov);
      rep.heatmap_files.push_back(file);
    }
  }
  if (!q) progress("evaluate " + job.cls, n, n, seconds_since(t_start));
  if (!q && ::isatty(2)) std::fprintf(stderr, "\n");
  paper.n = rep.samples;
  CMDR_CHECK(rep.samples > 0, "evaluate: class '", job.cls, "': no test sample could be scored (",
             rep.skipped, " skipped, ", rep.errors, " not computable)");
  official.n = rep.samples;
  if (native_same) {
    official.h = nh;
    official.w = nw;
    official.pixel_maps.reserve(static_cast<std::size_t>(rep.samples * nh * nw));
    for (std::size_t k = 0; k < native_maps.size(); ++k) {
      const std::vector<float> v = native_maps[k].to_vector();
      official.pixel_maps.insert(official.pixel_maps.end(), v.begin(), v.end());
      official.gt.insert(official.gt.end(), native_gt[k].begin(), native_gt[k].end());
      float mx = -INFINITY;
      for (float x : v) mx = std::max(mx, x);
      official.image_scores.push_back(mx);
    }
    official.aupro_maps = official.pixel_maps;
    official.labels = paper.labels;
  }
  native_maps.clear();
  native_gt.clear();
  try {
    rep.paper = metrics::evaluate(paper, metrics::Protocol::Paper);
    if (native_same) {
      rep.official = metrics::evaluate(official, metrics::Protocol::MVTec);
    } else {
      rep.problem = "official protocol skipped: test gt sizes differ";
    }
    rep.ok = true;
  } catch (const Error& e) {
    rep.problem = e.what();
  }
  auto save = [&](const metrics::Inputs& in, metrics::Protocol p, const std::string& file) {
    st::Writer w;
    w.add("pixel_maps", Tensor::from_vector({in.n, in.h, in.w}, in.pixel_maps));
    w.add("aupro_maps", Tensor::from_vector({in.n, in.h, in.w}, in.aupro_maps));
    std::vector<float> gtf(in.gt.begin(), in.gt.end()), lb(in.labels.begin(), in.labels.end());
    w.add("gt", Tensor::from_vector({in.n, in.h, in.w}, gtf));
    w.add("image_scores", Tensor::from_vector({in.n}, in.image_scores));
    w.add("labels", Tensor::from_vector({in.n}, lb));
    w.set_metadata("protocol", metrics::protocol_name(p));
    w.set_metadata("class", job.cls);
    w.write(file);
  };
  if (!job.save_maps.empty()) {
    fs::create_directories(job.save_maps);
    save(paper, metrics::Protocol::Paper,
         (fs::path(job.save_maps) / (job.cls + ".safetensors")).string());
    if (native_same) {
      save(official, metrics::Protocol::MVTec,
           (fs::path(job.save_maps) / (job.cls + "_mvtec.safetensors")).string());
    }
  }
  rep.seconds = seconds_since(t_start);
  return rep;
}

}  // namespace cmdr::models
