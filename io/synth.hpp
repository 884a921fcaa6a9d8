#pragma once
// Procedural MVTec-3D-AD-style data (the demo's and end-to-end tests' default dataset).
// Each class is an object (ellipsoid, rounded box, lying cylinder, torus, with per-class
// palette and texture) on a tilted support plane seen by a pinhole camera looking along +Z.
// Every sample varies pose, scale, position, plane tilt/distance and texture; the cloud gets
// sensor noise and dropouts (exact zeros). Defect types:
//   geometry only: dent, hole        appearance only: stain
//   both:          bump, crack, cut
// each with its gt mask (0/255). Output layout is exactly SPEC 1; same seed → same bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "io/image.hpp"

namespace cmdr::io {

struct SynthOptions {
  int classes = 2;
  int size = 256;  // image width (rgb/xyz/gt)
  int height = 0;  // image height; 0: square (size)
  int train = 10;
  int validation = 2;
  int test_good = 5;
  int test_defect = 12;  // per class, spread round-robin over the defect types
  uint64_t seed = 0;
  // Issue 9 item 6 (held-out thin objects): every class is a thin rod (Ø 17 mm, 100 mm long)
  // instead of its shape, and/or the support plane is removed from the clouds (every point
  // less than 5 mm above it zeroed, as `preprocess` does with remove_threshold 0.005).
  bool thin_rod = false;
  bool remove_plane = false;
  bool force = false;  // allow a non-empty output folder (replaces the classes written)
  bool quiet = true;
};

// The defect type names, in round-robin order.
const std::vector<std::string>& synth_defect_types();
// Class folder name of class index k (k ≥ 0).
std::string synth_class_name(int k);

struct SynthSample {
  Image8 rgb;  // size×size×3
  Tensor xyz;  // size×size×3, metres, missing points (0,0,0)
  Image8 gt;   // size×size×1, 0 or 255
};
// One sample: class k, defect "good" or a type of synth_defect_types(), from its own seed.
// width = size, height (0: square).
SynthSample synth_sample(int cls, const std::string& defect, uint64_t seed, int size,
                         int height = 0, bool thin_rod = false, bool remove_plane = false);

struct SynthSummary {
  int64_t files = 0;
  double seconds = 0;
  std::vector<std::string> classes;
};
// Writes the dataset. Refuses a non-empty `out` unless opt.force.
SynthSummary synth_dataset(const std::string& out, const SynthOptions& opt);

}  // namespace cmdr::io
