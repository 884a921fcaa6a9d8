#include <doctest/doctest.h>
#include <tiffio.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/tiff.hpp"
#include "tests/io/tmpdir.hpp"

using namespace cmdr;

namespace {
Tensor random_cloud(int64_t h, int64_t w, uint64_t seed) {
  Tensor t = Tensor::empty({h, w, 3});
  Rng r(seed);
  r.fill_uniform(t, -0.2f, 0.4f);
  // Some missing points, as in MVTec.
  for (int64_t i = 0; i < h * w; i += 7)
    t.data()[i * 3] = t.data()[i * 3 + 1] = t.data()[i * 3 + 2] = 0;
  return t;
}
void check_error(const std::string& path, const std::string& what) {
  std::string msg;
  try {
    io::read_xyz_tiff(path);
  } catch (const Error& e) {
    msg = e.what();
  }
  INFO(msg);
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find(what) != std::string::npos);
}
// Writes a TIFF with arbitrary sample layout through libtiff directly (what other tools make).
void write_raw(const std::string& path, int w, int h, int spp, int bits, int fmt, int planar) {
  TIFF* t = TIFFOpen(path.c_str(), "w");
  REQUIRE(t);
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, fmt);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, planar);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, spp == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 3);
  const int per = planar == PLANARCONFIG_CONTIG ? spp : 1;
  std::vector<uint8_t> row(size_t(w * per * bits / 8));
  for (int p = 0; p < (planar == PLANARCONFIG_CONTIG ? 1 : spp); ++p)
    for (int y = 0; y < h; ++y) {
      if (bits == 32 && fmt == SAMPLEFORMAT_IEEEFP)
        for (int i = 0; i < w * per; ++i) {
          float v = float(p * 1000 + y * 10 + i);
          std::memcpy(&row[size_t(i) * 4], &v, 4);
        }
      REQUIRE(TIFFWriteScanline(t, row.data(), y, uint16_t(p)) >= 0);
    }
  TIFFClose(t);
}
// A little-endian, uncompressed, single-strip float32 RGB TIFF with the directory right
// after the header and only `data_bytes` of the strip's bytes present.
std::vector<char> handmade_tiff(uint32_t w, uint32_t h, uint32_t data_bytes) {
  std::vector<char> b;
  auto u16 = [&](uint32_t v) { b.push_back(char(v & 255)), b.push_back(char(v >> 8)); };
  auto u32 = [&](uint32_t v) { u16(v & 0xffff), u16(v >> 16); };
  const uint16_t n = 11;
  const uint32_t ifd = 8, extra = ifd + 2 + n * 12 + 4, data = extra + 12;
  b.push_back('I'), b.push_back('I'), u16(42), u32(ifd);
  u16(n);
  auto entry = [&](uint16_t tag, uint16_t type, uint32_t count, uint32_t value) {
    u16(tag), u16(type), u32(count);
    if (type == 3 && count == 1)
      u16(value), u16(0);
    else
      u32(value);
  };
  entry(256, 4, 1, w);
  entry(257, 4, 1, h);
  entry(258, 3, 3, extra);  // BitsPerSample 32,32,32
  entry(259, 3, 1, 1);
  entry(262, 3, 1, 2);
  entry(273, 4, 1, data);
  entry(277, 3, 1, 3);
  entry(278, 4, 1, h);
  entry(279, 4, 1, w * h * 12);
  entry(284, 3, 1, 1);
  entry(339, 3, 3, extra + 6);  // SampleFormat 3,3,3
  u32(0);
  u16(32), u16(32), u16(32), u16(3), u16(3), u16(3);
  for (uint32_t i = 0; i < data_bytes; ++i) b.push_back(0);
  return b;
}
}  // namespace

TEST_CASE("tiff xyz round trip: strips, several strip heights, tiles, deflate") {
  testing::TempDir d;
  const Tensor cloud = random_cloud(45, 37, 3);  // not a multiple of the tile size
  std::vector<io::TiffWriteOptions> layouts(5);
  layouts[1].rows_per_strip = 4;
  layouts[2].tiled = true;
  layouts[3].tiled = true, layouts[3].tile = 32, layouts[3].deflate = true;
  layouts[4].rows_per_strip = 7, layouts[4].deflate = true;
  for (size_t k = 0; k < layouts.size(); ++k) {
    const std::string p = d.file(std::to_string(k) + "c.tiff");
    io::write_xyz_tiff(p, cloud, layouts[k]);
    io::TiffInfo info = io::tiff_info(p);
    CHECK(info.tiled == layouts[k].tiled);
    CHECK(info.samples == 3);
    CHECK(info.bits == 32);
    CHECK(info.sample_format == "float");
    int64_t bad = -1;
    Tensor back = io::read_xyz_tiff(p, &bad);
    CHECK(bad == 0);
    REQUIRE(back.shape() == cloud.shape());
    CHECK(back.to_vector() == cloud.to_vector());  // bit-exact
  }
}

TEST_CASE("tiff planar-separate float32 (other writers) is read correctly") {
  testing::TempDir d;
  const std::string p = d.file("sep.tiff");
  write_raw(p, 5, 4, 3, 32, SAMPLEFORMAT_IEEEFP, PLANARCONFIG_SEPARATE);
  Tensor t = io::read_xyz_tiff(p);
  CHECK(t.at({2, 3, 0}) == 0 * 1000 + 2 * 10 + 3);
  CHECK(t.at({2, 3, 2}) == 2 * 1000 + 2 * 10 + 3);
  const std::string q = d.file("contig.tiff");
  write_raw(q, 5, 4, 3, 32, SAMPLEFORMAT_IEEEFP, PLANARCONFIG_CONTIG);
  Tensor u = io::read_xyz_tiff(q);
  CHECK(u.at({1, 4, 1}) == 10 + 4 * 3 + 1);
}

TEST_CASE("tiff NaN/Inf points become missing and are counted") {
  testing::TempDir d;
  Tensor c = random_cloud(6, 5, 9);
  c.at({0, 1, 2}) = std::numeric_limits<float>::quiet_NaN();
  c.at({3, 3, 0}) = std::numeric_limits<float>::infinity();
  c.at({5, 4, 1}) = -std::numeric_limits<float>::infinity();
  const std::string p = d.file("nan.tiff");
  io::write_xyz_tiff(p, c);
  int64_t bad = 0;
  Tensor t = io::read_xyz_tiff(p, &bad);
  CHECK(bad == 3);
  for (int k = 0; k < 3; ++k) {
    CHECK(t.at({0, 1, k}) == 0.0f);
    CHECK(t.at({3, 3, k}) == 0.0f);
    CHECK(t.at({5, 4, k}) == 0.0f);
  }
  CHECK(t.at({2, 2, 0}) == c.at({2, 2, 0}));
}

TEST_CASE("tiff malformed files are rejected naming the file") {
  testing::TempDir d;
  const std::string one = d.file("one_channel.tiff");
  write_raw(one, 6, 5, 1, 32, SAMPLEFORMAT_IEEEFP, PLANARCONFIG_CONTIG);
  check_error(one, "found 1 sample(s)/pixel of 32-bit float");

  const std::string u16 = d.file("uint16.tiff");
  write_raw(u16, 6, 5, 3, 16, SAMPLEFORMAT_UINT, PLANARCONFIG_CONTIG);
  check_error(u16, "found 3 sample(s)/pixel of 16-bit uint");

  const std::string good = d.file("good.tiff");
  io::write_xyz_tiff(good, random_cloud(40, 30, 1));
  std::vector<char> bytes = testing::slurp(good);
  // libtiff writes the directory after the data: cut the data and the directory goes, too.
  const std::string trunc = d.file("truncated.tiff");
  testing::spit(trunc, std::vector<char>(bytes.begin(), bytes.begin() + long(bytes.size() / 2)));
  check_error(trunc, "not a readable TIFF");

  // Truncated data with an intact directory (the directory placed before the data, as
  // some writers do): the strip runs past the end of the file.
  const std::string short_data = d.file("short_data.tiff");
  testing::spit(short_data, handmade_tiff(30, 40, 30 * 40 * 12 / 3));
  check_error(short_data, "truncated");
  // The same file complete reads fine (the handmade writer is right).
  const std::string full_data = d.file("full_data.tiff");
  testing::spit(full_data, handmade_tiff(30, 40, 30 * 40 * 12));
  CHECK(io::read_xyz_tiff(full_data).shape() == Shape{40, 30, 3});

  const std::string garbage = d.file("garbage.tiff");
  testing::spit(garbage, std::vector<char>(100, 'x'));
  check_error(garbage, "not a readable TIFF");
  check_error(d.file("missing.tiff"), "cannot open");
}

TEST_CASE("tiff writer rejects wrong shapes") {
  testing::TempDir d;
  CHECK_THROWS_AS(io::write_xyz_tiff(d.file("a.tiff"), Tensor::zeros({4, 4, 2})), Error);
  CHECK_THROWS_AS(io::write_xyz_tiff(d.file("b.tiff"), Tensor::zeros({4, 12})), Error);
}

TEST_CASE("tiff big-endian files and tiled planar-separate files are read") {
  testing::TempDir d;
  const Tensor cloud = random_cloud(20, 33, 4);
  const std::string be = d.file("big_endian.tiff");
  {
    TIFF* t = TIFFOpen(be.c_str(), "wb");  // "b": big-endian byte order
    REQUIRE(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 33);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 20);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 32);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    std::vector<float> row(33 * 3);
    for (int y = 0; y < 20; ++y) {
      std::memcpy(row.data(), cloud.data() + y * 33 * 3, row.size() * 4);
      REQUIRE(TIFFWriteScanline(t, row.data(), y, 0) >= 0);
    }
    TIFFClose(t);
  }
  CHECK(io::read_xyz_tiff(be).to_vector() == cloud.to_vector());

  const std::string ts = d.file("tiled_separate.tiff");
  {
    TIFF* t = TIFFOpen(ts.c_str(), "w");
    REQUIRE(t);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 33);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 20);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 32);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, SAMPLEFORMAT_IEEEFP);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_SEPARATE);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_TILEWIDTH, 16);
    TIFFSetField(t, TIFFTAG_TILELENGTH, 16);
    std::vector<float> tile(16 * 16);
    for (int p = 0; p < 3; ++p)
      for (int y0 = 0; y0 < 20; y0 += 16)
        for (int x0 = 0; x0 < 33; x0 += 16) {
          std::fill(tile.begin(), tile.end(), -1.0f);
          for (int y = y0; y < std::min(20, y0 + 16); ++y)
            for (int x = x0; x < std::min(33, x0 + 16); ++x)
              tile[size_t((y - y0) * 16 + (x - x0))] = cloud.at({y, x, p});
          REQUIRE(TIFFWriteTile(t, tile.data(), x0, y0, 0, uint16_t(p)) >= 0);
        }
    TIFFClose(t);
  }
  io::TiffInfo info = io::tiff_info(ts);
  CHECK(info.tiled);
  CHECK(info.planar_separate);
  CHECK(io::read_xyz_tiff(ts).to_vector() == cloud.to_vector());
}

TEST_CASE("tiff an absurd header size is refused before allocating, naming the file") {
  testing::TempDir d;
  // 100000x100000 float32 xyz would be 120 GB: refused from the header alone.
  const std::string huge = d.file("huge.tiff");
  testing::spit(huge, handmade_tiff(100000, 100000, 64));
  check_error(huge, "refusing to allocate");
  check_error(huge, "100000x100000");
  // Just inside the limit the header is accepted (and the missing data is then reported).
  const std::string wide = d.file("wide.tiff");
  testing::spit(wide, handmade_tiff(8192, 4, 64));
  check_error(wide, "truncated");
}

TEST_CASE("tiff a directory or a missing path is named as such") {
  testing::TempDir d;
  std::filesystem::create_directories(d.file("dir.tiff"));
  check_error(d.file("dir.tiff"), "is a directory");
  check_error(d.file("nothing.tiff"), "does not exist");
  std::string msg;
  try {
    io::tiff_info(d.file("dir.tiff"));
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("is a directory") != std::string::npos);
}
