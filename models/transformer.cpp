#include "models/transformer.hpp"

#include <cmath>

#include "engine/error.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

Tensor mhsa_forward(const Tensor& x, const TransformerBlock& b, int64_t heads) {
  CMDR_CHECK(x.dim() == 2, "mhsa: x ", x.str(), " must be [T, D]");
  const int64_t T = x.size(0), D = x.size(1);
  CMDR_CHECK(heads > 0 && D % heads == 0, "mhsa: dim ", D, " not divisible by heads ", heads);
  const int64_t hd = D / heads;
  Tensor qkv = ops::linear_forward(x, b.attn_qkv_weight, b.attn_qkv_bias);  // [T, 3D]
  Tensor qkvh = qkv.view({T, 3, heads, hd}).permute({1, 2, 0, 3});          // [3, H, T, hd]
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  Tensor o = ops::attention_forward(qkvh.select(0, 0).unsqueeze(0), qkvh.select(0, 1).unsqueeze(0),
                                    qkvh.select(0, 2).unsqueeze(0), scale, /*window=*/0,
                                    /*p_drop=*/0.0f, /*training=*/false, nullptr);  // [1,H,T,hd]
  qkvh = qkv = Tensor();  // dead: free before the projection
  Tensor merged = o.squeeze(0).permute({1, 0, 2}).reshape({T, D});  // heads side by side
  o = Tensor();
  return ops::linear_forward(merged, b.attn_proj_weight, b.attn_proj_bias);
}

Tensor transformer_block_forward(const Tensor& x, const TransformerBlock& b, int64_t heads,
                                 float eps) {
  Tensor h = ops::layer_norm_forward(x, b.norm1_weight, b.norm1_bias, eps);
  Tensor a = mhsa_forward(h, b, heads);
  h = Tensor();
  Tensor x1 = ops::add_forward(x, a);
  a = Tensor();
  h = ops::layer_norm_forward(x1, b.norm2_weight, b.norm2_bias, eps);
  // fc1 + GELU fused (bias and GELU as oneDNN post-ops, issue 8): f is written once.
  Tensor f = ops::linear_gelu_forward(h, b.mlp_fc1_weight, b.mlp_fc1_bias);
  h = Tensor();
  Tensor y = ops::linear_forward(f, b.mlp_fc2_weight, b.mlp_fc2_bias);
  f = Tensor();
  return ops::add_forward(x1, y);
}

double transformer_block_flops(int64_t T, int64_t D, int64_t M) {
  const double t = static_cast<double>(T), d = static_cast<double>(D), m = static_cast<double>(M);
  return 2 * t * d * 3 * d     // qkv
         + 2 * 2 * t * t * d   // q·kᵀ and probs·v
         + 2 * t * d * d       // proj
         + 2 * 2 * t * d * m;  // fc1 + fc2
}

}  // namespace cmdr::models
