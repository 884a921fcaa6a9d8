#pragma once
// Input transforms (SPEC 3). 8-bit image work replicates Pillow 9.4 exactly (BICUBIC with
// antialiasing via fixed-point coefficients, NEAREST via its affine scale), so the tensors fed
// to the extractor match the reference loader's.
#include <cstdint>

#include "engine/tensor.hpp"
#include "io/image.hpp"

namespace cmdr::io {

// SPEC 3.1: pads to a square of side max(H, W) by replicating edge pixels; left/top get
// floor(pad / 2), right/bottom the rest.
Image8 pad_square_edge(const Image8& img);

// Pillow Image.resize(size, BICUBIC) on an 8-bit image (any channel count): a = -0.5,
// support 2 scaled by the down-scale factor when shrinking, horizontal pass first into an
// 8-bit intermediate, 22-bit fixed-point coefficients, round-half-up and clip.
Image8 resize_bicubic(const Image8& img, int64_t out_w, int64_t out_h);

// Pillow Image.resize(size, NEAREST): source x = int(x0 + (x + 0.5) · in/out) accumulated in
// double as Pillow's affine scaler does.
Image8 resize_nearest(const Image8& img, int64_t out_w, int64_t out_h);

// uint8 H×W×3 → 3×H×W float: v/255, then (v − mean)/std with ImageNet mean (0.485, 0.456,
// 0.406) and std (0.229, 0.224, 0.225) (SPEC 3.1).
Tensor to_normalized_tensor(const Image8& rgb);

// The whole SPEC 3.1 pipeline: pad_square_edge → resize_bicubic(S, S) → normalise. 3×S×S.
Tensor rgb_transform(const Image8& rgb, int64_t side);

// SPEC 3.2: H×W×3 organized cloud → 3×S×S by PyTorch interpolate(mode='nearest') in float32:
// scale = (float)in / out, src = min(floor(dst · scale), in − 1).
Tensor cloud_transform(const Tensor& hw3, int64_t side);
// The index map used above (exposed for tests): out_size source indices.
std::vector<int64_t> torch_nearest_indices(int64_t in_size, int64_t out_size);

// SPEC 3.3: gray gt → pad_square_edge → Pillow NEAREST to S×S → 1 where value > 127.5
// (> 0.5 of full scale), else 0. S×S.
Tensor gt_transform(const Image8& gt, int64_t side);

}  // namespace cmdr::io
