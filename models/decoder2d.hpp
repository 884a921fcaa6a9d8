#pragma once
// Decoder2D (SPEC 5.2): projection → pre-norm windowed-attention block over the S² tokens →
// transposed-conv decoder on the S×S grid → per-position reconstruction. Member names are
// the PyTorch checkpoint names (projection, attn.norm1, attn.attn.qkv, attn.attn.proj,
// attn.norm2, attn.mlp, conv_decoder, reconstruct).
#include <cstdint>
#include <memory>
#include <vector>

#include "autograd/modules.hpp"
#include "engine/rng.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

// Widths. spec() gives SPEC 5.2's (dim 768); tests use reduced widths with the same
// structure (the fixtures would be tens of MB otherwise).
struct Decoder2DConfig {
  int64_t dim = 768;          // input / output width
  int64_t hidden = 384;       // r
  int64_t heads = 8;          // head width = hidden / heads = 48
  int64_t window = 128;       // tokens per attention window
  int64_t mlp_hidden = 768;   // attn.mlp
  int64_t conv1 = 256;        // conv_decoder.0 output
  int64_t conv2 = 128;        // conv_decoder.3 output
  int64_t rec_hidden = 1536;  // reconstruct.0 output
  float p_drop = 0.1f;        // every Dropout, attention probabilities included
  // Training memory (issue 8): the projection tail (after its first Linear) and the
  // attention block are recomputed in the backward (ag::checkpoint) instead of keeping
  // their activations — ~2.5 GB less at S = 224 for one extra forward of those layers.
  // Same values and gradients bit for bit; a run-time choice, not part of the checkpoint.
  bool recompute = true;
  static Decoder2DConfig spec() { return {}; }
};

// attn.attn: windowed multi-head self-attention (SPEC 5.2).
class WindowAttention : public ag::Module {
 public:
  WindowAttention(const Decoder2DConfig& cfg, Rng& init_rng, Rng& drop_rng);
  // x [L, r] -> [L, r]
  ag::Var forward(const ag::Var& x);
  int64_t heads, head_dim, window;
  float p_drop;
  ag::Linear qkv;   // Linear(r → 3r), output split as (3, heads, head_dim)
  ag::Linear proj;  // Linear(r → r)
  ag::Dropout proj_drop;

 private:
  Rng* drop_rng_;
};

// attn: x += attn(norm1(x)); x += mlp(norm2(x)).
class AttentionBlock : public ag::Module {
 public:
  AttentionBlock(const Decoder2DConfig& cfg, Rng& init_rng, Rng& drop_rng);
  // x [L, r] -> [L, r]
  ag::Var forward(const ag::Var& x);
  ag::LayerNorm norm1;
  WindowAttention attn;
  ag::LayerNorm norm2;
  ag::Sequential mlp;  // [0 Linear(r→mlp), 1 GELU, 2 Drop, 3 Linear(mlp→r), 4 Drop]
};

class Decoder2D : public ag::Module {
 public:
  Decoder2D(const Decoder2DConfig& cfg, Rng& init_rng, uint64_t dropout_seed);
  // x [S², dim] (tokens in row-major S×S order) -> [S², dim]
  ag::Var forward(const ag::Var& x);
  // Same, but `reconstruct` (a per-position stage) only runs on the given token rows
  // (SPEC 10: positions the loss / fusion mask out need not be reconstructed).
  // -> [rows.size(), dim], row i = forward(x)[rows[i]] up to float rounding.
  ag::Var forward_rows(const ag::Var& x, const std::vector<int64_t>& rows);
  // SPEC 10: x = U·tokens (U [S², g²] the bilinear operator, all S² rows: attention mixes
  // positions); `projection.0` runs on the g² tokens, U after. tokens [g², dim] ->
  // [rows.size() or S², dim], = forward_rows(U·tokens, rows) up to float rounding.
  ag::Var forward_sparse(const std::shared_ptr<const ops::CsrMatrix>& u, const ag::Var& tokens,
                         const std::vector<int64_t>& rows);
  void set_dropout(float p);
  void reseed_dropout(uint64_t seed) { drop_rng_ = Rng(seed); }

  const Decoder2DConfig cfg;

 private:
  // Everything after `projection`: h [S², r] -> [rows.size() or S², dim].
  ag::Var decode(const ag::Var& h, const std::vector<int64_t>& rows);
  // projection[1..] (GELU, LN, Drop, Linear, GELU, LN), recomputed in the backward when
  // cfg.recompute.
  ag::Var projection_tail(const ag::Var& h0);

 public:
 private:
  Rng drop_rng_;  // declared before the layers that hold a reference to it

 public:
  ag::Sequential projection;  // [0 Linear(dim→r), 1 GELU, 2 LN, 3 Drop, 4 Linear, 5 GELU, 6 LN]
  AttentionBlock attn;
  ag::Sequential conv_decoder;  // [0 ConvT2d(r→c1), 1 BN, 2 GELU, 3 ConvT2d(c1→c2), 4 BN,
                                //  5 GELU, 6 ConvT2d(c2→r), 7 BN, 8 GELU], all 3×3 s1 p1
  ag::Sequential reconstruct;   // [0 Linear(r→rec), 1 GELU, 2 Drop, 3 Linear(rec→dim), 4 LN]
};

}  // namespace cmdr::models
