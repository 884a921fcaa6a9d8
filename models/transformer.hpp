#pragma once
// The pre-norm transformer block shared by DINO ViT (SPEC 4.1) and Point-MAE (SPEC 4.2),
// forward only (frozen extractors, no tape):
//   x += proj(MHSA(norm1(x)));  x += fc2(GELU(fc1(norm2(x))))
#include <cstdint>

#include "engine/tensor.hpp"

namespace cmdr::models {

// Member names follow the timm / Point-MAE tensor names ('.' -> '_').
struct TransformerBlock {
  Tensor norm1_weight, norm1_bias;          // [D]
  Tensor attn_qkv_weight, attn_qkv_bias;    // [3D, D]; bias [3D] or undefined (Point-MAE)
  Tensor attn_proj_weight, attn_proj_bias;  // [D, D], [D]
  Tensor norm2_weight, norm2_bias;          // [D]
  Tensor mlp_fc1_weight, mlp_fc1_bias;      // [M, D], [M]
  Tensor mlp_fc2_weight, mlp_fc2_bias;      // [D, M], [D]
};

// Multi-head self-attention over one sequence, full (no window).
// x [T, D] -> [T, D]. qkv rows are Q | K | V with the heads' hd = D/heads rows contiguous
// inside each (WEIGHTS.md), so [T, 3D] views as [T, 3, heads, hd]; scale hd^-0.5.
Tensor mhsa_forward(const Tensor& x, const TransformerBlock& b, int64_t heads);

// One block. x [T, D] -> [T, D]; LayerNorm eps `eps`.
Tensor transformer_block_forward(const Tensor& x, const TransformerBlock& b, int64_t heads,
                                 float eps);

// FLOPs (2 × multiply-adds) of one block on T tokens.
double transformer_block_flops(int64_t T, int64_t D, int64_t M);

}  // namespace cmdr::models
