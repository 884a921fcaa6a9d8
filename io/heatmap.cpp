#include "io/heatmap.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>

#include "engine/error.hpp"
#include "io/transforms.hpp"

namespace cmdr::io {

namespace {

// 5×7 glyphs, one byte per row, bit 4 = leftmost column.
struct Glyph {
  char c;
  std::array<uint8_t, 7> rows;
};

constexpr Glyph kFont[] = {
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'/', {0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
};
constexpr std::array<uint8_t, 7> kUnknown{0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F};

const std::array<uint8_t, 7>& glyph(char c) {
  const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont) {
    if (g.c == u) return g.rows;
  }
  return kUnknown;
}

void put(Image8& img, int64_t x, int64_t y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  img.at(y, x, 0) = r;
  img.at(y, x, 1) = g;
  img.at(y, x, 2) = b;
}

}  // namespace

void draw_text(Image8& img, int64_t x, int64_t y, const std::string& text, int scale, uint8_t r,
               uint8_t g, uint8_t b) {
  CMDR_CHECK(img.channels == 3, "draw_text: needs an RGB image, got ", img.channels, " channels");
  const int64_t s = std::max(1, scale);
  const int64_t w = static_cast<int64_t>(text.size()) * 6 * s + s, h = 9 * s;
  // Dark box behind the text so it reads on any colour.
  for (int64_t yy = y; yy < y + h; ++yy) {
    for (int64_t xx = x; xx < x + w; ++xx) put(img, xx, yy, 0, 0, 0);
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto& rows = glyph(text[i]);
    const int64_t ox = x + s + static_cast<int64_t>(i) * 6 * s, oy = y + s;
    for (int64_t ry = 0; ry < 7; ++ry) {
      for (int64_t rx = 0; rx < 5; ++rx) {
        if (!(rows[static_cast<std::size_t>(ry)] & (0x10 >> rx))) continue;
        for (int64_t dy = 0; dy < s; ++dy) {
          for (int64_t dx = 0; dx < s; ++dx) put(img, ox + rx * s + dx, oy + ry * s + dy, r, g, b);
        }
      }
    }
  }
}

void colormap(float v, uint8_t* rgb) {
  if (!std::isfinite(v)) v = 0.0f;
  v = std::clamp(v, 0.0f, 1.0f);
  // Piecewise-linear jet: blue -> cyan -> green -> yellow -> red.
  auto ch = [](float t) {
    return static_cast<uint8_t>(std::lround(255.0f * std::clamp(1.5f - std::abs(t), 0.0f, 1.0f)));
  };
  rgb[0] = ch(4.0f * v - 3.0f);
  rgb[1] = ch(4.0f * v - 2.0f);
  rgb[2] = ch(4.0f * v - 1.0f);
}

Image8 heatmap_overlay(const Image8& rgb, const Tensor& map, const Tensor& gt,
                       const std::string& line1, const std::string& line2, bool nok,
                       const OverlayOptions& opt) {
  CMDR_CHECK(map.dim() == 2 && map.size(0) == map.size(1), "heatmap: map ", map.str(),
             ", expected a square S×S map");
  const int64_t S = map.size(0);
  CMDR_CHECK(!gt.defined() || gt.numel() == S * S, "heatmap: gt ", gt.str(), " vs map ", map.str());
  Image8 base;
  if (rgb.empty()) {
    base = Image8(S, S, 3, 64);
  } else {
    CMDR_CHECK(rgb.channels == 3, "heatmap: rgb image has ", rgb.channels, " channels");
    base = resize_bicubic(pad_square_edge(rgb), S, S);
  }
  const int64_t f = std::max<int64_t>(1, (opt.min_side + S - 1) / S);
  Image8 out(S * f, S * f, 3);
  const Tensor m = map.contiguous();
  const Tensor g = gt.defined() ? gt.reshape({S, S}).contiguous() : Tensor();
  const float inv = opt.scale > 0 && std::isfinite(opt.scale) ? 1.0f / opt.scale : 1.0f;
  auto is_gt = [&](int64_t y, int64_t x) {
    return y >= 0 && x >= 0 && y < S && x < S && g.data()[y * S + x] > 0.5f;
  };
  for (int64_t y = 0; y < S; ++y) {
    for (int64_t x = 0; x < S; ++x) {
      uint8_t c[3];
      colormap(m.data()[y * S + x] * inv, c);
      uint8_t px[3];
      for (int k = 0; k < 3; ++k) {
        px[k] = static_cast<uint8_t>(
            std::lround((1.0f - opt.alpha) * base.at(y, x, k) + opt.alpha * c[k]));
      }
      bool edge = false;
      if (g.defined() && is_gt(y, x)) {
        edge = !is_gt(y - 1, x) || !is_gt(y + 1, x) || !is_gt(y, x - 1) || !is_gt(y, x + 1);
      }
      for (int64_t dy = 0; dy < f; ++dy) {
        for (int64_t dx = 0; dx < f; ++dx) {
          for (int k = 0; k < 3; ++k) out.at(y * f + dy, x * f + dx, k) = edge ? 255 : px[k];
        }
      }
    }
  }
  const int scale = out.width >= 384 ? 3 : 2;
  draw_text(out, 2, 2, line1, scale, 255, 255, 255);
  if (!line2.empty()) {
    draw_text(out, 2, 2 + 9 * scale, line2, scale, nok ? 255 : 40, nok ? 40 : 255, 40);
  }
  return out;
}

}  // namespace cmdr::io
