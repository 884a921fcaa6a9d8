#pragma once
// FeatureMappingMLP (SPEC 5.1): the cross-modal mapping networks, map2Dto3D (768→1152) and
// map3Dto2D (1152→768). Members carry the PyTorch checkpoint names (`input`, `projection`,
// `output`), so state_dict() keys equal the reference module's.
#include <cstdint>
#include <memory>

#include "autograd/modules.hpp"
#include "engine/rng.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

// SPEC 10: a Linear applied to rows of A·x0 (A a constant sparse operator, e.g. bilinear
// upsampling U or the 3D assembly P), computed as A·(x0·Wᵀ) + b: the Linear runs on x0's
// K rows instead of A's. The bias is added after A (P's rows do not sum to 1).
// a [n, K], x0 [K, in] -> [n, out]; gradients for the weight, bias and x0 as the literal
// lin.forward(A·x0).
ag::Var linear_after_operator(ag::Linear& lin, const std::shared_ptr<const ops::CsrMatrix>& a,
                              const ag::Var& x0);

class FeatureMappingMLP : public ag::Module {
 public:
  // in/out: feature widths; hidden r = (in + out) / 2. init_rng draws PyTorch's default
  // Linear init; dropout_seed seeds this network's own dropout stream; p_drop = SPEC's 0.1.
  FeatureMappingMLP(int64_t in, int64_t out, Rng& init_rng, uint64_t dropout_seed,
                    float p_drop = 0.1f);
  // x [N, in] -> [N, out], per position.
  ag::Var forward(const ag::Var& x);
  // The same on x = A·x0 (SPEC 10 restructuring of `input`): a [n, K], x0 [K, in] -> [n, out],
  // row i = forward(A·x0)[i] up to float rounding. Select rows of A to restrict positions.
  ag::Var forward_sparse(const std::shared_ptr<const ops::CsrMatrix>& a, const ag::Var& x0);
  void set_dropout(float p);  // 0 disables dropout (training-parity runs)
  void reseed_dropout(uint64_t seed) { drop_rng_ = Rng(seed); }

  const int64_t in_dim, out_dim, hidden;

 private:
  Rng drop_rng_;  // declared before the layers that hold a reference to it

 public:
  ag::Linear input;           // Linear(in → r)
  ag::Sequential projection;  // [0 Linear(r→r), 1 GELU, 2 LN(r), 3 Drop, 4 Linear, 5 GELU, 6 LN]
  ag::Linear output;          // Linear(r → out)

 private:
  ag::Dropout* drop_ = nullptr;
};

}  // namespace cmdr::models
