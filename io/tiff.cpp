#include "io/tiff.hpp"

#include <tiffio.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <vector>

#include "engine/error.hpp"

namespace cmdr::io {
namespace {

// Largest organised cloud read (pixels): 8192², 768 MiB as float32 xyz; MVTec 3D-AD clouds
// are below 1000². Anything larger is treated as a corrupt header.
constexpr int64_t kMaxXyzPixels = int64_t{8192} * 8192;

// Per-handle message sink (libtiff ≥ 4.5 TIFFOpenExt): keeps messages off stderr and lets
// the error quote libtiff's own words.
struct Messages {
  std::string errors;
};

int capture_error(TIFF*, void* user, const char* module, const char* fmt, va_list ap) {
  auto* m = static_cast<Messages*>(user);
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  if (!m->errors.empty()) m->errors += "; ";
  if (module && *module) {
    m->errors += module;
    m->errors += ": ";
  }
  m->errors += buf;
  return 1;  // handled: libtiff does not print
}
int ignore_warning(TIFF*, void*, const char*, const char*, va_list) {
  return 1;
}

struct Handle {
  Messages msgs;
  TIFF* tif = nullptr;
  Handle(const std::string& path, const char* mode) {
    TIFFOpenOptions* o = TIFFOpenOptionsAlloc();
    TIFFOpenOptionsSetErrorHandlerExtR(o, capture_error, &msgs);
    TIFFOpenOptionsSetWarningHandlerExtR(o, ignore_warning, nullptr);
    tif = TIFFOpenExt(path.c_str(), mode, o);
    TIFFOpenOptionsFree(o);
  }
  ~Handle() {
    if (tif) TIFFClose(tif);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  std::string why() const { return msgs.errors.empty() ? "no details" : msgs.errors; }
};

std::string format_name(uint16_t f) {
  switch (f) {
    case SAMPLEFORMAT_UINT:
      return "uint";
    case SAMPLEFORMAT_INT:
      return "int";
    case SAMPLEFORMAT_IEEEFP:
      return "float";
    case SAMPLEFORMAT_VOID:
      return "void";
    default:
      return "format" + std::to_string(f);
  }
}

TiffInfo info_of(const std::string& path, Handle& h) {
  TIFF* t = h.tif;
  uint32_t w = 0, ht = 0;
  uint16_t spp = 1, bps = 1, fmt = SAMPLEFORMAT_UINT, planar = PLANARCONFIG_CONTIG;
  if (!TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(t, TIFFTAG_IMAGELENGTH, &ht))
    fail("tiff ", path, ": no image size tags (", h.why(), ")");
  TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted(t, TIFFTAG_BITSPERSAMPLE, &bps);
  TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLEFORMAT, &fmt);
  TIFFGetFieldDefaulted(t, TIFFTAG_PLANARCONFIG, &planar);
  TiffInfo info;
  info.width = w;
  info.height = ht;
  info.samples = spp;
  info.bits = bps;
  info.sample_format = format_name(fmt);
  info.tiled = TIFFIsTiled(t) != 0;
  info.planar_separate = planar == PLANARCONFIG_SEPARATE;
  return info;
}

Handle& open_or_fail(const std::string& path, Handle& h) {
  if (!h.tif) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      fail("tiff ", path, ": cannot open file: it is a directory");
    if (!std::filesystem::exists(path, ec))
      fail("tiff ", path, ": cannot open file: it does not exist");
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("tiff ", path, ": cannot open file");
    std::fclose(f);
    fail("tiff ", path, ": not a readable TIFF (", h.why(), ")");
  }
  return h;
}

}  // namespace

TiffInfo tiff_info(const std::string& path) {
  Handle h(path, "r");
  open_or_fail(path, h);
  return info_of(path, h);
}

Tensor read_xyz_tiff(const std::string& path, int64_t* nonfinite) {
  Handle h(path, "r");
  open_or_fail(path, h);
  const TiffInfo info = info_of(path, h);
  if (info.samples != 3 || info.sample_format != "float" || info.bits != 32)
    fail("tiff ", path,
         ": expected an organized point cloud (3 samples/pixel, 32-bit float), "
         "found ",
         info.samples, " sample(s)/pixel of ", info.bits, "-bit ", info.sample_format, " (",
         info.width, "x", info.height, ")");
  CMDR_CHECK(info.width > 0 && info.height > 0, "tiff ", path, ": empty image ", info.width, "x",
             info.height);
  // A header is only a claim: refuse absurd sizes before allocating (a forged or corrupt
  // 100000x100000 header would otherwise ask for 120 GB).
  CMDR_CHECK(info.width * info.height <= kMaxXyzPixels, "tiff ", path, ": header claims ",
             info.width, "x", info.height, " pixels (", (info.width * info.height * 12) >> 20,
             " MiB as float32 xyz), more than the limit of ", kMaxXyzPixels,
             " pixels (8192x8192); refusing to allocate (corrupt header?)");
  const int64_t W = info.width, H = info.height;
  Tensor out = Tensor::empty({H, W, 3});
  float* dst = out.data();
  TIFF* t = h.tif;
  const int nplanes = info.planar_separate ? 3 : 1;
  const int64_t per_px = info.planar_separate ? 1 : 3;  // floats per pixel in one plane
  if (info.tiled) {
    uint32_t tw = 0, th = 0;
    TIFFGetField(t, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(t, TIFFTAG_TILELENGTH, &th);
    CMDR_CHECK(tw > 0 && th > 0, "tiff ", path, ": tiled file without tile size");
    std::vector<float> buf(static_cast<size_t>(TIFFTileSize(t) / 4 + 1));
    for (int p = 0; p < nplanes; ++p)
      for (int64_t y0 = 0; y0 < H; y0 += th)
        for (int64_t x0 = 0; x0 < W; x0 += tw) {
          if (TIFFReadTile(t, buf.data(), uint32_t(x0), uint32_t(y0), 0, uint16_t(p)) < 0)
            fail("tiff ", path, ": corrupt or truncated tile at (", x0, ",", y0, ") (", h.why(),
                 ")");
          for (int64_t y = y0; y < std::min<int64_t>(H, y0 + th); ++y)
            for (int64_t x = x0; x < std::min<int64_t>(W, x0 + tw); ++x) {
              const float* s = &buf[static_cast<size_t>(((y - y0) * tw + (x - x0)) * per_px)];
              float* d = dst + (y * W + x) * 3;
              if (per_px == 3) {
                d[0] = s[0], d[1] = s[1], d[2] = s[2];
              } else {
                d[p] = s[0];
              }
            }
        }
  } else {
    const tmsize_t line = TIFFScanlineSize(t);
    CMDR_CHECK(line == W * per_px * 4, "tiff ", path, ": scanline of ", int64_t(line),
               " bytes, expected ", W * per_px * 4);
    std::vector<float> buf(static_cast<size_t>(W * per_px));
    for (int p = 0; p < nplanes; ++p)
      for (int64_t y = 0; y < H; ++y) {
        if (TIFFReadScanline(t, buf.data(), uint32_t(y), uint16_t(p)) < 0)
          fail("tiff ", path, ": corrupt or truncated data at row ", y, " of ", H, " (", h.why(),
               ")");
        float* d = dst + y * W * 3;
        if (per_px == 3)
          std::memcpy(d, buf.data(), static_cast<size_t>(W * 3) * 4);
        else
          for (int64_t x = 0; x < W; ++x) d[x * 3 + p] = buf[static_cast<size_t>(x)];
      }
  }
  // NaN/Inf → missing point (SPEC 1: a missing point is exactly (0,0,0)).
  int64_t bad = 0;
  for (int64_t i = 0; i < H * W; ++i) {
    float* d = dst + i * 3;
    if (!std::isfinite(d[0]) || !std::isfinite(d[1]) || !std::isfinite(d[2])) {
      d[0] = d[1] = d[2] = 0.0f;
      ++bad;
    }
  }
  if (nonfinite)
    *nonfinite = bad;
  else if (bad > 0)
    std::cerr << "cmdr-iad: warning: tiff " << path << ": " << bad
              << " point(s) with NaN/Inf treated as missing (set to 0,0,0)\n";
  return out;
}

void write_xyz_tiff(const std::string& path, const Tensor& hw3, const TiffWriteOptions& opt) {
  CMDR_CHECK(hw3.dim() == 3 && hw3.size(2) == 3 && hw3.size(0) > 0 && hw3.size(1) > 0, "tiff ",
             path, ": write_xyz_tiff needs an H×W×3 tensor, got ", hw3.str());
  CMDR_CHECK(!opt.tiled || (opt.tile > 0 && opt.tile % 16 == 0), "tiff ", path, ": tile side ",
             opt.tile, " is not a positive multiple of 16");
  const Tensor c = hw3.contiguous();
  const int64_t H = c.size(0), W = c.size(1);
  Handle h(path, "w");
  if (!h.tif) fail("tiff ", path, ": cannot create file (", h.why(), ")");
  TIFF* t = h.tif;
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, uint32_t(W));
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, uint32_t(H));
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, uint16_t(3));
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, uint16_t(32));
  TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, uint16_t(SAMPLEFORMAT_IEEEFP));
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, uint16_t(PLANARCONFIG_CONTIG));
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, uint16_t(PHOTOMETRIC_RGB));
  TIFFSetField(t, TIFFTAG_COMPRESSION,
               uint16_t(opt.deflate ? COMPRESSION_ADOBE_DEFLATE : COMPRESSION_NONE));
  const float* src = c.data();
  bool ok = true;
  if (opt.tiled) {
    const int64_t ts = opt.tile;
    TIFFSetField(t, TIFFTAG_TILEWIDTH, uint32_t(ts));
    TIFFSetField(t, TIFFTAG_TILELENGTH, uint32_t(ts));
    std::vector<float> buf(static_cast<size_t>(ts * ts * 3));
    for (int64_t y0 = 0; y0 < H && ok; y0 += ts)
      for (int64_t x0 = 0; x0 < W && ok; x0 += ts) {
        std::fill(buf.begin(), buf.end(), 0.0f);
        for (int64_t y = y0; y < std::min(H, y0 + ts); ++y)
          for (int64_t x = x0; x < std::min(W, x0 + ts); ++x)
            for (int k = 0; k < 3; ++k)
              buf[static_cast<size_t>(((y - y0) * ts + (x - x0)) * 3 + k)] =
                  src[(y * W + x) * 3 + k];
        ok = TIFFWriteTile(t, buf.data(), uint32_t(x0), uint32_t(y0), 0, 0) >= 0;
      }
  } else {
    TIFFSetField(t, TIFFTAG_ROWSPERSTRIP,
                 uint32_t(opt.rows_per_strip > 0 ? opt.rows_per_strip : H));
    std::vector<float> row(static_cast<size_t>(W * 3));
    for (int64_t y = 0; y < H && ok; ++y) {
      std::memcpy(row.data(), src + y * W * 3, row.size() * 4);
      ok = TIFFWriteScanline(t, row.data(), uint32_t(y), 0) >= 0;
    }
  }
  if (!ok) fail("tiff ", path, ": write failed (", h.why(), ")");
  if (!TIFFFlush(t)) fail("tiff ", path, ": flush failed (", h.why(), ")");
}

}  // namespace cmdr::io
