#include "models/dino_vit.hpp"

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

DinoVit::DinoVit(const DinoVitConfig& c) : cfg(c) {
  CMDR_CHECK(c.patch > 0 && c.image % c.patch == 0, "dino_vit: image ", c.image,
             " is not a multiple of patch ", c.patch);
  CMDR_CHECK(c.heads > 0 && c.dim % c.heads == 0, "dino_vit: dim ", c.dim,
             " is not a multiple of heads ", c.heads);
  blocks.resize(static_cast<std::size_t>(c.depth));
}

std::vector<ParamSpec> DinoVit::param_specs() {
  const int64_t D = cfg.dim, T = cfg.tokens();
  std::vector<ParamSpec> s;
  s.push_back({"cls_token", {1, 1, D}, &cls_token, Init::TruncNormal02});
  s.push_back({"pos_embed", {1, T + 1, D}, &pos_embed, Init::TruncNormal02});
  s.push_back({"patch_embed.proj.weight",
               {D, cfg.in_chans, cfg.patch, cfg.patch},
               &patch_embed_proj_weight,
               Init::TruncNormal02});
  s.push_back({"patch_embed.proj.bias", {D}, &patch_embed_proj_bias, Init::Zeros});
  for (int64_t i = 0; i < cfg.depth; ++i) {
    DinoVitBlock& b = blocks[static_cast<std::size_t>(i)];
    const std::string p = "blocks." + std::to_string(i) + ".";
    s.push_back({p + "norm1.weight", {D}, &b.norm1_weight, Init::Ones});
    s.push_back({p + "norm1.bias", {D}, &b.norm1_bias, Init::Zeros});
    s.push_back({p + "attn.qkv.weight", {3 * D, D}, &b.attn_qkv_weight, Init::TruncNormal02});
    s.push_back({p + "attn.qkv.bias", {3 * D}, &b.attn_qkv_bias, Init::Zeros});
    s.push_back({p + "attn.proj.weight", {D, D}, &b.attn_proj_weight, Init::TruncNormal02});
    s.push_back({p + "attn.proj.bias", {D}, &b.attn_proj_bias, Init::Zeros});
    s.push_back({p + "norm2.weight", {D}, &b.norm2_weight, Init::Ones});
    s.push_back({p + "norm2.bias", {D}, &b.norm2_bias, Init::Zeros});
    s.push_back({p + "mlp.fc1.weight", {cfg.mlp, D}, &b.mlp_fc1_weight, Init::TruncNormal02});
    s.push_back({p + "mlp.fc1.bias", {cfg.mlp}, &b.mlp_fc1_bias, Init::Zeros});
    s.push_back({p + "mlp.fc2.weight", {D, cfg.mlp}, &b.mlp_fc2_weight, Init::TruncNormal02});
    s.push_back({p + "mlp.fc2.bias", {D}, &b.mlp_fc2_bias, Init::Zeros});
  }
  s.push_back({"norm.weight", {D}, &norm_weight, Init::Ones});
  s.push_back({"norm.bias", {D}, &norm_bias, Init::Zeros});
  return s;
}

LoadReport DinoVit::load(const st::File& file) {
  // timm names load unchanged (SPEC 4.1); a classifier head or anything else is unexpected.
  return load_params(file, param_specs(), "dino_vit");
}

Tensor dino_vit_forward(const DinoVit& m, const Tensor& image, DinoVitTrace* trace) {
  const DinoVitConfig& c = m.cfg;
  CMDR_CHECK(image.shape() == (Shape{c.in_chans, c.image, c.image}), "dino_vit: image ",
             image.str(), ", expected ", shape_str({c.in_chans, c.image, c.image}));
  ProfileScope prof("dino_vit_forward", dino_vit_flops(c));
  const int64_t D = c.dim, T = c.tokens();
  // patch_embed: Conv2d(k = stride = patch) -> [1, D, g, g] -> tokens [T, D] row-major.
  Tensor pe = ops::conv2d_forward(image.unsqueeze(0), m.patch_embed_proj_weight,
                                  m.patch_embed_proj_bias, c.patch, 0);
  Tensor tok = pe.view({D, T}).transpose(0, 1);  // [T, D] view
  if (trace) trace->patch_tokens = tok.contiguous();
  // cls first, then + pos_embed (norm_pre is identity, SPEC 4.1).
  Tensor x = Tensor::concat({m.cls_token.view({1, D}), tok}, 0);  // [T+1, D]
  pe = tok = Tensor();
  x = ops::add_forward(x, m.pos_embed.view({T + 1, D}));
  if (trace) trace->embedded = x;
  for (const DinoVitBlock& b : m.blocks) {
    x = transformer_block_forward(x, b, c.heads, c.eps);
    if (trace) trace->block_out.push_back(x);
  }
  // Final norm on the patch tokens only (cls dropped; LayerNorm is per row so dropping
  // first gives the same numbers and saves one row).
  return ops::layer_norm_forward(x.narrow(0, 1, T), m.norm_weight, m.norm_bias, c.eps);
}

double dino_vit_flops(const DinoVitConfig& c) {
  const double T = static_cast<double>(c.tokens()),
               P = static_cast<double>(c.in_chans * c.patch * c.patch);
  return 2 * T * P * static_cast<double>(c.dim) +
         static_cast<double>(c.depth) * transformer_block_flops(c.tokens() + 1, c.dim, c.mlp);
}

}  // namespace cmdr::models
