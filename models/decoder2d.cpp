#include "models/decoder2d.hpp"

#include <cmath>

#include "engine/error.hpp"
#include "models/feature_mapping.hpp"

namespace cmdr::models {

WindowAttention::WindowAttention(const Decoder2DConfig& cfg, Rng& init_rng, Rng& drop_rng)
    : heads(cfg.heads),
      head_dim(cfg.hidden / cfg.heads),
      window(cfg.window),
      p_drop(cfg.p_drop),
      qkv(cfg.hidden, 3 * cfg.hidden, true, init_rng),
      proj(cfg.hidden, cfg.hidden, true, init_rng),
      proj_drop(cfg.p_drop, drop_rng),
      drop_rng_(&drop_rng) {
  CMDR_CHECK(cfg.hidden % cfg.heads == 0, "Decoder2D: hidden ", cfg.hidden,
             " not divisible by heads ", cfg.heads);
  CMDR_CHECK(cfg.window > 0, "Decoder2D: window ", cfg.window, " must be positive");
  register_module("qkv", qkv);
  register_module("proj", proj);
  register_module("proj_drop", proj_drop);
}

ag::Var WindowAttention::forward(const ag::Var& x) {
  const int64_t len = x.shape()[0], r = x.shape()[1];
  // qkv: [L, 3r] -> [L, 3, H, hd] -> [3, H, L, hd]; q, k, v each [1, H, L, hd].
  ag::Var t = ag::reshape(qkv.forward(x), {len, 3, heads, head_dim});
  t = ag::permute(t, {1, 2, 0, 3});
  ag::Var q = ag::slice(t, 0, 0, 1);
  ag::Var k = ag::slice(t, 0, 1, 2);
  ag::Var v = ag::slice(t, 0, 2, 3);
  // Softmax attention inside consecutive windows of `window` tokens; the last window is
  // shorter when L % window != 0 and only attends to its real tokens (SPEC 5.2).
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  ag::Var o = ag::attention(q, k, v, scale, window, p_drop, training(), drop_rng_);  // [1,H,L,hd]
  o = ag::reshape(ag::permute(o, {0, 2, 1, 3}), {len, r});  // [L, r], heads concatenated
  return proj_drop.forward(proj.forward(o));                // [L, r]
}

AttentionBlock::AttentionBlock(const Decoder2DConfig& cfg, Rng& init_rng, Rng& drop_rng)
    : norm1(cfg.hidden), attn(cfg, init_rng, drop_rng), norm2(cfg.hidden) {
  mlp.add<ag::Linear>(cfg.hidden, cfg.mlp_hidden, true, init_rng);  // 0
  mlp.add<ag::GELU>();                                              // 1
  mlp.add<ag::Dropout>(cfg.p_drop, drop_rng);                       // 2
  mlp.add<ag::Linear>(cfg.mlp_hidden, cfg.hidden, true, init_rng);  // 3
  mlp.add<ag::Dropout>(cfg.p_drop, drop_rng);                       // 4
  register_module("norm1", norm1);
  register_module("attn", attn);
  register_module("norm2", norm2);
  register_module("mlp", mlp);
}

ag::Var AttentionBlock::forward(const ag::Var& x) {
  ag::Var h = ag::add(x, attn.forward(norm1.forward(x)));  // [L, r]
  return ag::add(h, mlp.forward(norm2.forward(h)));        // [L, r]
}

Decoder2D::Decoder2D(const Decoder2DConfig& c, Rng& init_rng, uint64_t dropout_seed)
    : cfg(c), drop_rng_(dropout_seed), attn(c, init_rng, drop_rng_) {
  const int64_t r = c.hidden;
  projection.add<ag::Linear>(c.dim, r, true, init_rng);  // 0
  projection.add<ag::GELU>();                            // 1
  projection.add<ag::LayerNorm>(r);                      // 2
  projection.add<ag::Dropout>(c.p_drop, drop_rng_);      // 3
  projection.add<ag::Linear>(r, r, true, init_rng);      // 4
  projection.add<ag::GELU>();                            // 5
  projection.add<ag::LayerNorm>(r);                      // 6

  conv_decoder.add<ag::ConvTranspose2d>(r, c.conv1, 3, 1, 1, true, init_rng);        // 0
  conv_decoder.add<ag::BatchNorm2d>(c.conv1);                                        // 1
  conv_decoder.add<ag::GELU>();                                                      // 2
  conv_decoder.add<ag::ConvTranspose2d>(c.conv1, c.conv2, 3, 1, 1, true, init_rng);  // 3
  conv_decoder.add<ag::BatchNorm2d>(c.conv2);                                        // 4
  conv_decoder.add<ag::GELU>();                                                      // 5
  conv_decoder.add<ag::ConvTranspose2d>(c.conv2, r, 3, 1, 1, true, init_rng);        // 6
  conv_decoder.add<ag::BatchNorm2d>(r);                                              // 7
  conv_decoder.add<ag::GELU>();                                                      // 8

  reconstruct.add<ag::Linear>(r, c.rec_hidden, true, init_rng);      // 0
  reconstruct.add<ag::GELU>();                                       // 1
  reconstruct.add<ag::Dropout>(c.p_drop, drop_rng_);                 // 2
  reconstruct.add<ag::Linear>(c.rec_hidden, c.dim, true, init_rng);  // 3
  reconstruct.add<ag::LayerNorm>(c.dim);                             // 4

  register_module("projection", projection);
  register_module("attn", attn);
  register_module("conv_decoder", conv_decoder);
  register_module("reconstruct", reconstruct);
}

void Decoder2D::set_dropout(float p) {
  dynamic_cast<ag::Dropout&>(projection[3]).p = p;
  attn.attn.p_drop = p;
  attn.attn.proj_drop.p = p;
  dynamic_cast<ag::Dropout&>(attn.mlp[2]).p = p;
  dynamic_cast<ag::Dropout&>(attn.mlp[4]).p = p;
  dynamic_cast<ag::Dropout&>(reconstruct[2]).p = p;
}

ag::Var Decoder2D::forward(const ag::Var& x) {
  return forward_rows(x, {});
}

ag::Var Decoder2D::forward_rows(const ag::Var& x, const std::vector<int64_t>& rows) {
  CMDR_CHECK(x.shape().size() == 2 && x.shape()[1] == cfg.dim, "Decoder2D: x ",
             shape_str(x.shape()), ": expected [S², ", cfg.dim, "]");
  ag::Var h = projection[0].forward(x);  // [L, r]
  return decode(projection_tail(h), rows);
}

ag::Var Decoder2D::projection_tail(const ag::Var& h0) {
  auto tail = [this](const ag::Var& v) {
    ag::Var h = v;
    for (std::size_t i = 1; i < projection.size(); ++i) h = projection[i].forward(h);
    return h;
  };
  return cfg.recompute ? ag::checkpoint(tail, h0, &drop_rng_) : tail(h0);
}

ag::Var Decoder2D::forward_sparse(const std::shared_ptr<const ops::CsrMatrix>& u,
                                  const ag::Var& tokens, const std::vector<int64_t>& rows) {
  CMDR_CHECK(tokens.shape().size() == 2 && tokens.shape()[1] == cfg.dim, "Decoder2D: tokens ",
             shape_str(tokens.shape()), ": expected [g², ", cfg.dim, "]");
  ag::Var h = linear_after_operator(dynamic_cast<ag::Linear&>(projection[0]), u, tokens);
  return decode(projection_tail(h), rows);  // [L, r]
}

ag::Var Decoder2D::decode(const ag::Var& h_in, const std::vector<int64_t>& rows) {
  const int64_t len = h_in.shape()[0];
  const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(len))));
  CMDR_CHECK(side * side == len, "Decoder2D: ", len, " tokens is not a square S×S grid");
  const int64_t r = cfg.hidden;
  auto block = [this](const ag::Var& v) { return attn.forward(v); };
  ag::Var h = cfg.recompute ? ag::checkpoint(block, h_in, &drop_rng_) : block(h_in);  // [L, r]
  // Tokens -> r×S×S image (token t = row-major pixel), decode, and back to tokens.
  ag::Var img = ag::permute(ag::reshape(h, {1, side, side, r}), {0, 3, 1, 2});  // [1,r,S,S]
  img = conv_decoder.forward(img);                                              // [1,r,S,S]
  h = ag::reshape(ag::permute(img, {0, 2, 3, 1}), {len, r});                    // [L, r]
  if (!rows.empty()) h = ag::index_select(h, rows);                             // [n, r]
  return reconstruct.forward(h);                                                // [L or n, dim]
}

}  // namespace cmdr::models
