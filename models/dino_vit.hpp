#pragma once
// DINO ViT-B/8 (timm `vit_base_patch8_224.dino`), frozen, forward only (SPEC 4.1).
// Members carry timm's tensor names ('.' -> '_'); the real sizes are the config default,
// tests use a tiny config. No tape: the forward calls ops::*_forward directly and drops
// every activation as soon as it is dead.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "io/safetensors.hpp"
#include "models/transformer.hpp"
#include "models/weights.hpp"

namespace cmdr::models {

struct DinoVitConfig {
  int64_t image = 224;  // input side (square); the token grid is image / patch
  int64_t patch = 8;
  int64_t in_chans = 3;
  int64_t dim = 768;
  int64_t depth = 12;
  int64_t heads = 12;
  int64_t mlp = 3072;
  float eps = 1e-6f;  // timm ViT LayerNorm eps (SPEC 4.1)
  int64_t grid() const { return image / patch; }
  int64_t tokens() const { return grid() * grid(); }
};

// blocks.{i}.*: norm1, attn.qkv (with bias), attn.proj, norm2, mlp.fc1, mlp.fc2.
using DinoVitBlock = TransformerBlock;

struct DinoVit {
  DinoVitConfig cfg;
  Tensor cls_token;                // [1, 1, dim]
  Tensor pos_embed;                // [1, tokens + 1, dim], cls first
  Tensor patch_embed_proj_weight;  // [dim, in_chans, patch, patch]
  Tensor patch_embed_proj_bias;    // [dim]
  std::vector<DinoVitBlock> blocks;
  Tensor norm_weight, norm_bias;  // [dim]

  explicit DinoVit(const DinoVitConfig& c = {});
  // The exact timm names, shapes and init rules (drives load and init-extractors).
  std::vector<ParamSpec> param_specs();
  // Loads timm names unchanged; `head.*` and any other extra keys are reported as a note.
  LoadReport load(const st::File& file);
};

// Per-intermediate capture for tests (optional; nullptr in production).
struct DinoVitTrace {
  Tensor patch_tokens;            // [tokens, dim] after patch_embed
  Tensor embedded;                // [tokens + 1, dim] after cls + pos_embed
  std::vector<Tensor> block_out;  // depth × [tokens + 1, dim]
};

// image [in_chans, image, image] (normalised) -> [tokens, dim]: final norm applied, cls
// dropped; row t = patch (t / grid, t % grid).
Tensor dino_vit_forward(const DinoVit& m, const Tensor& image, DinoVitTrace* trace = nullptr);

// Multiply-adds ×2 of one forward (for GFLOP/s reports).
double dino_vit_flops(const DinoVitConfig& c);

}  // namespace cmdr::models
