// io/preprocess vs Open3D (tools/golden/preprocess.py: segment_plane(0.004, 50, 1000) and
// cluster_dbscan(0.006, 30) on synthetic organized scans). Issue 4: >= 99 % of the points
// must get the same keep/remove decision; RANSAC is random, so the plane is compared with a
// tolerance and the decisions are compared, not the samples.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "io/image.hpp"
#include "io/preprocess.hpp"
#include "io/safetensors.hpp"
#include "io/tiff.hpp"

using namespace cmdr;
namespace pp = cmdr::preprocess;

namespace {
const std::string kFile = std::string(CMDR_FIXTURES) + "/preprocess/scans.safetensors";

template <typename T>
std::vector<T> raw_as(const st::File& f, const std::string& name) {
  const auto& ti = f.info(name);
  std::vector<T> v((ti.end - ti.begin) / sizeof(T));
  std::memcpy(v.data(), f.raw(name), ti.end - ti.begin);
  return v;
}
pp::Plane meta_plane(const st::File& f, const std::string& key) {
  std::istringstream is(f.metadata().at(key));
  pp::Plane p;
  is >> p.a >> p.b >> p.c >> p.d;
  return p;
}
bool nonzero(const float* q) {
  return q[0] != 0.f || q[1] != 0.f || q[2] != 0.f;
}
}  // namespace

TEST_CASE("preprocess: plane, DBSCAN and keep decisions agree with Open3D") {
  st::File f(kFile);
  for (const char* name : {"a", "b", "c"}) {
    CAPTURE(name);
    const std::string c(name);
    const Tensor xyz_t = f.get(c + ".xyz");
    const int64_t h = xyz_t.size(0), w = xyz_t.size(1);
    const std::vector<float> xyz = xyz_t.to_vector();
    const auto o3d_removed = raw_as<uint8_t>(f, c + ".plane_removed");
    const auto o3d_labels = raw_as<int32_t>(f, c + ".labels");
    const auto o3d_keep = raw_as<uint8_t>(f, c + ".keep");
    const pp::Plane o3d_plane = meta_plane(f, c + ".plane");
    const pp::Params prm;

    // 1. The plane: normals parallel, offsets equal (sign-aligned).
    pp::Stats s;
    std::vector<uint8_t> removed;
    const pp::Padded out = pp::preprocess_cloud(xyz.data(), h, w, 42, prm, &s, &removed);
    const double dot = s.plane.a * o3d_plane.a + s.plane.b * o3d_plane.b + s.plane.c * o3d_plane.c;
    const double sgn = dot < 0 ? -1.0 : 1.0;
    const double angle = std::acos(std::min(1.0, std::abs(dot)));
    CHECK(angle < 2e-3);  // radians
    CHECK(std::abs(sgn * s.plane.d - o3d_plane.d) < 5e-4);
    int64_t same_removed = 0;
    for (int64_t i = 0; i < h * w; ++i) same_removed += removed[i] == o3d_removed[i];

    // 2. DBSCAN on exactly Open3D's input (its plane removal): identical labels expected.
    std::vector<float> planeless = xyz;
    for (int64_t i = 0; i < h * w; ++i)
      if (o3d_removed[i]) planeless[i * 3] = planeless[i * 3 + 1] = planeless[i * 3 + 2] = 0.f;
    const pp::Padded padded = pp::pad_square(planeless.data(), h, w, prm.pad_multiple);
    REQUIRE(padded.side * padded.side == static_cast<int64_t>(o3d_labels.size()));
    std::vector<Eigen::Vector3d> pts;
    std::vector<int64_t> where;
    for (int64_t i = 0; i < padded.side * padded.side; ++i)
      if (nonzero(&padded.xyz[i * 3])) {
        pts.emplace_back(padded.xyz[i * 3], padded.xyz[i * 3 + 1], padded.xyz[i * 3 + 2]);
        where.push_back(i);
      }
    const auto lab = pp::dbscan(pts, prm.dbscan_eps, prm.dbscan_min_points);
    int64_t same_label = 0;
    for (std::size_t k = 0; k < where.size(); ++k) {
      CHECK(o3d_labels[where[k]] != -2);  // same non-zero set as Open3D's input
      same_label += lab[k] == o3d_labels[where[k]];
    }
    const double label_agree = double(same_label) / double(where.size());

    // 3. The whole pipeline (our own seeded RANSAC): keep/remove per input point.
    REQUIRE(out.side == padded.side);
    int64_t n_in = 0, same_keep = 0, kept = 0;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        if (!nonzero(&xyz[(y * w + x) * 3])) continue;
        ++n_in;
        const int64_t o = (y + out.top) * out.side + x + out.left;
        const bool ours = nonzero(&out.xyz[o * 3]);
        kept += ours;
        same_keep += ours == (o3d_keep[o] != 0);
      }
    const double keep_agree = double(same_keep) / double(n_in);
    std::printf(
        "preprocess %s: plane angle %.2e rad, removal agreement %.5f, DBSCAN label agreement "
        "%.5f (%zu pts), keep agreement %.5f over %lld input points (kept %lld)\n",
        name, angle, double(same_removed) / double(h * w), label_agree, where.size(),
        double(keep_agree), static_cast<long long>(n_in), static_cast<long long>(kept));
    CHECK(label_agree >= 0.999);
    CHECK(keep_agree >= 0.99);
    CHECK(kept > 1000);  // the big object survives: the test cannot pass on an empty cloud
    CHECK(s.kept == kept);
  }
}

TEST_CASE("preprocess: padding geometry and DBSCAN basics") {
  // 130×95 -> side 200 (ceil to 100 of the larger side), top 35, left 52 (extra px bottom/right)
  std::vector<float> c(130 * 95 * 3, 1.f);
  const pp::Padded p = pp::pad_square(c.data(), 130, 95, 100);
  CHECK(p.side == 200);
  CHECK(p.top == 35);
  CHECK(p.left == 52);
  CHECK(p.xyz[(35 * 200 + 52) * 3] == 1.f);
  CHECK(p.xyz[(34 * 200 + 52) * 3] == 0.f);
  CHECK(p.xyz[(164 * 200 + 146) * 3] == 1.f);
  CHECK(p.xyz[(165 * 200 + 146) * 3] == 0.f);
  CHECK(p.xyz[(164 * 200 + 147) * 3] == 0.f);
  CHECK(pp::pad_square(c.data(), 200, 100, 100).side == 200);

  // Two dense lines 10 cm apart + one isolated point: two clusters and noise, numbered by
  // first core point.
  std::vector<Eigen::Vector3d> pts;
  for (int i = 0; i < 50; ++i) pts.emplace_back(0.1, 0.0001 * i, 0.3);  // cluster 0 (first)
  pts.emplace_back(0.5, 0.5, 0.5);                                      // noise
  for (int i = 0; i < 40; ++i) pts.emplace_back(0.0, 0.0001 * i, 0.3);  // cluster 1
  pts.emplace_back(1e6, -1e6, 3e5);  // a wild outlier: no grid-extent limit, just noise
  const auto lab = pp::dbscan(pts, 0.006, 30);
  CHECK(lab[91] == -1);
  CHECK(lab[0] == 0);
  CHECK(lab[49] == 0);
  CHECK(lab[50] == -1);
  CHECK(lab[51] == 1);
  CHECK(lab[90] == 1);

  // Too few border points for a 50-point RANSAC hypothesis: a clear error.
  std::vector<float> empty(40 * 40 * 3, 0.f);
  CHECK_THROWS_AS(pp::preprocess_cloud(empty.data(), 40, 40, 1, pp::Params{}), cmdr::Error);
}

TEST_CASE("preprocess: DBSCAN labels equal Open3D cluster_dbscan on noisy blobs") {
  st::File f(kFile);
  const Tensor pts_t = f.get("blobs.points");
  const auto want = raw_as<int32_t>(f, "blobs.labels");
  const std::vector<float> v = pts_t.to_vector();
  std::vector<Eigen::Vector3d> pts;
  for (int64_t i = 0; i < pts_t.size(0); ++i)
    pts.emplace_back(v[i * 3], v[i * 3 + 1], v[i * 3 + 2]);
  const auto lab = pp::dbscan(pts, 0.006, 30);
  REQUIRE(lab.size() == want.size());
  int64_t same = 0, clusters = 0, noise = 0;
  for (std::size_t i = 0; i < lab.size(); ++i) {
    same += lab[i] == want[i];
    clusters = std::max<int64_t>(clusters, lab[i] + 1);
    noise += lab[i] == -1;
  }
  std::printf("preprocess blobs: DBSCAN label agreement %lld / %zu (%lld clusters, %lld noise)\n",
              static_cast<long long>(same), lab.size(), static_cast<long long>(clusters),
              static_cast<long long>(noise));
  CHECK(clusters == 7);
  CHECK(noise > 100);
  CHECK(same == static_cast<int64_t>(lab.size()));  // numbering and border points included
}

namespace {
std::string slurp(const std::string& path) {
  std::ifstream is(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(is), {});
}
}  // namespace

TEST_CASE("preprocess: dataset root is mirrored into a new root, input untouched") {
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / ("cmdr_pp_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  const fs::path in = tmp / "in", out = tmp / "out";
  fs::create_directories(in / "cls/train/good/xyz");
  fs::create_directories(in / "cls/train/good/rgb");
  fs::create_directories(in / "cls/test/crack/gt");
  st::File f(kFile);
  const Tensor xyz = f.get("a.xyz");
  io::write_xyz_tiff((in / "cls/train/good/xyz/000.tiff").string(), xyz);
  io::Image8 rgb(120, 90, 3, 77);
  io::write_png((in / "cls/train/good/rgb/000.png").string(), rgb);
  io::write_png((in / "cls/test/crack/gt/000.png").string(), io::Image8(120, 90, 1, 255));
  const std::string tiff_before = slurp((in / "cls/train/good/xyz/000.tiff").string());

  const auto s = pp::preprocess_root(in.string(), out.string(), false, 9);
  CHECK(s.clouds == 1);
  CHECK(s.copied == 2);
  CHECK(s.failed == 0);
  CHECK(slurp((in / "cls/train/good/xyz/000.tiff").string()) == tiff_before);
  CHECK(slurp((out / "cls/train/good/rgb/000.png").string()) ==
        slurp((in / "cls/train/good/rgb/000.png").string()));
  CHECK(fs::exists(out / "cls/test/crack/gt/000.png"));
  const Tensor res = io::read_xyz_tiff((out / "cls/train/good/xyz/000.tiff").string());
  CHECK(res.shape() == Shape{200, 200, 3});
  int64_t kept = 0;
  const auto v = res.to_vector();
  for (int64_t i = 0; i < 200 * 200; ++i) kept += nonzero(&v[i * 3]);
  CHECK(kept == s.kept);
  CHECK(kept > 1000);
  const std::string first = slurp((out / "cls/train/good/xyz/000.tiff").string());

  // Refusals: output = input, output inside input, non-empty output without --force.
  CHECK_THROWS_AS(pp::preprocess_root(in.string(), in.string(), true, 9), cmdr::Error);
  CHECK_THROWS_AS(pp::preprocess_root(in.string(), (in / "cls/new").string(), true, 9),
                  cmdr::Error);
  CHECK_THROWS_AS(pp::preprocess_root(in.string(), out.string(), false, 9), cmdr::Error);
  CHECK_THROWS_AS(pp::preprocess_root((tmp / "missing").string(), out.string(), true, 9),
                  cmdr::Error);
  // --force rewrites; same seed -> identical bytes.
  pp::preprocess_root(in.string(), out.string(), true, 9);
  CHECK(slurp((out / "cls/train/good/xyz/000.tiff").string()) == first);
  // A corrupt cloud is skipped and counted, the rest still written.
  { std::ofstream((in / "cls/train/good/xyz/001.tiff").string()) << "not a tiff"; }
  const auto s2 = pp::preprocess_root(in.string(), (tmp / "out2").string(), false, 9);
  CHECK(s2.failed == 1);
  CHECK(s2.clouds == 1);
  fs::remove_all(tmp);
}
