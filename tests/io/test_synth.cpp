#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>

#include "engine/error.hpp"
#include "engine/threads.hpp"
#include "io/image.hpp"
#include "io/mvtec.hpp"
#include "io/synth.hpp"
#include "tests/io/tmpdir.hpp"

using namespace cmdr;
namespace fs = std::filesystem;

namespace {
io::SynthOptions small_opts(uint64_t seed) {
  io::SynthOptions o;
  o.classes = 2;
  o.size = 64;
  o.train = 3;
  o.validation = 1;
  o.test_good = 2;
  o.test_defect = 7;  // 6 types: bump gets 2
  o.seed = seed;
  return o;
}
// Mean |a − b| over pixels inside / outside a mask (per value).
struct Diff {
  double in = 0, out = 0;
};
Diff rgb_diff(const io::Image8& a, const io::Image8& b, const io::Image8& mask) {
  double si = 0, so = 0;
  int64_t ni = 0, no = 0;
  for (int64_t i = 0; i < a.width * a.height; ++i)
    for (int c = 0; c < 3; ++c) {
      const double d = std::abs(int(a.data[size_t(i * 3 + c)]) - int(b.data[size_t(i * 3 + c)]));
      if (mask.data[size_t(i)])
        si += d, ++ni;
      else
        so += d, ++no;
    }
  return {ni ? si / double(ni) : 0, no ? so / double(no) : 0};
}
Diff z_diff(const Tensor& a, const Tensor& b, const io::Image8& mask) {
  double si = 0, so = 0;
  int64_t ni = 0, no = 0;
  for (int64_t i = 0; i < a.size(0) * a.size(1); ++i) {
    const float za = a.data()[i * 3 + 2], zb = b.data()[i * 3 + 2];
    if (za == 0 || zb == 0) continue;  // dropouts
    const double d = std::abs(double(za) - zb);
    if (mask.data[size_t(i)])
      si += d, ++ni;
    else
      so += d, ++no;
  }
  return {ni ? si / double(ni) : 0, no ? so / double(no) : 0};
}
int64_t mask_count(const io::Image8& m) {
  int64_t n = 0, other = 0;
  for (uint8_t v : m.data) {
    other += v != 0 && v != 255;
    n += v == 255;
  }
  CHECK(other == 0);  // gt PNGs are 0/255
  return n;
}
}  // namespace

TEST_CASE("synth: output loads through io/mvtec with the right counts and labels") {
  testing::TempDir d;
  const std::string root = d.file("ds");
  const io::SynthSummary s = io::synth_dataset(root, small_opts(5));
  REQUIRE(s.classes.size() == 2);
  CHECK(io::list_classes(root) == std::vector<std::string>{"box", "ellipsoid"});
  for (const std::string& cls : s.classes) {
    io::ScanOptions so;
    so.full_decode = true;
    const io::ClassSplit cs = io::scan_class(root, cls, so);
    CHECK(cs.skipped.empty());
    CHECK(cs.train.size() == 3);
    CHECK(cs.validation.size() == 1);
    REQUIRE(cs.test.size() == 9);
    CHECK(io::list_defects(root, cls) ==
          std::vector<std::string>{"bump", "crack", "cut", "dent", "good", "hole", "stain"});
    int good = 0, bad = 0;
    for (const io::Sample& t : cs.test) {
      CHECK(t.label == (t.defect == "good" ? 0 : 1));
      good += t.label == 0;
      bad += t.label == 1;
      REQUIRE(!t.gt.empty());
      const int64_t n = mask_count(io::read_gray_png(t.gt));
      if (t.label)
        CHECK_MESSAGE(n > 20, t.gt);  // a visible defect
      else
        CHECK(n == 0);
    }
    CHECK(good == 2);
    CHECK(bad == 7);
    CHECK(cs.train[2].name == "002");
    const io::LoadedSample ls = io::load_sample(cs.test.back(), 32);
    CHECK(ls.rgb.shape() == Shape{3, 32, 32});
    CHECK(ls.xyz.shape() == Shape{3, 32, 32});
    CHECK(ls.gt.shape() == Shape{32, 32});
  }
}

TEST_CASE("synth: deterministic bytes for a seed; refuses a non-empty folder without force") {
  testing::TempDir d;
  const std::string a = d.file("a"), b = d.file("b"), c = d.file("c");
  const int threads = num_threads();
  set_num_threads(1);
  io::synth_dataset(a, small_opts(11));
  set_num_threads(2);  // samples are generated in parallel: the bytes must not change
  io::synth_dataset(b, small_opts(11));
  set_num_threads(threads);
  io::synth_dataset(c, small_opts(12));
  int64_t files = 0, differ_c = 0;
  for (const auto& e : fs::recursive_directory_iterator(a)) {
    if (!e.is_regular_file()) continue;
    const fs::path rel = fs::relative(e.path(), a);
    REQUIRE(fs::exists(fs::path(b) / rel));
    CHECK_MESSAGE(testing::slurp(e.path().string()) == testing::slurp((fs::path(b) / rel).string()),
                  rel.string());
    differ_c += testing::slurp(e.path().string()) != testing::slurp((fs::path(c) / rel).string());
    ++files;
  }
  CHECK(files == 2 * (3 * 2 + 1 * 2 + 9 * 3));
  CHECK(differ_c > files / 2);  // another seed gives other data (gt of good stays zero)

  std::string msg;
  try {
    io::synth_dataset(a, small_opts(11));
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("not empty") != std::string::npos);
  io::SynthOptions f = small_opts(11);
  f.force = true;
  f.train = 2;
  io::synth_dataset(a, f);  // replaces the classes: no stale train/002
  CHECK(io::scan_class(a, "box").train.size() == 2);
}

TEST_CASE("synth: defects show in the right modality, inside their mask") {
  const uint64_t seed = 99;
  for (int cls = 0; cls < 4; ++cls) {
    const io::SynthSample good = io::synth_sample(cls, "good", seed, 128);
    CHECK(mask_count(good.gt) == 0);
    for (const std::string& type : io::synth_defect_types()) {
      const io::SynthSample s = io::synth_sample(cls, type, seed, 128);
      CAPTURE(cls);
      CAPTURE(type);
      REQUIRE(mask_count(s.gt) > 50);
      const Diff dr = rgb_diff(s.rgb, good.rgb, s.gt);
      const Diff dz = z_diff(s.xyz, good.xyz, s.gt);
      MESSAGE(io::synth_class_name(cls), "/", type, ": mask ", mask_count(s.gt),
              " px, rgb diff in ", dr.in, " out ", dr.out, ", |dz| in ", dz.in * 1000, " mm out ",
              dz.out * 1000, " mm");
      const bool geometric = type != "stain", appearance = type != "dent" && type != "hole";
      if (geometric)
        CHECK(dz.in > 0.0015);  // ≥ 1.5 mm on average inside the mask
      else
        CHECK(dz.in == 0.0);
      if (appearance)
        CHECK(dr.in > 25.0);  // clearly visible colour change
      else
        CHECK(dr.in == 0.0);
      CHECK(dr.out < 2.0);
      CHECK(dz.out < 0.0005);
    }
  }
}

TEST_CASE("synth: a class of 10 train + 10 test at 256x256 is fast") {
  testing::TempDir d;
  io::SynthOptions o;
  o.classes = 1;
  o.size = 256;
  o.train = 10;
  o.validation = 0;
  o.test_good = 4;
  o.test_defect = 6;
  o.seed = 1;
  const auto t0 = std::chrono::steady_clock::now();
  io::synth_dataset(d.file("fast"), o);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("synth 1 class, 20 samples at 256x256: ", sec, " s");
  CHECK(sec < 10.0);  // generous: the test machine is shared; measured figure in the report
}

TEST_CASE("synth: bad options are rejected") {
  testing::TempDir d;
  io::SynthOptions o;
  o.size = 8;
  CHECK_THROWS_AS(io::synth_dataset(d.file("x"), o), Error);
  o = io::SynthOptions{};
  o.classes = 0;
  CHECK_THROWS_AS(io::synth_dataset(d.file("y"), o), Error);
  CHECK_THROWS_AS(io::synth_sample(0, "scratch", 1, 64), Error);
  testing::spit(d.file("file"), {'x'});
  CHECK_THROWS_AS(io::synth_dataset(d.file("file"), io::SynthOptions{}), Error);
}

TEST_CASE("synth: non-square images (exercise the square padding) load through io/mvtec") {
  testing::TempDir d;
  io::SynthOptions o = small_opts(8);
  o.classes = 1;
  o.size = 90;  // width
  o.height = 40;
  io::synth_dataset(d.file("wide"), o);
  const io::ClassSplit cs = io::scan_class(d.file("wide"), "ellipsoid");
  CHECK(cs.skipped.empty());
  REQUIRE(cs.test.size() == 9);
  const io::Image8 rgb = io::read_rgb_png(cs.test[0].rgb);
  CHECK(rgb.width == 90);
  CHECK(rgb.height == 40);
  const Tensor xyz = io::load_xyz(cs.test[0]);
  CHECK(xyz.shape() == Shape{40, 90, 3});
  CHECK(mask_count(io::read_gray_png(cs.test[0].gt)) > 10);  // the defect is in view
  const io::LoadedSample ls = io::load_sample(cs.test[0], 32);
  CHECK(ls.gt.shape() == Shape{32, 32});
}
