// `cmdr-iad detect --checkpoint CKPT (--rgb A.png --xyz A.tiff | --dir D) [--out DIR]`:
// the line-side verb. Per sample: image score, threshold, OK/NOK, a heatmap PNG in --out
// and one JSON line on stdout (sample, score, label, threshold, checkpoint hash, timings per
// stage in ms). No geometry -> 2D fallback, no rgb -> 3D fallback (warning on stderr).
// --dir D takes D/rgb/*.png with D/xyz/<stem>.tiff (MVTec layout) or D/<stem>.png with
// D/<stem>.tiff; a .tiff without a .png is scored 3D-only.
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

std::vector<Pair> list_dir(const std::string& d) {
  fs::path rgb_dir = d, xyz_dir = d;
  if (fs::is_directory(fs::path(d) / "rgb")) {
    rgb_dir = fs::path(d) / "rgb";
    xyz_dir = fs::path(d) / "xyz";
  }
  std::map<std::string, Pair> m;
  for (const auto& e : fs::directory_iterator(rgb_dir)) {
    if (e.path().extension() == ".png") {
      Pair& p = m[e.path().stem().string()];
      p.stem = e.path().stem().string();
      p.rgb = e.path().string();
    }
  }
  if (fs::is_directory(xyz_dir)) {
    for (const auto& e : fs::directory_iterator(xyz_dir)) {
      const auto ext = e.path().extension();
      if (ext == ".tiff" || ext == ".tif") {
        Pair& p = m[e.path().stem().string()];
        p.stem = e.path().stem().string();
        p.xyz = e.path().string();
      }
    }
  }
  std::vector<Pair> out;
  for (auto& [k, v] : m) out.push_back(v);
  CMDR_CHECK(!out.empty(), "detect: --dir '", d, "' has no .png / .tiff sample (looked in ",
             rgb_dir.string(), " and ", xyz_dir.string(), ")");
  return out;
}

}  // namespace

void run_detect(const DetectArgs& a, const CheckpointArgs& ca, const ExtractorArgs& ea) {
  std::vector<Pair> samples;
  if (!a.dir.empty()) {
    CMDR_CHECK(a.rgb.empty() && a.xyz.empty(), "detect: --dir excludes --rgb/--xyz");
    CMDR_CHECK(fs::is_directory(a.dir), "detect: --dir '", a.dir, "' is not a directory");
    samples = list_dir(a.dir);
  } else {
    CMDR_CHECK(!a.rgb.empty() || !a.xyz.empty(),
               "detect: give --rgb A.png and/or --xyz A.tiff, or --dir D");
    for (const std::string& f : {a.rgb, a.xyz}) {
      CMDR_CHECK(f.empty() || fs::is_regular_file(f), "detect: file '", f, "' does not exist");
    }
    samples.push_back({fs::path(a.rgb.empty() ? a.xyz : a.rgb).stem().string(), a.rgb, a.xyz});
  }
  // Nothing overwritten silently: check every output before any work.
  for (const Pair& p : samples) {
    const std::string png = (fs::path(a.out) / (p.stem + "_heatmap.png")).string();
    CMDR_CHECK(a.force || !fs::exists(png), "detect: '", png,
               "' exists; pass --force to overwrite or choose another --out");
  }
  models::LoadedCheckpoint ck = open_checkpoint(ca);
  const float thr = std::isfinite(a.threshold) ? a.threshold : ck.meta.threshold;
  if (!std::isfinite(thr)) {
    std::cerr << "detect: WARNING: the checkpoint has no decision threshold: pass --threshold; "
                 "labels are 'UNKNOWN'\n";
  }
  const models::Extractors ex = extractors_for(ck, ea, "detect");
  fs::create_directories(a.out);
  profile_begin(a.profile);
  int64_t nok_count = 0;
  for (const Pair& p : samples) {
    const std::string png = (fs::path(a.out) / (p.stem + "_heatmap.png")).string();
    if (p.xyz.empty()) std::cerr << "detect: WARNING: " << p.rgb << ": no xyz file: 2D fallback\n";
    if (p.rgb.empty()) std::cerr << "detect: WARNING: " << p.xyz << ": no rgb file: 3D fallback\n";
    const models::ScoredSample r = models::score_sample(*ck.model, ex, p.rgb, p.xyz);
    if (!r.warning.empty()) std::cerr << "detect: WARNING: " << p.stem << ": " << r.warning << "\n";
    const float score = r.out.fusion.image_score;
    const bool nok = std::isfinite(thr) && score > thr;
    nok_count += nok;
    const std::string label = std::isfinite(thr) ? (nok ? "NOK" : "OK") : "UNKNOWN";
    io::Image8 img;
    if (!p.rgb.empty()) img = io::read_rgb_png(p.rgb);
    io::OverlayOptions oo;
    oo.scale = std::isfinite(ck.meta.map_scale) ? ck.meta.map_scale : 1.0f;
    char l1[64];
    std::snprintf(l1, sizeof l1, "S %.3f T %.3f", static_cast<double>(score),
                  static_cast<double>(thr));
    io::write_png(png,
                  io::heatmap_overlay(img, r.out.fusion.pixel_map, Tensor(), l1, label, nok, oo));
    nlohmann::json j;
    j["sample"] = p.rgb.empty() ? p.xyz : p.rgb;
    j["rgb"] = p.rgb;
    j["xyz"] = p.xyz;
    j["score"] = score;
    j["threshold"] = std::isfinite(thr) ? nlohmann::json(thr) : nlohmann::json(nullptr);
    j["label"] = label;
    j["mode"] = models::mode_name(r.mode_used);
    if (!r.warning.empty()) j["warning"] = r.warning;
    j["heatmap"] = png;
    j["checkpoint"] = ck.path;
    j["checkpoint_sha256"] = ck.sha256;
    j["timings_ms"] = {{"read", r.t.read},
                       {"transform", r.t.transform},
                       {"rgb_extractor", r.t.rgb_extractor},
                       {"xyz_extractor", r.t.xyz_extractor},
                       {"assemble", r.t.assemble},
                       {"networks_fusion", r.t.networks},
                       {"total", r.t.total()}};
    std::cout << j.dump() << std::endl;
  }
  profile_end(a.profile, (fs::path(a.out) / "detect.trace.json").string());
  if (!globals().quiet) {
    std::cerr << "detect: " << samples.size() << " sample(s), " << nok_count << " NOK; heatmaps in "
              << a.out << "\n";
  }
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
  c->add_option("--threshold", a->threshold, "decision threshold (default: the checkpoint's)");
  c->add_flag("--force", a->force, "overwrite existing heatmaps");
  c->add_flag("--profile", a->profile, "per-op profile table and OUT/detect.trace.json");
  c->callback([a, ca, ea] { run_detect(*a, *ca, *ea); });
}

}  // namespace cmdr::app
