#pragma once
// MVTec 3D-AD dataset walking and loading (SPEC 1):
//   <root>/<class>/{train,validation}/good/{rgb,xyz}
//   <root>/<class>/test/<defect>/{rgb,xyz,gt}      (defect "good" = label 0, else 1)
// rgb/xyz/gt files are paired by sorted name (same stem: 000.png ↔ 000.tiff ↔ 000.png).
// xyz must have the rgb's size, or the SPEC 2 padded square (preprocessed roots); gt the rgb's.
// A sample that cannot be used (missing partner, unreadable header, size mismatch) is
// reported and skipped; scans end with a count; a class with no usable sample is an error.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr::io {

struct Sample {
  std::string cls;           // class folder name, e.g. "bagel"
  std::string split;         // "train", "validation" or "test"
  std::string defect;        // "good" or the defect folder name
  std::string name;          // file stem, e.g. "000"
  std::string rgb, xyz, gt;  // paths; gt empty when the folder has no gt (train/validation)
  int label = 0;             // 0 good, 1 defective
};

struct ClassSplit {
  std::string cls;
  std::vector<Sample> train, validation, test;
  std::vector<std::string> skipped;       // one message per skipped sample / stray file
  std::vector<std::string> dropped_test;  // the test samples among `skipped` (no stray files)
};

// xyz is pixel-aligned with rgb (same size), or — after SPEC 2 preprocessing — zero-padded,
// centred, to a square of side max(H, W) rounded up to a multiple of 100.
bool xyz_size_ok(int64_t rgb_w, int64_t rgb_h, int64_t xyz_w, int64_t xyz_h);

struct ScanOptions {
  bool check_sizes = true;   // read headers: rgb vs xyz vs gt sizes, channels, sample types
  bool full_decode = false;  // decode every file (catches truncated data; slower)
  bool quiet = false;        // do not print skipped samples to stderr
};

// Class folders under root (sorted): directories that contain train/ or test/.
std::vector<std::string> list_classes(const std::string& root);
// Defect types of a class's test split (sorted, "good" included when present).
std::vector<std::string> list_defects(const std::string& root, const std::string& cls);

// Walks one class. Throws cmdr::Error when the class folder is missing or no sample is usable.
ClassSplit scan_class(const std::string& root, const std::string& cls, const ScanOptions& opt = {});

// A loaded sample after SPEC 3 transforms at side S.
struct LoadedSample {
  Tensor rgb;             // 3×S×S, ImageNet-normalised
  Tensor xyz;             // 3×S×S, organized cloud (missing points (0,0,0))
  Tensor gt;              // S×S of 0/1 (zeros when the sample has no gt file)
  int64_t nonfinite = 0;  // NaN/Inf points set to missing
};
LoadedSample load_sample(const Sample& s, int64_t side);

// Loads many samples (in parallel; results in input order). A sample whose files fail to
// decode is reported on stderr (unless quiet) and skipped; `kept` receives the samples that
// loaded, `skipped` one message per failure. Throws when none loads.
std::vector<LoadedSample> load_samples(const std::vector<Sample>& samples, int64_t side,
                                       std::vector<Sample>* kept = nullptr,
                                       std::vector<std::string>* skipped = nullptr,
                                       bool quiet = false);

// Raw (untransformed) loads, for tools that need native resolution.
Tensor load_xyz(const Sample& s, int64_t* nonfinite = nullptr);  // H×W×3

}  // namespace cmdr::io
