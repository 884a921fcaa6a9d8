#include <doctest/doctest.h>
#include <tiffio.h>

#include <filesystem>
#include <string>

#include "engine/error.hpp"
#include "io/image.hpp"
#include "io/mvtec.hpp"
#include "io/synth.hpp"
#include "io/tiff.hpp"
#include "tests/io/tmpdir.hpp"

using namespace cmdr;
namespace fs = std::filesystem;

namespace {
// A small valid dataset made by io/synth: classes ellipsoid, box; per class 4 train,
// 1 validation, 2 test/good, 6 defective (one per type).
std::string make_root(const testing::TempDir& d) {
  io::SynthOptions o;
  o.classes = 2;
  o.size = 32;
  o.train = 4;
  o.validation = 1;
  o.test_good = 2;
  o.test_defect = 6;
  o.seed = 3;
  const std::string root = d.file("mvtec");
  io::synth_dataset(root, o);
  return root;
}
bool any_contains(const std::vector<std::string>& v, const std::string& a, const std::string& b) {
  for (const auto& s : v)
    if (s.find(a) != std::string::npos && s.find(b) != std::string::npos) return true;
  return false;
}
io::ScanOptions quiet(bool full = false) {
  io::ScanOptions o;
  o.quiet = true;
  o.full_decode = full;
  return o;
}
}  // namespace

TEST_CASE("mvtec: walks classes, splits, defects; pairs by name; labels") {
  testing::TempDir d;
  const std::string root = make_root(d);
  fs::create_directories(fs::path(root) / "not_a_class" / "stuff");
  testing::spit((fs::path(root) / "license.txt").string(), {'x'});
  CHECK(io::list_classes(root) == std::vector<std::string>{"box", "ellipsoid"});
  const io::ClassSplit cs = io::scan_class(root, "ellipsoid", quiet());
  CHECK(cs.skipped.empty());
  REQUIRE(cs.train.size() == 4);
  CHECK(cs.validation.size() == 1);
  REQUIRE(cs.test.size() == 8);
  for (size_t i = 0; i < cs.train.size(); ++i) {
    const io::Sample& s = cs.train[i];
    CHECK(s.name == "00" + std::to_string(i));
    CHECK(s.split == "train");
    CHECK(s.label == 0);
    CHECK(s.gt.empty());
    CHECK(fs::path(s.rgb).filename() == s.name + ".png");
    CHECK(fs::path(s.xyz).filename() == s.name + ".tiff");
  }
  // Sorted defect order, good among them; labels from the folder name.
  std::vector<std::string> order;
  for (const auto& s : cs.test) {
    if (order.empty() || order.back() != s.defect) order.push_back(s.defect);
    CHECK(s.label == (s.defect == "good" ? 0 : 1));
    CHECK(fs::path(s.gt).parent_path().filename() == "gt");
  }
  CHECK(order == std::vector<std::string>{"bump", "crack", "cut", "dent", "good", "hole", "stain"});
  const io::LoadedSample ls = io::load_sample(cs.test[0], 24);
  CHECK(ls.gt.shape() == Shape{24, 24});
  float gsum = 0;
  for (float v : ls.gt.to_vector()) gsum += v;
  CHECK(gsum > 0);  // a bump has a mask
  const io::LoadedSample train = io::load_sample(cs.train[0], 24);
  for (float v : train.gt.to_vector()) REQUIRE(v == 0.0f);  // no gt: zeros
}

TEST_CASE("mvtec: unusable samples are reported and skipped, with a count") {
  testing::TempDir d;
  const std::string root = make_root(d);
  const fs::path c = fs::path(root) / "box";
  // 1. missing partner
  fs::remove(c / "train/good/xyz/001.tiff");
  // 2. wrong channel count in the cloud
  {
    const std::string p = (c / "train/good/xyz/002.tiff").string();
    TIFF* t = TIFFOpen(p.c_str(), "w");
    REQUIRE(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 32);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 32);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 1);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 32);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_MINISBLACK);
    std::vector<float> row(32, 0.0f);
    for (int y = 0; y < 32; ++y) TIFFWriteScanline(t, row.data(), y, 0);
    TIFFClose(t);
  }
  // 3. gt of another size
  io::write_png((c / "test/dent/gt/000.png").string(), io::Image8(31, 32, 1));
  // 4. rgb that is not a PNG
  testing::spit((c / "test/good/rgb/001.png").string(), {'G', 'I', 'F', '8'});
  // 5. truncated rgb: header fine, only found by a full decode
  {
    auto b = testing::slurp((c / "test/stain/rgb/000.png").string());
    b.resize(b.size() / 2);
    testing::spit((c / "test/stain/rgb/000.png").string(), b);
  }
  // 6. a stray file
  testing::spit((c / "train/good/rgb/notes.txt").string(), {'x'});

  const io::ClassSplit cs = io::scan_class(root, "box", quiet());
  CHECK(cs.train.size() == 2);
  CHECK(cs.test.size() == 6);  // 8 − gt size mismatch − not-a-PNG (truncated passes headers)
  CHECK(any_contains(cs.skipped, "001", "missing xyz/001.tiff"));
  CHECK(any_contains(cs.skipped, "002.tiff", "found 1 of 32-bit float"));
  CHECK(any_contains(cs.skipped, "dent/gt/000.png", "size mismatch"));
  CHECK(any_contains(cs.skipped, "good/rgb/001.png", "not a PNG"));
  CHECK(any_contains(cs.skipped, "notes.txt", "unexpected file"));
  CHECK(cs.skipped.size() == 5);

  const io::ClassSplit full = io::scan_class(root, "box", quiet(true));
  CHECK(full.test.size() == 5);
  CHECK(any_contains(full.skipped, "stain/rgb/000.png", "truncated"));
  // Loading the truncated sample directly is an error naming the file.
  bool found = false;
  for (const auto& t : cs.test)
    if (t.defect == "stain" && t.name == "000") {
      found = true;
      CHECK_THROWS_WITH_AS(io::load_sample(t, 16), doctest::Contains("stain/rgb/000.png"), Error);
    }
  CHECK(found);
  // Batch loading skips it with a message and keeps the rest, in order.
  std::vector<io::Sample> kept;
  std::vector<std::string> skipped;
  const auto loaded = io::load_samples(cs.test, 16, &kept, &skipped, true);
  CHECK(loaded.size() == cs.test.size() - 1);
  CHECK(kept.size() == loaded.size());
  REQUIRE(skipped.size() == 1);
  CHECK(skipped[0].find("stain/rgb/000.png") != std::string::npos);
  CHECK(kept.front().rgb == cs.test.front().rgb);
  CHECK(loaded.front().rgb.shape() == Shape{3, 16, 16});
}

TEST_CASE("mvtec: preprocessed roots (xyz padded to a multiple of 100) are accepted") {
  testing::TempDir d;
  const std::string root = make_root(d);
  const fs::path x = fs::path(root) / "box/train/good/xyz/000.tiff";
  io::write_xyz_tiff(x.string(), Tensor::zeros({100, 100, 3}));
  io::ClassSplit cs = io::scan_class(root, "box", quiet(true));
  CHECK(cs.skipped.empty());
  CHECK(io::load_sample(cs.train[0], 16).xyz.shape() == Shape{3, 16, 16});
  io::write_xyz_tiff(x.string(), Tensor::zeros({64, 64, 3}));  // neither size: skipped
  cs = io::scan_class(root, "box", quiet());
  CHECK(any_contains(cs.skipped, "000.tiff", "size mismatch"));
}

TEST_CASE("mvtec: errors for a missing class, a class with nothing usable, a bad root") {
  testing::TempDir d;
  const std::string root = make_root(d);
  CHECK_THROWS_WITH_AS(io::scan_class(root, "carrot", quiet()), doctest::Contains("carrot"), Error);
  CHECK_THROWS_WITH_AS(io::list_classes(d.file("nope")), doctest::Contains("nope"), Error);
  for (const char* sub : {"train/good/xyz", "validation/good/xyz"})
    fs::remove_all(fs::path(root) / "ellipsoid" / sub);
  for (const auto& e : fs::directory_iterator(fs::path(root) / "ellipsoid/test"))
    fs::remove_all(e.path() / "rgb");
  CHECK_THROWS_WITH_AS(io::scan_class(root, "ellipsoid", quiet()),
                       doctest::Contains("no usable sample"), Error);
}
