// 3D-only experiment on unorganised point clouds (issue 5 item 6): grid layout and resize,
// label / per-point mapping, the score formula on hand-made maps, the chunk readers (valid
// and malformed files written here), and a tiny end-to-end train + evaluate on a synthetic
// bumpy surface with a dent.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/pointcloud.hpp"
#include "io/safetensors.hpp"
#include "models/points3d.hpp"

using namespace cmdr;
using namespace cmdr::models;
namespace fs = std::filesystem;

namespace {

std::string tmp_dir(const std::string& name) {
  const std::string d = "/tmp/cmdr_points3d_test_" + std::to_string(::getpid()) + "_" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A raw NPY v1.0 file with the given header dict text and data bytes.
std::vector<uint8_t> npy_bytes(const std::string& dict, const std::vector<uint8_t>& data) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  std::string b("\x93NUMPY\x01\x00", 8);
  b += static_cast<char>(h.size() & 0xff);
  b += static_cast<char>(h.size() >> 8);
  b += h;
  b.append(reinterpret_cast<const char*>(data.data()), data.size());
  return std::vector<uint8_t>(b.begin(), b.end());
}

template <class T>
std::vector<uint8_t> raw(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace

TEST_CASE("points grid: side, layout in file order, zero padding") {
  CHECK(grid_side(1) == 1);
  CHECK(grid_side(2) == 2);
  CHECK(grid_side(4) == 2);
  CHECK(grid_side(5) == 3);
  CHECK(grid_side(9216) == 96);
  CHECK(grid_side(9217) == 97);
  CHECK(grid_side(int64_t{1} << 40) == (int64_t{1} << 20));
  CHECK(grid_side((int64_t{1} << 40) + 1) == (int64_t{1} << 20) + 1);
  CHECK_THROWS_AS(grid_side(0), Error);

  Tensor pts = Tensor::empty({5, 3});
  for (int64_t i = 0; i < 15; ++i) pts.data()[i] = static_cast<float>(i + 1);
  const Tensor g = points_to_grid(pts);
  REQUIRE(g.shape() == Shape({3, 3, 3}));
  for (int64_t i = 0; i < 9; ++i)
    for (int64_t k = 0; k < 3; ++k) {
      const float want = i < 5 ? static_cast<float>(3 * i + k + 1) : 0.0f;
      CHECK(g.data()[k * 9 + (i / 3) * 3 + i % 3] == want);
    }
  const Tensor lg = labels_to_grid({0, 1, 0, 0, 1});
  REQUIRE(lg.shape() == Shape({3, 3}));
  const float lw[9] = {0, 1, 0, 0, 1, 0, 0, 0, 0};
  for (int i = 0; i < 9; ++i) CHECK(lg.data()[i] == lw[i]);
}

TEST_CASE("points grid: nearest resize is exact (identity at 96, 2x blocks, downsampling)") {
  Rng rng(3);
  Tensor pts = Tensor::empty({9216, 3});
  rng.fill_uniform(pts, 0.5f, 1.5f);
  const Tensor g = points_to_grid(pts);
  const Tensor r = resize_grid(g, 96);
  REQUIRE(r.shape() == Shape({3, 96, 96}));
  CHECK(std::memcmp(r.data(), g.data(), sizeof(float) * 3 * 96 * 96) == 0);

  // 3×3 -> 6×6: PyTorch nearest, src = floor(dst · 0.5).
  Tensor small = Tensor::empty({1, 3, 3});
  for (int i = 0; i < 9; ++i) small.data()[i] = static_cast<float>(i);
  const Tensor up = resize_grid(small, 6);
  for (int y = 0; y < 6; ++y)
    for (int x = 0; x < 6; ++x) CHECK(up.data()[y * 6 + x] == small.data()[(y / 2) * 3 + x / 2]);
  // 4×4 -> 2×2: src = floor(dst · 2) = 0, 2.
  Tensor s4 = Tensor::empty({1, 4, 4});
  for (int i = 0; i < 16; ++i) s4.data()[i] = static_cast<float>(i);
  const Tensor dn = resize_grid(s4, 2);
  CHECK(dn.data()[0] == 0.0f);
  CHECK(dn.data()[1] == 2.0f);
  CHECK(dn.data()[2] == 8.0f);
  CHECK(dn.data()[3] == 10.0f);
}

TEST_CASE("points: per-point pixels invert the grid + resize; labels map consistently") {
  // Upsampling 3×3 -> 6×6: point 4 (cell 1,1) owns pixels (2..3, 2..3).
  PointPixels pp = point_pixels(9, 6);
  REQUIRE(pp.offset.size() == 10);
  std::vector<int64_t> p4(pp.pixel.begin() + pp.offset[4], pp.pixel.begin() + pp.offset[5]);
  CHECK(p4 == std::vector<int64_t>{14, 15, 20, 21});
  // Points 7 and 8 are in the last row (cells (2,1), (2,2)).
  CHECK(pp.pixel[pp.offset[8]] == 4 * 6 + 4);
  // Identity case: each point owns exactly its own pixel.
  PointPixels id = point_pixels(9216, 96);
  for (int64_t i = 0; i < 9216; i += 997) {
    CHECK(id.offset[i + 1] - id.offset[i] == 1);
    CHECK(id.pixel[id.offset[i]] == i);
  }
  // Downsampling 4×4 -> 2×2 keeps cells 0 and 2; cells 1 and 3 use the nearest pixel
  // floor((r + 0.5)·2/4) = 0 and 1.
  PointPixels dn = point_pixels(16, 2);
  for (int64_t i = 0; i < 16; ++i) CHECK(dn.offset[i + 1] - dn.offset[i] == 1);
  CHECK(dn.pixel[dn.offset[5]] == 0);   // cell (1,1)
  CHECK(dn.pixel[dn.offset[15]] == 3);  // cell (3,3)
  CHECK(dn.pixel[dn.offset[10]] == 3);  // cell (2,2) is copied to pixel (1,1)

  // A 5-point chunk (G = 3) upsampled to 8×8: every pixel a labelled point owns is 1 in the
  // resized label grid, every pixel an unlabelled point owns is 0, padding cells are 0.
  const std::vector<uint8_t> lab = {0, 1, 1, 0, 1};
  const Tensor lg = resize_grid(labels_to_grid(lab).reshape({1, 3, 3}), 8);
  PointPixels p5 = point_pixels(5, 8);
  std::vector<int> owned(64, 0);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t k = p5.offset[i]; k < p5.offset[i + 1]; ++k) {
      CHECK(lg.data()[p5.pixel[k]] == static_cast<float>(lab[i]));
      owned[p5.pixel[k]]++;
    }
  int total = 0;
  for (int v : owned) {
    CHECK(v <= 1);
    total += v;
  }
  // src rows/cols for 3 -> 8: 0,0,0,1,1,1,2,2. Points 0-2 own grid row 0 (3 rows × 8 cols),
  // points 3-4 own rows 3..5 × cols 0..5.
  CHECK(total == 24 + 18);
  // Per-point scores average the owned pixels.
  Tensor m = Tensor::zeros({6, 6});
  m.data()[14] = 1.0f;
  m.data()[21] = 3.0f;
  const std::vector<float> s = point_scores(m, pp);
  CHECK(s[4] == doctest::Approx(1.0));
  CHECK(s[0] == 0.0f);
}

TEST_CASE("points score: box_5 once, max / sqrt(mean of non-zero)") {
  Tensor d = Tensor::zeros({8, 8});
  d.data()[3 * 8 + 3] = 50.0f;  // -> 2 on rows 1..5 × cols 1..5
  d.data()[0] = 25.0f;          // -> 1 on rows 0..2 × cols 0..2 (zero padding)
  const PointsMaps r = points_maps(d);
  // By hand: overlap rows 1..2 × cols 1..2 holds 3; mass 2·25 + 9 = 59 on 25 + 9 − 4 = 30
  // non-zero cells; max 3.
  const double mnz = 59.0 / 30.0;
  CHECK(r.map.data()[1 * 8 + 1] == doctest::Approx(3.0).epsilon(1e-6));
  CHECK(r.map.data()[5 * 8 + 5] == doctest::Approx(2.0).epsilon(1e-6));
  CHECK(r.map.data()[6 * 8 + 6] == 0.0f);
  CHECK(r.image_score == doctest::Approx(3.0 / std::sqrt(mnz)).epsilon(1e-6));
  CHECK(r.pixel_map.data()[5 * 8 + 5] == doctest::Approx(2.0 / std::sqrt(mnz)).epsilon(1e-6));
  CHECK(r.aupro_map.data()[0] == doctest::Approx(1.0 / mnz).epsilon(1e-6));
  float mx = 0;
  for (int i = 0; i < 64; ++i) mx = std::max(mx, r.pixel_map.data()[i]);
  CHECK(mx == r.image_score);

  const PointsMaps z = points_maps(Tensor::zeros({8, 8}));
  CHECK(z.image_score == 0.0f);
  for (int i = 0; i < 64; ++i) CHECK(z.pixel_map.data()[i] == 0.0f);
}

TEST_CASE("points io: npy readers accept float32/float64 (N,3) and reject the rest") {
  const std::string d = tmp_dir("npy");
  const std::vector<float> p = {1, 2, 3, 4, 5, 6};
  io::write_npy_f32(d + "/a.npy", {2, 3}, p.data());
  io::PointChunk a = io::read_point_chunk(d + "/a.npy");
  REQUIRE(a.xyz.shape() == Shape({2, 3}));
  for (int i = 0; i < 6; ++i) CHECK(a.xyz.data()[i] == p[i]);
  CHECK(a.labels.empty());

  const std::vector<double> pd = {0.5, -1.25, 3, 7, 8, 9};
  write_bytes(d + "/b.npy",
              npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", raw(pd)));
  io::PointChunk b = io::read_point_chunk(d + "/b.npy");
  CHECK(b.xyz.data()[1] == -1.25f);

  auto bad = [&](const std::string& name, const std::vector<uint8_t>& bytes,
                 const std::string& msg) {
    write_bytes(d + "/" + name, bytes);
    CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/" + name), doctest::Contains(msg.c_str()),
                         Error);
    CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/" + name), doctest::Contains(name.c_str()),
                         Error);
  };
  bad("shape4.npy",
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }",
                raw(std::vector<float>{1, 2, 3, 4})),
      "shape (1, 4), expected (N, 3)");
  bad("be.npy", npy_bytes("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", raw(p)),
      "dtype '>f4'");
  bad("int.npy",
      npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }",
                raw(std::vector<int32_t>(6, 1))),
      "dtype '<i4'");
  bad("fortran.npy",
      npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", raw(p)), "Fortran");
  bad("short.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }", raw(p)),
      "data is 24 bytes");
  bad("extra.npy",
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", raw(p)),
      "unexpected or duplicate key 'x'");
  bad("magic.npy", {'P', 'K', 3, 4, 0, 0, 0, 0, 0, 0, 0}, "not an NPY file");
  bad("empty.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", {}),
      "has no points");
  std::vector<float> pn = p;
  pn[4] = std::nanf("");
  bad("nan.npy", npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", raw(pn)),
      "non-finite");

  // Sidecar labels: .labels.npy (bool) and .labels.txt; wrong counts / values rejected.
  write_bytes(d + "/a.labels.npy",
              npy_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", {0, 1}));
  a = io::read_point_chunk(d + "/a.npy");
  CHECK(a.labels == std::vector<uint8_t>{0, 1});
  CHECK(a.label_source == d + "/a.labels.npy");
  write_text(d + "/b.labels.txt", "1\n0\n1\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/b.npy"), doctest::Contains("has 3 labels"),
                       Error);
  write_text(d + "/b.labels.txt", "1\n2\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/b.npy"), doctest::Contains("expected 0 or 1"),
                       Error);
  write_text(d + "/b.labels.txt", "1\n0\n");
  CHECK(io::read_point_chunk(d + "/b.npy").labels == std::vector<uint8_t>{1, 0});
  CHECK(io::is_chunk_file(d + "/b.npy"));
  CHECK_FALSE(io::is_chunk_file(d + "/a.labels.npy"));
  CHECK_FALSE(io::is_chunk_file(d + "/b.labels.txt"));
  fs::remove_all(d);
}

TEST_CASE("points io: xyz and ply readers (ascii, binary little-endian, labels, errors)") {
  const std::string d = tmp_dir("txt");
  write_text(d + "/a.xyz", "# comment\n1 2 3 0\n\n4,5,6,1\n7 8 9 0\n");
  io::PointChunk a = io::read_point_chunk(d + "/a.xyz");
  REQUIRE(a.xyz.shape() == Shape({3, 3}));
  CHECK(a.xyz.data()[4] == 5.0f);
  CHECK(a.labels == std::vector<uint8_t>{0, 1, 0});
  CHECK(a.label_source == "in-file");
  write_text(d + "/b.xyz", "1 2 3\n4 5 6 1\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/b.xyz"), doctest::Contains("line 2: 4 columns"),
                       Error);
  write_text(d + "/c.xyz", "1 2 x\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/c.xyz"), doctest::Contains("'x' is not a number"),
                       Error);
  write_text(d + "/e.xyz", "1 2 3 0.5\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/e.xyz"), doctest::Contains("expected 0 or 1"),
                       Error);
  write_text(d + "/a.labels.txt", "0\n0\n0\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/a.xyz"), doctest::Contains("ambiguous"), Error);

  write_text(d + "/p.ply",
             "ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 2\n"
             "property float x\nproperty float y\nproperty float z\nproperty uchar label\n"
             "element face 0\nproperty list uchar int vertex_indices\nend_header\n"
             "1 2 3 1\n4 5 6 0\n");
  io::PointChunk p = io::read_point_chunk(d + "/p.ply");
  REQUIRE(p.xyz.shape() == Shape({2, 3}));
  CHECK(p.xyz.data()[5] == 6.0f);
  CHECK(p.labels == std::vector<uint8_t>{1, 0});

  // binary_little_endian: double x, float y, float z, int scalar_label.
  std::string hdr =
      "ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty double x\n"
      "property float y\nproperty float z\nproperty int scalar_label\nend_header\n";
  std::vector<uint8_t> bin(hdr.begin(), hdr.end());
  for (int i = 0; i < 2; ++i) {
    const double x = 0.5 + i;
    const float y = 2.0f + static_cast<float>(i), z = -3.0f;
    const int32_t l = i;
    const auto put = [&](const void* v, std::size_t n) {
      const auto* c = static_cast<const uint8_t*>(v);
      bin.insert(bin.end(), c, c + n);
    };
    put(&x, 8);
    put(&y, 4);
    put(&z, 4);
    put(&l, 4);
  }
  write_bytes(d + "/q.ply", bin);
  io::PointChunk q = io::read_point_chunk(d + "/q.ply");
  CHECK(q.xyz.data()[3] == 1.5f);
  CHECK(q.xyz.data()[4] == 3.0f);
  CHECK(q.labels == std::vector<uint8_t>{0, 1});
  bin.resize(bin.size() - 3);
  write_bytes(d + "/r.ply", bin);
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/r.ply"), doctest::Contains("need 40"), Error);
  write_text(d + "/s.ply",
             "ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\n"
             "property float y\nproperty float z\nend_header\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/s.ply"),
                       doctest::Contains("'binary_big_endian' is not supported"), Error);
  write_text(d + "/t.ply",
             "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
             "end_header\n1 2\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/t.ply"), doctest::Contains("lacks one of"),
                       Error);
  write_text(d + "/u.ply",
             "ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
             "property float z\nend_header\n1 2 3\n");
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/u.ply"), doctest::Contains("has 1 vertex lines"),
                       Error);
  CHECK_THROWS_WITH_AS(io::read_point_chunk(d + "/missing.xyz"), doctest::Contains("missing.xyz"),
                       Error);
  fs::remove_all(d);
}

TEST_CASE("points io: dataset layout") {
  const std::string d = tmp_dir("layout");
  CHECK_THROWS_WITH_AS(io::list_point_dataset(d, true, false), doctest::Contains("no 'train/'"),
                       Error);
  fs::create_directories(d + "/train");
  fs::create_directories(d + "/test/good");
  fs::create_directories(d + "/test/dent");
  const std::vector<float> p = {1, 2, 3};
  for (const char* f :
       {"/train/b.npy", "/train/a.npy", "/test/good/g.npy", "/test/dent/x.npy", "/test/y.npy"})
    io::write_npy_f32(d + f, {1, 3}, p.data());
  write_text(d + "/test/dent/x.labels.txt", "1\n");
  write_text(d + "/train/notes.txt", "ignored\n");
  const io::PointDataset ds = io::list_point_dataset(d, true, true);
  REQUIRE(ds.train.size() == 2);
  CHECK(ds.train[0].path == d + "/train/a.npy");
  CHECK(ds.validation.empty());
  REQUIRE(ds.test.size() == 3);
  CHECK(ds.test[0].path == d + "/test/dent/x.npy");
  CHECK_FALSE(ds.test[0].known_good);
  CHECK(ds.test[1].path == d + "/test/good/g.npy");
  CHECK(ds.test[1].known_good);
  CHECK(ds.test[2].path == d + "/test/y.npy");
  fs::remove_all(d);
}

namespace {

// A bumpy surface patch, points in random (unorganised) order, all coordinates non-zero;
// with `dent`, points within 0.35 of a random centre are pushed down and labelled 1.
io::PointChunk synth_chunk(int64_t n, uint64_t seed, bool dent) {
  Rng rng(seed);
  io::PointChunk c;
  c.xyz = Tensor::empty({n, 3});
  c.labels.assign(static_cast<std::size_t>(n), 0);
  const float cx = rng.uniform(-0.4f, 0.4f), cy = rng.uniform(-0.4f, 0.4f);
  for (int64_t i = 0; i < n; ++i) {
    const float x = rng.uniform(-1.0f, 1.0f), y = rng.uniform(-1.0f, 1.0f);
    float z =
        0.08f * std::sin(3.0f * x) * std::cos(2.0f * y) + 0.004f * static_cast<float>(rng.normal());
    const float r2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
    if (dent && r2 < 0.35f * 0.35f) {
      z -= 0.25f * (1.0f - r2 / (0.35f * 0.35f));
      c.labels[i] = 1;
    }
    c.xyz.data()[3 * i] = x + 3.0f;
    c.xyz.data()[3 * i + 1] = y + 3.0f;
    c.xyz.data()[3 * i + 2] = z + 1.0f;
  }
  return c;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("points end to end: tiny Point-MAE + Decoder3D on a synthetic dented surface") {
  const std::string d = tmp_dir("e2e");
  fs::create_directories(d + "/train");
  fs::create_directories(d + "/test/good");
  fs::create_directories(d + "/test/dent");
  const int64_t n = 250;  // G = 16 with 6 padding cells; S = 16
  for (int i = 0; i < 6; ++i) {
    const io::PointChunk c = synth_chunk(n, 100 + i, false);
    io::write_npy_f32(d + "/train/c" + std::to_string(i) + ".npy", {n, 3}, c.xyz.data());
  }
  for (int i = 0; i < 3; ++i) {
    const io::PointChunk g = synth_chunk(n, 200 + i, false);
    io::write_npy_f32(d + "/test/good/g" + std::to_string(i) + ".npy", {n, 3}, g.xyz.data());
    const io::PointChunk a = synth_chunk(n, 300 + i, true);
    // The anomalous chunks as .xyz with the label column.
    std::ofstream f(d + "/test/dent/a" + std::to_string(i) + ".xyz");
    for (int64_t k = 0; k < n; ++k)
      f << a.xyz.data()[3 * k] << " " << a.xyz.data()[3 * k + 1] << " " << a.xyz.data()[3 * k + 2]
        << " " << int(a.labels[k]) << "\n";
  }

  PointsTrainOptions to;
  to.points_dir = d;
  to.out = d + "/ck.safetensors";
  to.side = 16;
  to.pmae.num_group = 16;
  to.pmae.group_size = 16;
  to.pmae.enc_c1 = 16;
  to.pmae.enc_c2 = 32;
  to.pmae.enc_c3 = 64;
  to.pmae.pos_hidden = 16;
  to.pmae.dim = 32;
  to.pmae.depth = 3;
  to.pmae.heads = 2;
  to.pmae.mlp = 64;
  to.pmae.taps = {0, 1, 2};
  to.dec3d.widths = {48, 32, 24, 16};
  to.dec3d.att_hidden = 12;
  to.epochs = 3;
  to.seed = 7;
  to.quiet = true;
  REQUIRE(run_points_train(to) == 0);
  const std::vector<uint8_t> ck1 = file_bytes(to.out);
  REQUIRE(!ck1.empty());
  // Determinism: the same run writes the same checkpoint bytes.
  to.out = d + "/ck2.safetensors";
  REQUIRE(run_points_train(to) == 0);
  CHECK(file_bytes(to.out) == ck1);

  PointsEvalOptions eo;
  eo.points_dir = d;
  eo.checkpoint = d + "/ck.safetensors";
  eo.json = d + "/m.json";
  eo.quiet = true;
  eo.print = false;
  PointsEvalResult r1, r2;
  REQUIRE(run_points_evaluate(eo, &r1) == 0);
  REQUIRE(run_points_evaluate(eo, &r2) == 0);
  REQUIRE(r1.image_scores.size() == 6);
  CHECK(r1.image_labels == std::vector<uint8_t>{1, 1, 1, 0, 0, 0});  // dent/ sorts before good/
  CHECK(r1.image_scores == r2.image_scores);
  CHECK(r1.points == 6 * n);
  CHECK(r1.anomalous_points > 0);
  for (float s : r1.image_scores) CHECK(std::isfinite(s));
  CHECK(std::isfinite(r1.i_auroc));
  CHECK(std::isfinite(r1.p_auroc));
  for (double a : r1.aupro) CHECK(std::isfinite(a));
  CHECK(r1.threshold > 0.0f);
  CHECK(fs::file_size(eo.json) > 0);
  MESSAGE("tiny e2e: I-AUROC ", r1.i_auroc, " P-AUROC ", r1.p_auroc, " AUPRO@0.3 ", r1.aupro[0]);

  // Point-MAE weights other than the checkpoint's are refused unless overridden (loudly).
  {
    PointMae other(to.pmae);
    init_point_mae_random(other, 99);
    st::Writer w;
    for (const ParamSpec& s : other.param_specs()) w.add(s.name, *s.target);
    w.write(d + "/other.safetensors");
  }
  eo.xyz_weights = d + "/other.safetensors";
  eo.json.clear();
  CHECK_THROWS_WITH_AS(run_points_evaluate(eo), doctest::Contains("are not the ones"), Error);
  eo.ignore_hash = true;
  PointsEvalResult r3;
  REQUIRE(run_points_evaluate(eo, &r3) == 0);
  CHECK(r3.image_scores.size() == 6);
  eo.xyz_weights = d + "/nope.safetensors";
  CHECK_THROWS_WITH_AS(run_points_evaluate(eo), doctest::Contains("nope.safetensors"), Error);
  // Too few valid points for the groups (a point with a zero coordinate is invalid, SPEC
  // 4.2; upsampling duplicates points, so only invalid points can make a chunk too small):
  // a clear error naming the chunk.
  fs::create_directories(d + "/tiny/train");
  io::PointChunk t = synth_chunk(n, 1, false);
  for (int64_t k = 0; k < n; ++k)
    if (k % 25 != 0) t.xyz.data()[3 * k + 2] = 0.0f;
  io::write_npy_f32(d + "/tiny/train/t.npy", {n, 3}, t.xyz.data());
  to.points_dir = d + "/tiny";
  CHECK_THROWS_WITH_AS(run_points_train(to), doctest::Contains("t.npy' has 10 valid points"),
                       Error);
  fs::remove_all(d);
}
