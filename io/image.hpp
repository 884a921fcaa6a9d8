#pragma once
// 8-bit PNG images (SPEC 1: rgb is 8-bit RGB, gt is 8-bit gray). Read with stb_image,
// written with stb_image_write (Debian libstb). Every rejection is a cmdr::Error naming the
// file and what was found (not a PNG, truncated, 16-bit, wrong channel count...).
#include <cstdint>
#include <string>
#include <vector>

namespace cmdr::io {

// Interleaved 8-bit image, row-major H×W×C (C = 1 gray, 3 RGB).
struct Image8 {
  int64_t width = 0, height = 0, channels = 0;
  std::vector<uint8_t> data;

  Image8() = default;
  Image8(int64_t w, int64_t h, int64_t c, uint8_t fill = 0)
      : width(w), height(h), channels(c), data(static_cast<size_t>(w * h * c), fill) {}
  uint8_t& at(int64_t y, int64_t x, int64_t c = 0) {
    return data[static_cast<size_t>((y * width + x) * channels + c)];
  }
  uint8_t at(int64_t y, int64_t x, int64_t c = 0) const {
    return data[static_cast<size_t>((y * width + x) * channels + c)];
  }
  bool empty() const { return data.empty(); }
};

// Header facts of a PNG (no pixel decoding).
struct PngInfo {
  int64_t width = 0, height = 0, channels = 0;
  int bit_depth = 8;
};
PngInfo png_info(const std::string& path);

// Reads an 8-bit PNG. want_channels: 0 = as stored (1..4); 1 = gray required; 3 = RGB required
// (a gray, gray+alpha or RGBA file is an error naming the channels found).
Image8 read_png(const std::string& path, int want_channels = 0);
inline Image8 read_rgb_png(const std::string& path) {
  return read_png(path, 3);
}
inline Image8 read_gray_png(const std::string& path) {
  return read_png(path, 1);
}

// Writes an 8-bit PNG (1, 3 or 4 channels). Deterministic bytes for the same image.
void write_png(const std::string& path, const Image8& img);

}  // namespace cmdr::io
