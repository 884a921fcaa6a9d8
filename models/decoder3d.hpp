#pragma once
// Decoder3D (SPEC 5.3): a bottleneck along the POSITION axis (Linear L → L/32), five
// stride-2 transposed 1-d convolutions back to length L, and squeeze-excitation channel
// attention. Member names are the PyTorch checkpoint names (projection, decoder, attention).
#include <array>
#include <cstdint>
#include <memory>

#include "autograd/modules.hpp"
#include "engine/rng.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

// Widths. spec(side) gives SPEC 5.3's (C 1152, decoder 768/512/256/128, attention 144);
// tests use reduced widths with the same structure.
struct Decoder3DConfig {
  int64_t length = 224 * 224;                         // L = S², divisible by 32
  int64_t channels = 1152;                            // C
  std::array<int64_t, 4> widths{768, 512, 256, 128};  // decoder.0/3/6/9 outputs
  int64_t att_hidden = 144;                           // attention.1 output
  float p_drop = 0.1f;
  static Decoder3DConfig spec(int64_t side) {
    Decoder3DConfig c;
    c.length = side * side;
    return c;
  }
};

// attention.0: mean over the length axis, [B, C, L] -> [B, C, 1] (AdaptiveAvgPool1d(1)).
class MeanOverLength : public ag::Layer {
 public:
  ag::Var forward(const ag::Var& x) override { return ag::mean(x, 2, /*keepdim=*/true); }
};

class Decoder3D : public ag::Module {
 public:
  Decoder3D(const Decoder3DConfig& cfg, Rng& init_rng, uint64_t dropout_seed);
  // x [L, C] -> [L, C]
  ag::Var forward(const ag::Var& x);
  // SPEC 10: x = P·g (P [L, G] constant, g [G, C]); `projection.0` (over positions) runs
  // as (W·P)·g, never forming x. -> [L, C], = forward(P·g) up to float rounding.
  ag::Var forward_sparse(const std::shared_ptr<const ops::CsrMatrix>& p, const ag::Var& g);
  void set_dropout(float p);
  void reseed_dropout(uint64_t seed) { drop_rng_ = Rng(seed); }

  const Decoder3DConfig cfg;

 private:
  // Everything after `projection`: h [1, C, L/32] -> [L, C].
  ag::Var decode(const ag::Var& h);

 public:
 private:
  Rng drop_rng_;  // declared before the layers that hold a reference to it

 public:
  ag::Sequential projection;  // along positions: [0 Linear(L→L/32), 1 GELU, 2 LN(L/32),
                              //  3 Drop, 4 Linear(L/32→L/32), 5 GELU, 6 LN(L/32)]
  ag::Sequential decoder;     // ConvT1d(k4, s2, p1) ×5 doubling the length, BN1d + GELU
                              // after the first four, Tanh after the last (index 13)
  ag::Sequential attention;   // [0 mean over L, 1 Conv1d(C→a,1), 2 ReLU, 3 Conv1d(a→C,1),
                              //  4 Sigmoid]
};

}  // namespace cmdr::models
