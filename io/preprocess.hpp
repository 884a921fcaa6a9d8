#pragma once
// Point-cloud preprocessing (SPEC 2), on in-memory organized clouds (h×w×3 float32,
// row-major; a missing point is exactly (0,0,0)):
//   1. RANSAC plane from the non-zero points of the 10-pixel border strips (Open3D
//      segment_plane(0.004, 50, 1000) semantics, seeded), zero every point with plane
//      distance < 0.005;
//   2. zero padding to a centred square (side = max(H, W) rounded up to a multiple of 100,
//      extra pixel bottom/right);
//   3. DBSCAN (eps 0.006, min points 30) over the non-zero points with a voxel grid
//      (cells of side eps/sqrt(3), so a cell's points are all mutual neighbours); keep the
//      largest cluster, zero the rest.
// Compared against Open3D by tools/golden/preprocess.py (tests/io/test_preprocess.cpp).
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cmdr::preprocess {

// SPEC 2 constants.
struct Params {
  int border = 10;                  // border strip width (pixels)
  double ransac_threshold = 0.004;  // inlier distance during RANSAC
  int ransac_n = 50;                // points per hypothesis
  int ransac_iterations = 1000;
  double ransac_probability = 0.99999999;  // Open3D's early-stop confidence (its default)
  double remove_threshold = 0.005;         // points closer than this to the plane are zeroed
  int pad_multiple = 100;
  double dbscan_eps = 0.006;
  int dbscan_min_points = 30;
};

// Plane a x + b y + c z + d = 0 with (a, b, c) a unit normal: |dot| is a metric distance.
struct Plane {
  double a = 0, b = 0, c = 0, d = 0;
  double distance(double x, double y, double z) const;
};

// Non-zero points of the four border strips, concatenated top, bottom, left, right (the
// corner blocks therefore appear twice, as in the reference implementation).
std::vector<Eigen::Vector3d> border_points(const float* xyz, int64_t h, int64_t w, int border);

// Least-squares plane through the points (centroid + smallest-eigenvalue eigenvector of the
// scatter matrix). All-zero plane when the points are degenerate (< 3 or collinear).
Plane fit_plane(const std::vector<Eigen::Vector3d>& pts, const std::vector<int64_t>& idx);

// RANSAC as Open3D's segment_plane: `iterations` hypotheses from `n` distinct random points
// each, scored by inlier count (distance < threshold) then inlier RMSE, early stop once the
// confidence `probability` is reached; the winner is refitted on all its inliers.
// Deterministic for a given seed. Throws if fewer than n points.
Plane ransac_plane(const std::vector<Eigen::Vector3d>& pts, double threshold, int n, int iterations,
                   double probability, uint64_t seed);

// DBSCAN labels (-1 = noise, clusters 0, 1, ... numbered by their first core point in input
// order, a border point belonging to the reachable cluster numbered first) — the labelling
// Open3D's cluster_dbscan produces. Neighbours: distance < eps, the point itself included.
std::vector<int32_t> dbscan(const std::vector<Eigen::Vector3d>& pts, double eps, int min_points);

// Square zero padding (step 2). Returns the padded cloud; side/top/left describe it.
struct Padded {
  std::vector<float> xyz;  // side × side × 3
  int64_t side = 0, top = 0, left = 0;
};
Padded pad_square(const float* xyz, int64_t h, int64_t w, int multiple);

struct Stats {
  Plane plane;
  int64_t input_points = 0;     // non-zero points in the input
  int64_t invalid_points = 0;   // NaN/Inf points, treated as missing (zeroed)
  int64_t plane_removed = 0;    // non-zero points zeroed by step 1
  int64_t clusters = 0;         // DBSCAN clusters found in step 3
  int64_t cluster_removed = 0;  // points zeroed by step 3 (noise + smaller clusters)
  int64_t kept = 0;             // non-zero points in the output
};

// The whole SPEC 2 procedure on one h×w×3 cloud. Returns the padded, cleaned cloud.
// `plane_removed_mask` (optional, h×w) receives 1 where step 1 zeroed a non-zero point.
Padded preprocess_cloud(const float* xyz, int64_t h, int64_t w, uint64_t seed, const Params& p,
                        Stats* stats = nullptr, std::vector<uint8_t>* plane_removed_mask = nullptr);

// --- a whole dataset root --------------------------------------------------------------
// Mirrors `root` into `out`: every xyz/*.tiff is preprocessed (its seed derived from `seed`
// and its relative path, so the result does not depend on processing order), every other
// file (rgb, gt, anything else) is copied byte for byte; the rgb PNG is left as is
// (SPEC 2: the loader pads it). Nothing under `root` is modified. Refuses: out == root, one
// inside the other, or a non-empty `out` unless `force` (then files are overwritten, none
// deleted). A cloud that cannot be read or processed is reported on stderr and skipped;
// the summary counts it. progress(done, total, relative_path) is called per file.
struct RootSummary {
  int64_t clouds = 0, copied = 0, failed = 0;
  int64_t invalid_points = 0, plane_removed = 0, cluster_removed = 0, kept = 0;
  double seconds = 0;
};
using Progress = std::function<void(int64_t done, int64_t total, const std::string& rel)>;
RootSummary preprocess_root(const std::string& root, const std::string& out, bool force,
                            uint64_t seed, const Params& p = {}, const Progress& progress = {});

}  // namespace cmdr::preprocess
