#include "io/mvtec.hpp"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>

#include "engine/error.hpp"
#include "io/image.hpp"
#include "io/tiff.hpp"
#include "io/transforms.hpp"

namespace fs = std::filesystem;

namespace cmdr::io {

bool xyz_size_ok(int64_t rgb_w, int64_t rgb_h, int64_t xyz_w, int64_t xyz_h) {
  if (rgb_w == xyz_w && rgb_h == xyz_h) return true;
  const int64_t side = (std::max(rgb_w, rgb_h) + 99) / 100 * 100;
  return xyz_w == side && xyz_h == side;
}

namespace {

std::vector<std::string> sorted_subdirs(const fs::path& p) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(p, ec))
    if (e.is_directory()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// stem → path for files with one of the extensions (sorted by name through std::map).
std::map<std::string, std::string> files_by_stem(const fs::path& dir,
                                                 const std::vector<std::string>& exts,
                                                 std::vector<std::string>& stray) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (!name.empty() && name[0] == '.') continue;  // hidden files (.DS_Store...)
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
    if (std::find(exts.begin(), exts.end(), ext) == exts.end()) {
      stray.push_back(e.path().string() + ": unexpected file, ignored");
      continue;
    }
    out[e.path().stem().string()] = e.path().string();
  }
  return out;
}

// Header/size checks for one sample; returns an empty string when usable.
std::string check_sample(const Sample& s, const ScanOptions& opt) {
  try {
    if (opt.full_decode) {
      const Image8 rgb = read_rgb_png(s.rgb);
      int64_t bad = 0;
      const Tensor xyz = read_xyz_tiff(s.xyz, &bad);
      if (!xyz_size_ok(rgb.width, rgb.height, xyz.size(1), xyz.size(0)))
        return "size mismatch: rgb " + s.rgb + " is " + std::to_string(rgb.width) + "x" +
               std::to_string(rgb.height) + ", xyz " + s.xyz + " is " +
               std::to_string(xyz.size(1)) + "x" + std::to_string(xyz.size(0));
      if (!s.gt.empty()) {
        const Image8 gt = read_gray_png(s.gt);
        if (gt.width != rgb.width || gt.height != rgb.height)
          return "size mismatch: gt " + s.gt + " is " + std::to_string(gt.width) + "x" +
                 std::to_string(gt.height) + ", rgb is " + std::to_string(rgb.width) + "x" +
                 std::to_string(rgb.height);
      }
      return {};
    }
    const PngInfo rgb = png_info(s.rgb);
    if (rgb.channels != 3 || rgb.bit_depth != 8)
      return s.rgb + ": expected 8-bit RGB, found " + std::to_string(rgb.bit_depth) + "-bit with " +
             std::to_string(rgb.channels) + " channel(s)";
    const TiffInfo xyz = tiff_info(s.xyz);
    if (xyz.samples != 3 || xyz.bits != 32 || xyz.sample_format != "float")
      return s.xyz + ": expected 3 samples of 32-bit float, found " + std::to_string(xyz.samples) +
             " of " + std::to_string(xyz.bits) + "-bit " + xyz.sample_format;
    if (!xyz_size_ok(rgb.width, rgb.height, xyz.width, xyz.height))
      return "size mismatch: rgb " + s.rgb + " is " + std::to_string(rgb.width) + "x" +
             std::to_string(rgb.height) + ", xyz " + s.xyz + " is " + std::to_string(xyz.width) +
             "x" + std::to_string(xyz.height);
    if (!s.gt.empty()) {
      const PngInfo gt = png_info(s.gt);
      if (gt.channels != 1 || gt.bit_depth != 8)
        return s.gt + ": expected an 8-bit gray mask, found " + std::to_string(gt.bit_depth) +
               "-bit with " + std::to_string(gt.channels) + " channel(s)";
      if (gt.width != rgb.width || gt.height != rgb.height)
        return "size mismatch: gt " + s.gt + " is " + std::to_string(gt.width) + "x" +
               std::to_string(gt.height) + ", rgb is " + std::to_string(rgb.width) + "x" +
               std::to_string(rgb.height);
    }
  } catch (const Error& e) {
    return e.what();
  }
  return {};
}

void scan_folder(const fs::path& dir, const std::string& cls, const std::string& split,
                 const std::string& defect, bool want_gt, const ScanOptions& opt,
                 std::vector<Sample>& out, std::vector<std::string>& skipped,
                 std::vector<std::string>* dropped = nullptr) {
  const auto rgb = files_by_stem(dir / "rgb", {".png"}, skipped);
  const auto xyz = files_by_stem(dir / "xyz", {".tiff", ".tif"}, skipped);
  const auto gt =
      want_gt ? files_by_stem(dir / "gt", {".png"}, skipped) : std::map<std::string, std::string>{};
  std::map<std::string, int> stems;
  for (const auto& [k, v] : rgb) stems[k] |= 1;
  for (const auto& [k, v] : xyz) stems[k] |= 2;
  for (const auto& [k, v] : gt) stems[k] |= 4;
  const int need = want_gt ? 7 : 3;
  for (const auto& [stem, have] : stems) {
    const std::string where = (dir / stem).string();
    if (have != need) {
      std::string missing;
      if (!(have & 1)) missing += " rgb/" + stem + ".png";
      if (!(have & 2)) missing += " xyz/" + stem + ".tiff";
      if (want_gt && !(have & 4)) missing += " gt/" + stem + ".png";
      skipped.push_back(where + ": missing" + missing);
      if (dropped) dropped->push_back(skipped.back());
      continue;
    }
    Sample s;
    s.cls = cls;
    s.split = split;
    s.defect = defect;
    s.name = stem;
    s.rgb = rgb.at(stem);
    s.xyz = xyz.at(stem);
    if (want_gt) s.gt = gt.at(stem);
    s.label = defect == "good" ? 0 : 1;
    if (opt.check_sizes || opt.full_decode) {
      const std::string why = check_sample(s, opt);
      if (!why.empty()) {
        skipped.push_back(where + ": " + why);
        if (dropped) dropped->push_back(skipped.back());
        continue;
      }
    }
    out.push_back(std::move(s));
  }
}

}  // namespace

std::vector<std::string> list_classes(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail("dataset root ", root, ": not a directory");
  std::vector<std::string> out;
  for (const std::string& d : sorted_subdirs(root))
    if (fs::is_directory(fs::path(root) / d / "train", ec) ||
        fs::is_directory(fs::path(root) / d / "test", ec))
      out.push_back(d);
  return out;
}

std::vector<std::string> list_defects(const std::string& root, const std::string& cls) {
  return sorted_subdirs(fs::path(root) / cls / "test");
}

ClassSplit scan_class(const std::string& root, const std::string& cls, const ScanOptions& opt) {
  const fs::path dir = fs::path(root) / cls;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail("dataset ", root, ": class '", cls, "' not found (no folder ", dir.string(), ")");
  ClassSplit cs;
  cs.cls = cls;
  scan_folder(dir / "train" / "good", cls, "train", "good", false, opt, cs.train, cs.skipped);
  scan_folder(dir / "validation" / "good", cls, "validation", "good", false, opt, cs.validation,
              cs.skipped);
  // Test: the defect types in sorted order ("good" among them, as in the reference's
  // sorted glob); the order only affects report order, not metrics.
  // A defect folder needs gt; "good" uses it when present (MVTec ships all-zero masks).
  for (const std::string& defect : list_defects(root, cls)) {
    const bool want_gt = defect != "good" || fs::is_directory(dir / "test" / defect / "gt", ec);
    scan_folder(dir / "test" / defect, cls, "test", defect, want_gt, opt, cs.test, cs.skipped,
                &cs.dropped_test);
  }
  if (!opt.quiet && !cs.skipped.empty()) {
    for (const std::string& m : cs.skipped) std::cerr << "cmdr-iad: warning: skipped " << m << "\n";
    std::cerr << "cmdr-iad: warning: class " << cls << ": " << cs.skipped.size()
              << " sample(s)/file(s) skipped\n";
  }
  if (cs.train.empty() && cs.validation.empty() && cs.test.empty())
    fail("dataset ", root, ": class '", cls, "' has no usable sample (", cs.skipped.size(),
         " skipped", cs.skipped.empty() ? "" : "; first: " + cs.skipped.front(), ")");
  return cs;
}

Tensor load_xyz(const Sample& s, int64_t* nonfinite) {
  return read_xyz_tiff(s.xyz, nonfinite);
}

LoadedSample load_sample(const Sample& s, int64_t side) {
  LoadedSample out;
  const Image8 rgb = read_rgb_png(s.rgb);
  const Tensor xyz = read_xyz_tiff(s.xyz, &out.nonfinite);
  CMDR_CHECK(xyz_size_ok(rgb.width, rgb.height, xyz.size(1), xyz.size(0)), "sample ", s.rgb,
             ": rgb is ", rgb.width, "x", rgb.height, " but xyz ", s.xyz, " is ", xyz.size(1), "x",
             xyz.size(0));
  out.rgb = rgb_transform(rgb, side);
  out.xyz = cloud_transform(xyz, side);
  if (s.gt.empty()) {
    out.gt = Tensor::zeros({side, side});
  } else {
    const Image8 gt = read_gray_png(s.gt);
    CMDR_CHECK(gt.width == rgb.width && gt.height == rgb.height, "sample ", s.gt, ": gt is ",
               gt.width, "x", gt.height, " but rgb is ", rgb.width, "x", rgb.height);
    out.gt = gt_transform(gt, side);
  }
  return out;
}

std::vector<LoadedSample> load_samples(const std::vector<Sample>& samples, int64_t side,
                                       std::vector<Sample>* kept, std::vector<std::string>* skipped,
                                       bool quiet) {
  const int64_t n = static_cast<int64_t>(samples.size());
  std::vector<LoadedSample> all(samples.size());
  std::vector<std::string> errors(samples.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; ++i) {
    try {
      all[size_t(i)] = load_sample(samples[size_t(i)], side);
    } catch (const std::exception& e) {
      errors[size_t(i)] = e.what();
    }
  }
  std::vector<LoadedSample> out;
  if (kept) kept->clear();
  int64_t bad = 0, nonfinite = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!errors[size_t(i)].empty()) {
      ++bad;
      if (!quiet) std::cerr << "cmdr-iad: warning: skipped sample: " << errors[size_t(i)] << "\n";
      if (skipped) skipped->push_back(errors[size_t(i)]);
      continue;
    }
    nonfinite += all[size_t(i)].nonfinite;
    out.push_back(std::move(all[size_t(i)]));
    if (kept) kept->push_back(samples[size_t(i)]);
  }
  if (!quiet && bad > 0)
    std::cerr << "cmdr-iad: warning: " << bad << " of " << n << " sample(s) could not be loaded\n";
  if (!quiet && nonfinite > 0)
    std::cerr << "cmdr-iad: warning: " << nonfinite
              << " NaN/Inf point(s) treated as missing in the loaded clouds\n";
  CMDR_CHECK(n == 0 || !out.empty(), "load_samples: none of ", n, " sample(s) could be loaded",
             bad > 0 ? "; first error: " + errors[0] : std::string());
  return out;
}

}  // namespace cmdr::io
