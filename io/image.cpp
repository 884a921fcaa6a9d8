#include "io/image.hpp"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/error.hpp"

// stb's implementation is compiled once in Debian's libstb (linked in io/CMakeLists.txt), so
// no STB_IMAGE_IMPLEMENTATION here.

namespace cmdr::io {
namespace {

// Largest image decoded (pixels): 8192², 192 MiB as RGB; MVTec 3D-AD images are below 1000².
constexpr int64_t kMaxPngPixels = int64_t{8192} * 8192;

const char* channel_name(int c) {
  switch (c) {
    case 1:
      return "gray";
    case 2:
      return "gray+alpha";
    case 3:
      return "RGB";
    case 4:
      return "RGBA";
    default:
      return "unknown";
  }
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail("png ", path, ": cannot open file: it is a directory");
  if (!std::filesystem::exists(path, ec))
    fail("png ", path, ": cannot open file: it does not exist");
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("png ", path, ": cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return bytes;
}

// A PNG starts with these 8 bytes; stb would also accept JPEG/BMP/..., which we do not.
void check_signature(const std::string& path, const std::vector<uint8_t>& b) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (b.empty()) fail("png ", path, ": file is empty");
  if (b.size() < 8 || std::memcmp(b.data(), sig, 8) != 0)
    fail("png ", path, ": not a PNG file (bad signature, ", b.size(), " bytes)");
}

PngInfo info_from_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  check_signature(path, b);
  int w = 0, h = 0, c = 0;
  const int n = static_cast<int>(b.size());
  if (!stbi_info_from_memory(b.data(), n, &w, &h, &c))
    fail("png ", path, ": unreadable PNG header (", stbi_failure_reason(), ")");
  PngInfo info;
  info.width = w;
  info.height = h;
  info.channels = c;
  info.bit_depth = stbi_is_16_bit_from_memory(b.data(), n) ? 16 : 8;
  return info;
}

}  // namespace

PngInfo png_info(const std::string& path) {
  // The header lives in the first chunk; reading the whole file keeps this simple and the
  // files are small (MVTec rgb ≤ ~2 MB).
  return info_from_bytes(path, read_bytes(path));
}

Image8 read_png(const std::string& path, int want_channels) {
  const std::vector<uint8_t> bytes = read_bytes(path);
  const PngInfo info = info_from_bytes(path, bytes);
  if (info.bit_depth != 8)
    fail("png ", path, ": ", info.bit_depth, "-bit ", channel_name(int(info.channels)),
         " image; only 8-bit PNGs are supported");
  if (want_channels != 0 && info.channels != want_channels)
    fail("png ", path, ": expected ", want_channels, " channel(s) (", channel_name(want_channels),
         "), found ", info.channels, " (", channel_name(int(info.channels)), ") in a ", info.width,
         "x", info.height, " image");
  // A header is only a claim: refuse absurd sizes before stb allocates for them.
  CMDR_CHECK(info.width * info.height <= kMaxPngPixels, "png ", path, ": header claims ",
             info.width, "x", info.height, " pixels, more than the limit of ", kMaxPngPixels,
             " pixels (8192x8192); refusing to decode (corrupt header?)");
  int w = 0, h = 0, c = 0;
  stbi_uc* px = stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &w, &h, &c, 0);
  if (!px)
    fail("png ", path, ": corrupt or truncated PNG data (", stbi_failure_reason(), "; ",
         bytes.size(), " bytes, header says ", info.width, "x", info.height, ")");
  Image8 img;
  img.width = w;
  img.height = h;
  img.channels = c;
  img.data.assign(px, px + static_cast<size_t>(w) * h * c);
  stbi_image_free(px);
  return img;
}

void write_png(const std::string& path, const Image8& img) {
  CMDR_CHECK(img.channels >= 1 && img.channels <= 4, "png ", path, ": cannot write ", img.channels,
             " channels");
  CMDR_CHECK(img.width > 0 && img.height > 0 &&
                 img.data.size() == static_cast<size_t>(img.width * img.height * img.channels),
             "png ", path, ": image ", img.width, "x", img.height, "x", img.channels, " has ",
             img.data.size(), " bytes");
  const int ok = stbi_write_png(path.c_str(), int(img.width), int(img.height), int(img.channels),
                                img.data.data(), int(img.width * img.channels));
  if (!ok) fail("png ", path, ": cannot write file");
}

}  // namespace cmdr::io
