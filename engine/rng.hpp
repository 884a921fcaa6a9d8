#pragma once
// Deterministic seeded RNG (xoshiro256** seeded through splitmix64). One generator per
// purpose (init, dropout, shuffle, RANSAC...), each created from an explicit seed, so the
// same seed gives the same stream on every machine and thread count. Not PyTorch's stream:
// parity tests feed weights and masks from fixtures instead.
#include <cstdint>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next_u64();
  uint32_t next_u32() { return static_cast<uint32_t>(next_u64() >> 32); }
  double uniform01();                 // [0, 1), 53 random bits
  float uniform(float lo, float hi);  // [lo, hi)
  double normal();                    // standard normal (Box-Muller, cached pair)
  int64_t below(int64_t n);           // uniform integer in [0, n), unbiased
  bool bernoulli(double p);           // true with probability p
  template <typename T>
  void shuffle(std::vector<T>& v) {  // Fisher-Yates
    for (int64_t i = static_cast<int64_t>(v.size()) - 1; i > 0; --i)
      std::swap(v[i], v[below(i + 1)]);
  }

  // Fill helpers (row-major order, so results do not depend on the thread count).
  void fill_uniform(Tensor& t, float lo, float hi);
  void fill_normal(Tensor& t, float mean, float std);
  // PyTorch's trunc_normal_(std, a=-2std, b=2std) by rejection (timm-style init).
  void fill_trunc_normal(Tensor& t, float std);
  // out[i] = bernoulli(p) ? 1 : 0 for i in [0, n): the same draws, in order, as n calls of
  // bernoulli(p), with the generator inlined (dropout masks: ~3× faster than the calls).
  void fill_bernoulli01(float* out, int64_t n, double p);

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace cmdr
