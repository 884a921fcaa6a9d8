#pragma once
// Inference-time anomaly maps and their fusion (SPEC 7). Pure tensor code on S×S maps
// (no autograd, no networks): the networks' outputs go in as per-position error maps.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr::models {

// SPEC 7 "Modes": 2d3d (default), 2d / 3d (single branch), map / rec (ablations of 2d3d).
enum class Mode { Fused2D3D, Only2D, Only3D, MapOnly, RecOnly };
Mode parse_mode(const std::string& s);  // "2d3d" | "2d" | "3d" | "map" | "rec"; else Error
const char* mode_name(Mode m);
// Which networks a mode needs (a 2d3d checkpoint serves the map / rec ablations too).
bool mode_uses_mapping(Mode m);  // map2Dto3D + map3Dto2D
bool mode_uses_dec2d(Mode m);
bool mode_uses_dec3d(Mode m);

// e(a, b) = ‖a/max(‖a‖,1e-12) − b/max(‖b‖,1e-12)‖₂ per position (SPEC 7).
// a, b [S², C] -> [side, side].
Tensor error_map(const Tensor& a, const Tensor& b, int64_t side);
// The same map when a is known only at `rows` (a_rows [n, C], row k = position rows[k]) and
// is the zero vector elsewhere — bit-identical to error_map on the scattered a, without
// the [S², C] scatter. rows empty: a_rows holds every position (= error_map).
Tensor error_map_rows(const Tensor& a_rows, const std::vector<int64_t>& rows, const Tensor& b,
                      int64_t side);

// box_k: k×k mean filter, zero padding, same size, divides by k² everywhere (SPEC 7).
// x [H, W] -> [H, W].
Tensor box_filter(const Tensor& x, int64_t k);

// Raw (unmasked) per-position error maps [S, S]; those a mode does not use may be
// undefined. valid [S, S] (or [S²]) holds 1 at valid positions, 0 elsewhere.
struct FusionInputs {
  Tensor d_map2d, d_map3d, d_rec2d, d_rec3d;
  Tensor valid;
};

// Every intermediate `score --dump` writes. Maps a mode does not compute stay undefined.
struct FusionResult {
  Tensor d_map2d, d_map3d;           // masked
  Tensor d_rec2d;                    // masked (2d3d) and smoothed: box_5 ×3, box_7 ×2
  Tensor d_rec3d;                    // masked
  Tensor a_map, a_rec;               // reliability-gated A_map, confidence-weighted A_rec
  Tensor fused;                      // F after the final smoothing (box_5 ×5, box_7 ×3)
  Tensor pixel_map;                  // F / sqrt(mean(F))            (P-AUROC)
  Tensor aupro_map;                  // F / mean(non-zero F)         (AUPRO)
  float image_score = 0.0f;          // max(F / sqrt(mean(non-zero F)))
  Mode mode_used = Mode::Fused2D3D;  // differs from the requested mode after a fallback
  std::string warning;  // non-empty when the caller should warn (no valid position, ...)
};

// SPEC 7 in the given mode. A sample with no valid position falls back to 2d (modes that
// have the 2D branch) with a warning; in mode 3d it yields an all-zero map and a warning.
// When F is all zero the normalisations divide by 1 instead of 0 (maps stay zero, score 0).
FusionResult fuse(const FusionInputs& in, Mode mode);

}  // namespace cmdr::models
