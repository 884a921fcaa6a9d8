// `cmdr-iad detect --checkpoint CKPT (--rgb A.png --xyz A.tiff | --dir D) [--out DIR]`:
// the line-side verb. Per sample: image score, threshold, OK/NOK, a heatmap PNG in --out
// and one JSON line on stdout (sample, score, label, threshold, checkpoint hash, timings per
// stage in ms). No geometry -> 2D fallback, no rgb -> 3D fallback (warning on stderr).
// --dir D takes D/rgb/*.png with D/xyz/<stem>.tiff (MVTec layout) or D/<stem>.png with
// D/<stem>.tiff (extensions in any case); a .tiff without a .png is scored 3D-only. A sample
// that fails is reported (JSON line with "error"), counted and skipped; the labels and exit
// status are in docs/cli.md ("Exit status and labels").
#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "apps/cli_common.hpp"
#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "io/heatmap.hpp"
#include "io/image.hpp"

namespace cmdr::app {

namespace fs = std::filesystem;

namespace {

struct DetectArgs {
  std::string rgb, xyz, dir, out = "detect-out";
  float threshold = std::numeric_limits<float>::quiet_NaN();
  bool force = false, profile = false;
};

struct Pair {
  std::string stem, rgb, xyz;
};

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

std::vector<Pair> list_dir(const std::string& d) {
  fs::path rgb_dir = d, xyz_dir = d;
  if (fs::is_directory(fs::path(d) / "rgb")) {
    rgb_dir = fs::path(d) / "rgb";
    xyz_dir = fs::path(d) / "xyz";
  }
  std::map<std::string, Pair> m;
  std::vector<std::string> ignored;
  auto walk = [&](const fs::path& dir, bool rgb_side) {
    if (!fs::is_directory(dir)) return;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      const std::string ext = lower_ext(e.path());  // 007.PNG, 007.TIF count too
      const bool is_png = ext == ".png", is_tiff = ext == ".tiff" || ext == ".tif";
      if (!(rgb_side ? is_png : is_tiff)) {
        // In the flat layout both kinds share the folder: the other walk takes them.
        const bool other = rgb_dir == xyz_dir && (is_png || is_tiff);
        if (!other && e.path().filename().string().rfind('.', 0) != 0)
          ignored.push_back(e.path().string());
        continue;
      }
      Pair& p = m[e.path().stem().string()];
      p.stem = e.path().stem().string();
      (rgb_side ? p.rgb : p.xyz) = e.path().string();
    }
  };
  walk(rgb_dir, true);
  walk(xyz_dir, false);
  if (!globals().quiet) {
    for (const std::string& f : ignored)
      std::cerr << "detect: note: " << f << ": not a .png / .tiff, ignored\n";
  }
  std::vector<Pair> out;
  for (auto& [k, v] : m) out.push_back(v);
  CMDR_CHECK(!out.empty(), "detect: --dir '", d, "' has no .png / .tiff sample (looked in ",
             rgb_dir.string(), " and ", xyz_dir.string(), ")");
  return out;
}

struct Tally {
  int64_t ok = 0, nok = 0, unknown = 0, error = 0, skipped = 0, heatmap_failed = 0;
  void add(models::Verdict v) {
    switch (v) {
      case models::Verdict::Ok:
        ++ok;
        break;
      case models::Verdict::Nok:
        ++nok;
        break;
      case models::Verdict::Unknown:
        ++unknown;
        break;
      case models::Verdict::Error:
        ++error;
        break;
      case models::Verdict::Skipped:
        ++skipped;
        break;
    }
  }
};

nlohmann::json finite_or_null(float v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace

void run_detect(const DetectArgs& a, const CheckpointArgs& ca, const ExtractorArgs& ea) {
  std::vector<Pair> samples;
  if (!a.dir.empty()) {
    CMDR_CHECK(a.rgb.empty() && a.xyz.empty(), "detect: --dir excludes --rgb/--xyz");
    CMDR_CHECK(fs::exists(a.dir), "detect: --dir '", a.dir, "' does not exist");
    CMDR_CHECK(fs::is_directory(a.dir), "detect: --dir '", a.dir, "' is not a directory");
    samples = list_dir(a.dir);
  } else {
    CMDR_CHECK(!a.rgb.empty() || !a.xyz.empty(),
               "detect: give --rgb A.png and/or --xyz A.tiff, or --dir D");
    if (!a.rgb.empty()) check_input_file(a.rgb, "detect", "--rgb");
    if (!a.xyz.empty()) check_input_file(a.xyz, "detect", "--xyz");
    samples.push_back({fs::path(a.rgb.empty() ? a.xyz : a.rgb).stem().string(), a.rgb, a.xyz});
  }
  // Nothing overwritten silently: check every output before any work.
  make_output_dir(a.out, "detect", "--out");
  for (const Pair& p : samples) {
    const std::string png = (fs::path(a.out) / (p.stem + "_heatmap.png")).string();
    CMDR_CHECK(a.force || !fs::exists(png), "detect: '", png,
               "' exists; pass --force to overwrite or choose another --out");
  }
  const std::string trace = (fs::path(a.out) / "detect.trace.json").string();
  if (a.profile) check_output_file(trace, a.force, "detect", "--profile");
  models::LoadedCheckpoint ck = open_checkpoint(ca);
  if (!std::isfinite(models::threshold_for(ck.meta, ck.meta.mode, a.threshold))) {
    std::cerr << "detect: WARNING: the checkpoint has no decision threshold: pass --threshold; "
                 "labels are 'UNKNOWN'\n";
  }
  const models::Extractors ex = extractors_for(ck, ea, "detect");
  profile_begin(a.profile);
  Tally tally;
  for (const Pair& p : samples) {
    const std::string png = (fs::path(a.out) / (p.stem + "_heatmap.png")).string();
    nlohmann::json j;
    j["sample"] = p.rgb.empty() ? p.xyz : p.rgb;
    j["rgb"] = p.rgb;
    j["xyz"] = p.xyz;
    j["checkpoint"] = ck.path;
    j["checkpoint_sha256"] = ck.sha256;
    if (p.xyz.empty()) std::cerr << "detect: WARNING: " << p.rgb << ": no xyz file: 2D fallback\n";
    if (p.rgb.empty()) std::cerr << "detect: WARNING: " << p.xyz << ": no rgb file: 3D fallback\n";
    models::ScoredSample r;
    try {
      r = models::score_sample(*ck.model, ex, p.rgb, p.xyz);
    } catch (const Error& e) {
      // One bad sample does not stop the others: reported, counted, exit status 2.
      tally.add(models::Verdict::Skipped);
      j["label"] = models::verdict_name(models::Verdict::Skipped);
      j["error"] = e.what();
      std::cerr << "detect: " << p.stem << ": SKIPPED: " << e.what() << "\n";
      std::cout << j.dump() << std::endl;
      continue;
    }
    if (!r.warning.empty()) std::cerr << "detect: WARNING: " << p.stem << ": " << r.warning << "\n";
    const models::Judgement jd = models::judge(r, ck.meta, a.threshold);
    tally.add(jd.verdict);
    const float score = r.out.fusion.image_score;
    const bool nok = jd.verdict == models::Verdict::Nok;
    const bool error = jd.verdict == models::Verdict::Error;
    j["score"] = finite_or_null(score);
    j["threshold"] = finite_or_null(jd.threshold);
    j["threshold_source"] = jd.threshold_source;
    j["label"] = models::verdict_name(jd.verdict);
    j["mode"] = models::mode_name(r.mode_used);
    j["fallback"] = r.fallback();
    if (!r.warning.empty()) j["warning"] = r.warning;
    if (error) j["error"] = jd.error;
    // No heatmap of a map that could not be computed (it would look clean).
    j["heatmap"] = error ? nlohmann::json(nullptr) : nlohmann::json(png);
    j["timings_ms"] = {{"read", r.t.read},
                       {"transform", r.t.transform},
                       {"rgb_extractor", r.t.rgb_extractor},
                       {"xyz_extractor", r.t.xyz_extractor},
                       {"assemble", r.t.assemble},
                       {"networks_fusion", r.t.networks},
                       {"total", r.t.total()}};
    // The verdict first: an unwritable heatmap must not lose the score.
    std::cout << j.dump() << std::endl;
    if (error) {
      std::cerr << "detect: " << p.stem << ": ERROR: " << jd.error << "\n";
      continue;
    }
    try {
      io::Image8 img;
      if (!p.rgb.empty()) img = io::read_rgb_png(p.rgb);
      io::OverlayOptions oo;
      oo.scale = std::isfinite(ck.meta.map_scale) ? ck.meta.map_scale : 1.0f;
      char l1[64];
      std::snprintf(l1, sizeof l1, "S %.3f T %.3f", static_cast<double>(score),
                    static_cast<double>(jd.threshold));
      io::write_png(png, io::heatmap_overlay(img, r.out.fusion.pixel_map, Tensor(), l1,
                                             models::verdict_name(jd.verdict), nok, oo));
    } catch (const Error& e) {
      ++tally.heatmap_failed;
      std::cerr << "detect: " << p.stem << ": heatmap not written: " << e.what() << "\n";
    }
  }
  profile_end(a.profile, trace);
  // The summary is the result of the run: printed even with --quiet.
  std::cerr << "detect: " << samples.size() << " sample(s): " << tally.ok << " OK, " << tally.nok
            << " NOK, " << tally.unknown << " UNKNOWN, " << tally.error << " ERROR, "
            << tally.skipped << " skipped";
  if (tally.heatmap_failed > 0)
    std::cerr << "; " << tally.heatmap_failed << " heatmap(s) not written";
  std::cerr << "; heatmaps in " << a.out << "\n";
  report_sample_outcomes(tally.error + tally.skipped + tally.heatmap_failed, tally.unknown);
}

void add_detect(CLI::App& root) {
  auto a = std::make_shared<DetectArgs>();
  auto ca = std::make_shared<CheckpointArgs>();
  auto ea = std::make_shared<ExtractorArgs>();
  CLI::App* c = root.add_subcommand(
      "detect",
      "score samples with a trained checkpoint: score, threshold, OK/NOK, heatmap PNG and one\n"
      "JSON line per sample on stdout (sample, score, label, threshold, checkpoint hash,\n"
      "timings per stage). No geometry -> 2D fallback; no rgb -> 3D fallback.");
  add_checkpoint_flags(c, *ca);
  add_weight_flags(c, *ea, true);
  c->add_option("--rgb", a->rgb, "8-bit RGB PNG");
  c->add_option("--xyz", a->xyz, "float32 xyz TIFF (organised cloud)");
  c->add_option("--dir", a->dir,
                "folder of samples: D/rgb/*.png + D/xyz/*.tiff, or D/<stem>.png + D/<stem>.tiff");
  c->add_option("--out", a->out, "folder for the heatmaps (default detect-out)");
  c->add_option("--threshold", a->threshold,
                "decision threshold for samples scored in the checkpoint's mode (default: the "
                "checkpoint's; fallback samples keep their per-mode threshold)")
      ->check(finite())
      ->default_str("checkpoint");
  c->add_flag("--force", a->force, "overwrite existing heatmaps");
  c->add_flag("--profile", a->profile, "per-op profile table and OUT/detect.trace.json");
  c->callback([a, ca, ea] { run_detect(*a, *ca, *ea); });
}

}  // namespace cmdr::app
