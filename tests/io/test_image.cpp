#include <doctest/doctest.h>

#include <string>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/image.hpp"
#include "tests/io/tmpdir.hpp"

using namespace cmdr;
using cmdr::io::Image8;

namespace {
Image8 random_image(int64_t w, int64_t h, int64_t c, uint64_t seed) {
  Image8 img(w, h, c);
  Rng r(seed);
  for (auto& v : img.data) v = static_cast<uint8_t>(r.below(256));
  return img;
}
// The error must name the file and contain `what`.
void check_error(const std::string& path, const std::string& what, int want) {
  std::string msg;
  try {
    io::read_png(path, want);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find(what) != std::string::npos);
}
}  // namespace

TEST_CASE("png round trip: RGB and gray, odd sizes") {
  testing::TempDir d;
  for (int c : {1, 3}) {
    Image8 img = random_image(37, 19, c, 7 + c);
    const std::string p = d.file(std::to_string(c) + "img.png");
    io::write_png(p, img);
    Image8 back = io::read_png(p, c);
    CHECK(back.width == 37);
    CHECK(back.height == 19);
    CHECK(back.channels == c);
    CHECK(back.data == img.data);
    io::PngInfo info = io::png_info(p);
    CHECK(info.width == 37);
    CHECK(info.channels == c);
    // Deterministic bytes.
    const std::string p2 = d.file("again.png");
    io::write_png(p2, img);
    CHECK(testing::slurp(p) == testing::slurp(p2));
  }
}

TEST_CASE("png malformed files are rejected naming the file") {
  testing::TempDir d;
  const std::string good = d.file("good.png");
  io::write_png(good, random_image(64, 48, 3, 1));
  std::vector<char> bytes = testing::slurp(good);

  const std::string trunc = d.file("truncated.png");
  testing::spit(trunc, std::vector<char>(bytes.begin(), bytes.begin() + long(bytes.size() / 2)));
  check_error(trunc, "truncated", 3);

  const std::string header_only = d.file("header_only.png");
  testing::spit(header_only, std::vector<char>(bytes.begin(), bytes.begin() + 20));
  check_error(header_only, "header", 3);

  const std::string notpng = d.file("not_a_png.png");
  testing::spit(notpng, std::vector<char>{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  check_error(notpng, "not a PNG", 3);

  const std::string empty = d.file("empty.png");
  testing::spit(empty, {});
  check_error(empty, "empty", 3);

  check_error(d.file("missing.png"), "cannot open", 3);

  const std::string gray = d.file("gray.png");
  io::write_png(gray, random_image(8, 8, 1, 2));
  check_error(gray, "found 1 (gray)", 3);
  const std::string rgba = d.file("rgba.png");
  io::write_png(rgba, random_image(8, 8, 4, 2));
  check_error(rgba, "found 4 (RGBA)", 3);
  check_error(good, "found 3 (RGB)", 1);
}

TEST_CASE("png writer rejects inconsistent images") {
  testing::TempDir d;
  Image8 bad(4, 4, 3);
  bad.data.resize(5);
  CHECK_THROWS_AS(io::write_png(d.file("x.png"), bad), Error);
  Image8 five(4, 4, 5);
  CHECK_THROWS_AS(io::write_png(d.file("y.png"), five), Error);
}

TEST_CASE("png 16-bit files are rejected; palette files decode as RGB") {
  const std::string dir = std::string(CMDR_FIXTURES) + "/io/";  // tools/golden/png_cases.py
  check_error(dir + "gray16.png", "16-bit gray", 0);
  check_error(dir + "rgb48.png", "16-bit RGB", 3);
  const Image8 p = io::read_png(dir + "palette.png", 3);
  REQUIRE(p.width == 3);
  REQUIRE(p.height == 2);
  CHECK(p.at(0, 0, 0) == 255);
  CHECK(p.at(0, 1, 1) == 255);
  CHECK(p.at(0, 2, 2) == 255);
  CHECK(p.at(1, 0, 2) == 255);
  check_error(dir + "palette.png", "found 3 (RGB)", 1);
}

TEST_CASE("png an absurd header size is refused before decoding; a directory is named") {
  testing::TempDir d;
  const std::string good = d.file("good.png");
  io::write_png(good, random_image(4, 4, 3, 1));
  std::vector<char> b = testing::slurp(good);
  // IHDR width / height (big endian) at bytes 16..23; stb does not check the chunk CRC.
  auto put = [&](std::size_t at, uint32_t v) {
    for (int k = 0; k < 4; ++k) b[at + k] = static_cast<char>((v >> (24 - 8 * k)) & 255);
  };
  // 10000x10000 RGB: 300 MB, under stb's own 1 GiB header limit, over ours.
  put(16, 10000);
  put(20, 10000);
  const std::string huge = d.file("huge.png");
  testing::spit(huge, b);
  check_error(huge, "refusing to decode", 3);
  check_error(huge, "10000x10000", 3);
  std::filesystem::create_directories(d.file("dir.png"));
  check_error(d.file("dir.png"), "is a directory", 3);
  check_error(d.file("nothing.png"), "does not exist", 3);
}
