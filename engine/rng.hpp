#pragma once
// Deterministic seeded RNG (xoshiro256** seeded through splitmix64). One generator per
// purpose (init, dropout, shuffle, RANSAC...), each created from an explicit seed, so the
// same seed gives the same stream on every machine and thread count. Not PyTorch's stream:
// parity tests feed weights and masks from fixtures instead.
#include <cstdint>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr {

// Counter-based draws (issue 8): bits(key, i) is a pure function of (key, i), so a dropout
// mask element can be made — and remade in the backward — by any thread in any order; the
// key is one next_u64() of a module's Rng per call (seeds and checkpointed Rng states keep
// determining the masks). It is the i-th output of a SplitMix64 stream started at key.
inline uint64_t counter_bits(uint64_t key, uint64_t i) {
  uint64_t z = key + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// Element i is kept iff (counter_bits(key, i) >> 32) < keep_threshold(keep): probability
// keep within 2⁻³² (keep = 1 keeps all, keep = 0 none).
inline uint64_t keep_threshold(double keep) {
  if (keep >= 1.0) return uint64_t{1} << 32;
  if (keep <= 0.0) return 0;
  return static_cast<uint64_t>(keep * 4294967296.0);
}
inline bool counter_keep(uint64_t key, uint64_t i, uint64_t threshold) {
  return (counter_bits(key, i) >> 32) < threshold;
}

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
