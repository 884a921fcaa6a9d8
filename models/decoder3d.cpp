#include "models/decoder3d.hpp"

#include "engine/error.hpp"

namespace cmdr::models {

Decoder3D::Decoder3D(const Decoder3DConfig& c, Rng& init_rng, uint64_t dropout_seed)
    : cfg(c), drop_rng_(dropout_seed) {
  // Five stride-2 layers double L/32 back to L (SPEC 5.3).
  CMDR_CHECK(c.length > 0 && c.length % 32 == 0, "Decoder3D: length L = ", c.length,
             " must be a positive multiple of 32 (S² divisible by 32)");
  const int64_t l = c.length, lb = c.length / 32;
  projection.add<ag::Linear>(l, lb, true, init_rng);   // 0
  projection.add<ag::GELU>();                          // 1
  projection.add<ag::LayerNorm>(lb);                   // 2
  projection.add<ag::Dropout>(c.p_drop, drop_rng_);    // 3
  projection.add<ag::Linear>(lb, lb, true, init_rng);  // 4
  projection.add<ag::GELU>();                          // 5
  projection.add<ag::LayerNorm>(lb);                   // 6

  int64_t in = c.channels;
  for (int64_t w : c.widths) {  // indices 3i, 3i+1, 3i+2
    decoder.add<ag::ConvTranspose1d>(in, w, 4, 2, 1, true, init_rng);
    decoder.add<ag::BatchNorm1d>(w);
    decoder.add<ag::GELU>();
    in = w;
  }
  decoder.add<ag::ConvTranspose1d>(in, c.channels, 4, 2, 1, true, init_rng);  // 12
  decoder.add<ag::Tanh>();                                                    // 13

  attention.add<MeanOverLength>();                                               // 0
  attention.add<ag::Conv1d>(c.channels, c.att_hidden, 1, 1, 0, true, init_rng);  // 1
  attention.add<ag::ReLU>();                                                     // 2
  attention.add<ag::Conv1d>(c.att_hidden, c.channels, 1, 1, 0, true, init_rng);  // 3
  attention.add<ag::Sigmoid>();                                                  // 4

  register_module("projection", projection);
  register_module("decoder", decoder);
  register_module("attention", attention);
}

void Decoder3D::set_dropout(float p) {
  dynamic_cast<ag::Dropout&>(projection[3]).p = p;
}

ag::Var Decoder3D::forward(const ag::Var& x) {
  CMDR_CHECK(x.shape().size() == 2 && x.shape()[0] == cfg.length && x.shape()[1] == cfg.channels,
             "Decoder3D: x ", shape_str(x.shape()), ": expected [", cfg.length, ", ", cfg.channels,
             "] (L = S², C)");
  const int64_t l = cfg.length, c = cfg.channels;
  ag::Var h = ag::permute(ag::reshape(x, {1, l, c}), {0, 2, 1});  // [1, C, L]
  return decode(projection.forward(h));                           // [1, C, L/32] in
}

ag::Var Decoder3D::forward_sparse(const std::shared_ptr<const ops::CsrMatrix>& p,
                                  const ag::Var& g) {
  CMDR_CHECK(p != nullptr && p->rows == cfg.length && g.shape().size() == 2 &&
                 g.shape()[0] == p->cols && g.shape()[1] == cfg.channels,
             "Decoder3D: operator [", p ? p->rows : 0, ", ", p ? p->cols : 0, "] and g ",
             shape_str(g.shape()), ": expected [L = ", cfg.length, ", G] and [G, ", cfg.channels,
             "]");
  const int64_t c = cfg.channels, lb = cfg.length / 32;
  auto& lin = dynamic_cast<ag::Linear&>(projection[0]);
  // projection.0 on xᵀ = (P·g)ᵀ: y[c, j] = Σ_l W[j, l]·(P·g)[l, c] + b[j] = (gᵀ·(W·P)ᵀ)[c, j] +
  // b[j].
  ag::Var wp = ag::dense_spmm(lin.weight, p);                    // [L/32, G]
  ag::Var h = ag::linear(ag::permute(g, {1, 0}), wp, lin.bias);  // [C, L/32]
  h = ag::reshape(h, {1, c, lb});                                // [1, C, L/32]
  for (std::size_t i = 1; i < projection.size(); ++i) h = projection[i].forward(h);
  return decode(h);
}

ag::Var Decoder3D::decode(const ag::Var& h_in) {
  const int64_t l = cfg.length, c = cfg.channels;
  ag::Var h = decoder.forward(h_in);                      // [1, C, L]
  ag::Var a = attention.forward(h);                       // [1, C, 1]
  h = ag::mul(h, a);                                      // [1, C, L], per channel
  return ag::reshape(ag::permute(h, {0, 2, 1}), {l, c});  // [L, C]
}

}  // namespace cmdr::models
