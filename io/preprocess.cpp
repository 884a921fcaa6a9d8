// Point-cloud preprocessing (SPEC 2). See preprocess.hpp.
#include "io/preprocess.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "io/tiff.hpp"

namespace cmdr::preprocess {

using Eigen::Vector3d;

double Plane::distance(double x, double y, double z) const {
  return std::abs(a * x + b * y + c * z + d);
}

static inline bool is_zero(const float* p) {
  return p[0] == 0.f && p[1] == 0.f && p[2] == 0.f;
}

std::vector<Vector3d> border_points(const float* xyz, int64_t h, int64_t w, int border) {
  CMDR_CHECK(border > 0 && 2 * border <= std::min(h, w), "preprocess: border ", border,
             " does not fit a ", h, "x", w, " cloud");
  std::vector<Vector3d> pts;
  auto take = [&](int64_t y0, int64_t y1, int64_t x0, int64_t x1) {
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = x0; x < x1; ++x) {
        const float* p = xyz + (y * w + x) * 3;
        if (!is_zero(p)) pts.emplace_back(p[0], p[1], p[2]);
      }
  };
  take(0, border, 0, w);      // top
  take(h - border, h, 0, w);  // bottom
  take(0, h, 0, border);      // left (corners again)
  take(0, h, w - border, w);  // right
  return pts;
}

Plane fit_plane(const std::vector<Vector3d>& pts, const std::vector<int64_t>& idx) {
  if (idx.size() < 3) return {};
  Vector3d centroid = Vector3d::Zero();
  for (int64_t i : idx) centroid += pts[i];
  centroid /= static_cast<double>(idx.size());
  Eigen::Matrix3d scatter = Eigen::Matrix3d::Zero();
  for (int64_t i : idx) {
    const Vector3d r = pts[i] - centroid;
    scatter += r * r.transpose();
  }
  Eigen::SelfAdjointEigenSolver<Eigen::Matrix3d> es(scatter);
  // Collinear or coincident points: no unique plane (the two largest spreads must exist).
  if (!(es.eigenvalues()(1) > 0.0)) return {};
  const Vector3d n = es.eigenvectors().col(0).normalized();  // smallest eigenvalue
  return {n(0), n(1), n(2), -n.dot(centroid)};
}

Plane ransac_plane(const std::vector<Vector3d>& pts, double threshold, int n, int iterations,
                   double probability, uint64_t seed) {
  const int64_t np = static_cast<int64_t>(pts.size());
  CMDR_CHECK(n >= 3, "preprocess: RANSAC needs at least 3 points per hypothesis, got ", n);
  CMDR_CHECK(np >= n, "preprocess: only ", np, " non-zero border points, RANSAC needs ", n);
  Rng rng(seed);
  Plane best;
  int64_t best_inliers = -1;
  double best_rmse = std::numeric_limits<double>::infinity();
  double break_iteration = std::numeric_limits<double>::infinity();
  std::vector<int64_t> sample;
  for (int it = 0; it < iterations; ++it) {
    if (static_cast<double>(it) > break_iteration) break;
    sample.clear();
    while (static_cast<int>(sample.size()) < n) {  // n distinct indices
      const int64_t k = rng.below(np);
      if (std::find(sample.begin(), sample.end(), k) == sample.end()) sample.push_back(k);
    }
    const Plane pl = fit_plane(pts, sample);
    if (pl.a == 0 && pl.b == 0 && pl.c == 0) continue;
    int64_t inl = 0;
    double err = 0;
    for (const Vector3d& p : pts) {
      const double dd = pl.distance(p(0), p(1), p(2));
      if (dd < threshold) {
        ++inl;
        err += dd * dd;
      }
    }
    const double rmse = inl > 0 ? std::sqrt(err / static_cast<double>(inl)) : 0.0;
    if (inl > best_inliers || (inl == best_inliers && rmse < best_rmse)) {
      best = pl;
      best_inliers = inl;
      best_rmse = rmse;
      // Open3D's early stop: iterations needed to draw an all-inlier sample with the given
      // confidence at the current inlier ratio.
      const double fitness = static_cast<double>(inl) / static_cast<double>(np);
      if (fitness < 1.0)
        break_iteration = std::min(break_iteration,
                                   std::log(1.0 - probability) /
                                       std::log(1.0 - std::pow(fitness, static_cast<double>(n))));
      else
        break_iteration = 0;
    }
  }
  CMDR_CHECK(best_inliers > 0, "preprocess: RANSAC found no plane among ", np, " border points");
  // Refit on every inlier of the winner (as Open3D does).
  std::vector<int64_t> inliers;
  for (int64_t i = 0; i < np; ++i)
    if (best.distance(pts[i](0), pts[i](1), pts[i](2)) < threshold) inliers.push_back(i);
  const Plane refined = fit_plane(pts, inliers);
  return (refined.a == 0 && refined.b == 0 && refined.c == 0) ? best : refined;
}

// ---------------------------------------------------------------------------------------
// DBSCAN on a voxel grid. Cell side s = eps/sqrt(3) (shrunk by 1e-9 so rounding cannot push
// a same-cell pair to >= eps): every pair inside one cell are neighbours, so a cell holding
// >= min_points points makes all of them core without any distance test, and clusters are
// unions of cells. Neighbouring cells lie within +-2 cells on each axis.

namespace {

struct UnionFind {
  std::vector<int32_t> parent;
  explicit UnionFind(std::size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int32_t find(int32_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  void unite(int32_t a, int32_t b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

// Integer cell coordinates; any extent works (no packing), hashed for neighbour lookup.
using CellKey = std::array<int64_t, 3>;
struct CellKeyHash {
  std::size_t operator()(const CellKey& k) const {
    uint64_t h = static_cast<uint64_t>(k[0]) * 0x9e3779b97f4a7c15ull;
    h ^= static_cast<uint64_t>(k[1]) + 0x7f4a7c159e3779b9ull + (h << 6) + (h >> 2);
    h ^= static_cast<uint64_t>(k[2]) + 0x94d049bb133111ebull + (h << 6) + (h >> 2);
    return static_cast<std::size_t>(h);
  }
};

}  // namespace

std::vector<int32_t> dbscan(const std::vector<Vector3d>& pts, double eps, int min_points) {
  const int64_t n = static_cast<int64_t>(pts.size());
  std::vector<int32_t> labels(n, -1);
  if (n == 0) return labels;
  CMDR_CHECK(eps > 0 && min_points >= 1, "dbscan: eps ", eps, " min_points ", min_points);
  const double eps2 = eps * eps;
  const double side = eps / std::sqrt(3.0) * (1.0 - 1e-9);
  Vector3d lo = pts[0];
  for (const auto& p : pts) lo = lo.cwiseMin(p);
  std::vector<CellKey> cc(n);
  std::vector<std::pair<CellKey, int64_t>> order(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int a = 0; a < 3; ++a) {
      const double q = std::floor((pts[i](a) - lo(a)) / side);
      CMDR_CHECK(q < 1e15, "dbscan: point ", i, " coordinate ", pts[i](a),
                 " is absurdly far from the others (extent / eps too large)");
      cc[i][a] = static_cast<int64_t>(q);
    }
    order[i] = {cc[i], i};
  }
  std::sort(order.begin(), order.end());
  // Cells: contiguous runs of `order` (points inside a cell in input order).
  std::vector<int64_t> cell_start;
  std::vector<CellKey> cell_keys;
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || order[i].first != order[i - 1].first) {
      cell_start.push_back(i);
      cell_keys.push_back(order[i].first);
    }
  const int64_t ncell = static_cast<int64_t>(cell_keys.size());
  cell_start.push_back(n);
  std::unordered_map<CellKey, int32_t, CellKeyHash> cell_of;
  cell_of.reserve(static_cast<std::size_t>(ncell) * 2);
  for (int64_t c = 0; c < ncell; ++c) cell_of.emplace(cell_keys[c], static_cast<int32_t>(c));
  std::vector<int32_t> point_cell(n);
  for (int64_t c = 0; c < ncell; ++c)
    for (int64_t k = cell_start[c]; k < cell_start[c + 1]; ++k)
      point_cell[order[k].second] = static_cast<int32_t>(c);

  // Neighbour cells of each cell (existing ones only), itself excluded.
  std::vector<std::vector<int32_t>> nbr(ncell);
  for (int64_t c = 0; c < ncell; ++c) {
    const int64_t p0 = order[cell_start[c]].second;
    for (int dx = -2; dx <= 2; ++dx)
      for (int dy = -2; dy <= 2; ++dy)
        for (int dz = -2; dz <= 2; ++dz) {
          if (dx == 0 && dy == 0 && dz == 0) continue;
          auto it = cell_of.find(CellKey{cc[p0][0] + dx, cc[p0][1] + dy, cc[p0][2] + dz});
          if (it != cell_of.end()) nbr[c].push_back(it->second);
        }
  }
  auto near = [&](int64_t i, int64_t j) { return (pts[i] - pts[j]).squaredNorm() < eps2; };

  // 1. Core points.
  std::vector<uint8_t> core(n, 0);
  std::vector<uint8_t> cell_has_core(ncell, 0);
#pragma omp parallel for schedule(dynamic, 64)
  for (int64_t c = 0; c < ncell; ++c) {
    const int64_t cnt = cell_start[c + 1] - cell_start[c];
    for (int64_t k = cell_start[c]; k < cell_start[c + 1]; ++k) {
      const int64_t i = order[k].second;
      int64_t m = cnt;  // same-cell points, the point itself included
      for (int32_t b : nbr[c]) {
        if (m >= min_points) break;
        for (int64_t q = cell_start[b]; q < cell_start[b + 1] && m < min_points; ++q)
          m += near(i, order[q].second);
      }
      if (m >= min_points) {
        core[i] = 1;
        cell_has_core[c] = 1;
      }
    }
  }

  // 2. Clusters of core cells: two cells join when some core pair is within eps.
  UnionFind uf(static_cast<std::size_t>(ncell));
  for (int64_t c = 0; c < ncell; ++c) {
    if (!cell_has_core[c]) continue;
    for (int32_t b : nbr[c]) {
      if (b < c || !cell_has_core[b] || uf.find(static_cast<int32_t>(c)) == uf.find(b)) continue;
      bool joined = false;
      for (int64_t k = cell_start[c]; k < cell_start[c + 1] && !joined; ++k) {
        const int64_t i = order[k].second;
        if (!core[i]) continue;
        for (int64_t q = cell_start[b]; q < cell_start[b + 1]; ++q) {
          const int64_t j = order[q].second;
          if (core[j] && near(i, j)) {
            joined = true;
            break;
          }
        }
      }
      if (joined) uf.unite(static_cast<int32_t>(c), b);
    }
  }
  // Number clusters by their first core point in input order (Open3D's seed order).
  std::vector<int32_t> root_label(ncell, -1);
  int32_t next = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!core[i]) continue;
    const int32_t r = uf.find(point_cell[i]);
    if (root_label[r] < 0) root_label[r] = next++;
    labels[i] = root_label[r];
  }
  // 3. Border points: the lowest-numbered cluster with a core point within eps (Open3D
  // expands clusters one after another; the first to reach a border point keeps it).
  for (int64_t i = 0; i < n; ++i) {
    if (core[i]) continue;
    const int32_t c = point_cell[i];
    int32_t best = std::numeric_limits<int32_t>::max();
    auto scan = [&](int32_t cell) {
      for (int64_t q = cell_start[cell]; q < cell_start[cell + 1]; ++q) {
        const int64_t j = order[q].second;
        if (core[j] && near(i, j)) best = std::min(best, labels[j]);
      }
    };
    if (cell_has_core[c]) scan(c);
    for (int32_t b : nbr[c])
      if (cell_has_core[b]) scan(b);
    if (best != std::numeric_limits<int32_t>::max()) labels[i] = best;
  }
  return labels;
}

Padded pad_square(const float* xyz, int64_t h, int64_t w, int multiple) {
  CMDR_CHECK(h > 0 && w > 0 && multiple > 0, "preprocess: pad ", h, "x", w, " to ", multiple);
  auto up = [&](int64_t v) { return (v + multiple - 1) / multiple * multiple; };
  Padded out;
  out.side = std::max(up(h), up(w));
  out.top = (out.side - h) / 2;  // extra pixel (odd padding) goes bottom/right
  out.left = (out.side - w) / 2;
  out.xyz.assign(static_cast<std::size_t>(out.side * out.side * 3), 0.f);
  for (int64_t y = 0; y < h; ++y)
    std::copy(xyz + y * w * 3, xyz + (y + 1) * w * 3,
              out.xyz.begin() + ((y + out.top) * out.side + out.left) * 3);
  return out;
}

Padded preprocess_cloud(const float* xyz_in, int64_t h, int64_t w, uint64_t seed, const Params& p,
                        Stats* stats, std::vector<uint8_t>* plane_removed_mask) {
  Stats s;
  std::vector<float> xyz(xyz_in, xyz_in + h * w * 3);
  for (int64_t i = 0; i < h * w; ++i) {
    float* q = xyz.data() + i * 3;
    if (!std::isfinite(q[0]) || !std::isfinite(q[1]) || !std::isfinite(q[2])) {
      q[0] = q[1] = q[2] = 0.f;  // NaN/Inf = missing point
      ++s.invalid_points;
    }
    s.input_points += !is_zero(q);
  }
  // 1. Plane removal.
  s.plane = ransac_plane(border_points(xyz.data(), h, w, p.border), p.ransac_threshold, p.ransac_n,
                         p.ransac_iterations, p.ransac_probability, seed);
  if (plane_removed_mask) plane_removed_mask->assign(static_cast<std::size_t>(h * w), 0);
  for (int64_t i = 0; i < h * w; ++i) {
    float* q = xyz.data() + i * 3;
    if (is_zero(q)) continue;
    if (s.plane.distance(q[0], q[1], q[2]) < p.remove_threshold) {
      q[0] = q[1] = q[2] = 0.f;
      ++s.plane_removed;
      if (plane_removed_mask) (*plane_removed_mask)[i] = 1;
    }
  }
  // 2. Square padding.
  Padded out = pad_square(xyz.data(), h, w, p.pad_multiple);
  // 3. DBSCAN, keep the largest cluster.
  const int64_t np = out.side * out.side;
  std::vector<int64_t> where;
  std::vector<Vector3d> pts;
  for (int64_t i = 0; i < np; ++i) {
    const float* q = out.xyz.data() + i * 3;
    if (is_zero(q)) continue;
    where.push_back(i);
    pts.emplace_back(q[0], q[1], q[2]);
  }
  const std::vector<int32_t> lab = dbscan(pts, p.dbscan_eps, p.dbscan_min_points);
  int32_t ncl = 0;
  for (int32_t l : lab) ncl = std::max(ncl, l + 1);
  std::vector<int64_t> size(ncl, 0);
  for (int32_t l : lab)
    if (l >= 0) ++size[l];
  // Largest cluster; on a tie the lowest label (numpy argmax).
  const int32_t keep =
      ncl > 0 ? static_cast<int32_t>(std::max_element(size.begin(), size.end()) - size.begin())
              : -1;
  for (std::size_t k = 0; k < where.size(); ++k) {
    if (lab[k] == keep && keep >= 0) {
      ++s.kept;
      continue;
    }
    float* q = out.xyz.data() + where[k] * 3;
    q[0] = q[1] = q[2] = 0.f;
    ++s.cluster_removed;
  }
  s.clusters = ncl;
  if (stats) *stats = s;
  return out;
}

}  // namespace cmdr::preprocess

// ---------------------------------------------------------------------------------------
// Dataset root.

namespace cmdr::preprocess {

namespace fs = std::filesystem;

namespace {
// FNV-1a of the relative path, mixed with the seed (splitmix64 finaliser).
uint64_t sample_seed(uint64_t seed, const std::string& rel) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : rel) h = (h ^ ch) * 1099511628211ull;
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (h | 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
bool is_cloud(const fs::path& rel) {
  const std::string ext = rel.extension().string();
  return rel.has_parent_path() && rel.parent_path().filename() == "xyz" &&
         (ext == ".tiff" || ext == ".tif");
}
bool inside(const fs::path& a, const fs::path& b) {  // a == b or a under b (canonical)
  auto ia = a.begin(), ib = b.begin();
  for (; ib != b.end(); ++ia, ++ib)
    if (ia == a.end() || *ia != *ib) return false;
  return true;
}
}  // namespace

RootSummary preprocess_root(const std::string& root, const std::string& out, bool force,
                            uint64_t seed, const Params& p, const Progress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  std::error_code ec;
  CMDR_CHECK(fs::is_directory(root, ec), "preprocess: --data ", root, " is not a directory");
  const fs::path src = fs::canonical(root);
  const fs::path dst = fs::weakly_canonical(fs::absolute(out));
  CMDR_CHECK(!inside(dst, src), "preprocess: --out ", out, " is ", (dst == src ? "" : "inside "),
             "the input root ", root, " (the input is never modified; choose a new directory)");
  CMDR_CHECK(!inside(src, dst), "preprocess: the input root ", root, " is inside --out ", out);
  if (fs::exists(dst)) {
    CMDR_CHECK(fs::is_directory(dst), "preprocess: --out ", out, " exists and is not a directory");
    CMDR_CHECK(force || fs::is_empty(dst), "preprocess: --out ", out,
               " is not empty (use --force to write into it)");
  }
  // Every regular file, sorted: a deterministic order and progress count.
  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(src); it != fs::recursive_directory_iterator();
       ++it)
    if (it->is_regular_file()) files.push_back(fs::relative(it->path(), src));
  std::sort(files.begin(), files.end());
  CMDR_CHECK(std::any_of(files.begin(), files.end(), is_cloud), "preprocess: no xyz/*.tiff under ",
             root, " (expected an MVTec 3D-AD root: <class>/<split>/<type>/xyz/*.tiff)");

  RootSummary sum;
  for (std::size_t k = 0; k < files.size(); ++k) {
    const fs::path& rel = files[k];
    const fs::path from = src / rel, to = dst / rel;
    fs::create_directories(to.parent_path());
    if (progress)
      progress(static_cast<int64_t>(k), static_cast<int64_t>(files.size()), rel.string());
    if (!is_cloud(rel)) {
      fs::copy_file(from, to, fs::copy_options::overwrite_existing);
      ++sum.copied;
      continue;
    }
    try {
      int64_t nonfinite = 0;
      const Tensor xyz = io::read_xyz_tiff(from.string(), &nonfinite).contiguous();
      const int64_t h = xyz.size(0), w = xyz.size(1);
      Stats s;
      Padded res =
          preprocess_cloud(xyz.data(), h, w, sample_seed(seed, rel.generic_string()), p, &s);
      io::write_xyz_tiff(to.string(), Tensor::from_vector({res.side, res.side, 3}, res.xyz));
      ++sum.clouds;
      sum.invalid_points += nonfinite + s.invalid_points;
      sum.plane_removed += s.plane_removed;
      sum.cluster_removed += s.cluster_removed;
      sum.kept += s.kept;
      if (s.clusters == 0)
        std::cerr << "\npreprocess: warning: " << from.string()
                  << ": DBSCAN found no cluster, the cloud is empty after cleaning\n";
    } catch (const cmdr::Error& e) {
      ++sum.failed;
      std::cerr << "\npreprocess: skipped " << from.string() << ": " << e.what() << "\n";
    }
  }
  if (progress)
    progress(static_cast<int64_t>(files.size()), static_cast<int64_t>(files.size()), "");
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

}  // namespace cmdr::preprocess
