#pragma once
// Heatmap overlays for `evaluate --heatmaps`, `detect` and `demo`: a colour map (jet-like)
// of an anomaly map blended over the rgb image, the gt contour in white, and the score and
// OK/NOK verdict written in the top-left corner with a built-in 5×7 bitmap font (digits,
// upper-case letters, a few signs). Pure 8-bit image code.
#include <cstdint>
#include <string>

#include "engine/tensor.hpp"
#include "io/image.hpp"

namespace cmdr::io {

// Draws `text` at (x, y) (top-left) in `rgb` with integer pixel scale, on a dark box.
// Unknown characters are drawn as a hollow box. Lower-case letters are drawn upper-case.
void draw_text(Image8& img, int64_t x, int64_t y, const std::string& text, int scale, uint8_t r,
               uint8_t g, uint8_t b);

// Jet-like colour of v in [0, 1] (clamped).
void colormap(float v, uint8_t* rgb);

struct OverlayOptions {
  float scale = 1.0f;      // map value shown as the hottest colour (values are divided by it)
  float alpha = 0.5f;      // weight of the colour map
  int64_t min_side = 256;  // the output is upscaled (nearest, integer factor) to at least this
};

// rgb: the sample's image (any size; padded to square and resized like SPEC 3.1 to the
// map's side, without normalisation); map [S, S]; gt [S, S] 0/1 or undefined; the two text
// lines are written in the corner, the second in red when `nok`, else green.
Image8 heatmap_overlay(const Image8& rgb, const Tensor& map, const Tensor& gt,
                       const std::string& line1, const std::string& line2, bool nok,
                       const OverlayOptions& opt = {});

}  // namespace cmdr::io
