#pragma once
// Counter-based hash generator shared bit-exactly with tools/golden/extractors.py
// (hash_uniform / hash_param): lets the full-size extractor tests use weights and inputs
// that both sides generate, so the fixture only carries selected outputs.
//   u_i = mix(fnv1a64(name) + (i + 1)·0x9E3779B97F4A7C15); top 24 bits -> [-1, 1) in float32.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "models/weights.hpp"

namespace cmdr::test {

inline uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

inline Tensor hash_uniform(const std::string& name, const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  const uint64_t key = fnv1a64(name);
  float* d = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) {
    uint64_t z = key + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    d[i] = static_cast<float>(z >> 40) * 0x1p-23f - 1.0f;
  }
  return t;
}

// Same rules as hash_param(kind) in the script, keyed by the ParamSpec's init rule.
inline void fill_hash(const std::vector<models::ParamSpec>& specs) {
  for (const auto& s : specs) {
    Tensor u = hash_uniform(s.name, s.shape);
    float* d = u.data();
    for (int64_t i = 0; i < u.numel(); ++i) {
      switch (s.init) {
        case models::Init::TruncNormal02:
          d[i] = d[i] * 0.034641016f;
          break;
        case models::Init::Zeros:
          d[i] = d[i] * 0.02f;
          break;
        case models::Init::Ones:
          d[i] = 1.0f + d[i] * 0.1f;
          break;
        case models::Init::BnRunningMean:
          d[i] = d[i] * 0.1f;
          break;
        case models::Init::BnRunningVar:
          d[i] = 1.0f + d[i] * 0.5f;
          break;
      }
    }
    *s.target = u;
  }
}

// The synthetic organised cloud of full_cloud() in the script: [3, S, S].
inline Tensor full_cloud(int64_t S = 224) {
  Tensor c = Tensor::zeros({3, S, S});
  float* x = c.data();
  float* y = x + S * S;
  float* z = y + S * S;
  for (int64_t i = 0; i < S; ++i)
    for (int64_t j = 0; j < S; ++j) {
      const int64_t a = 2 * i - (S - 1), b = 2 * j - (S - 1);
      if (a * a + b * b >= (2 * 113) * (2 * 113)) continue;
      const float xv = static_cast<float>(b) * 0.00025f, yv = static_cast<float>(a) * 0.00025f;
      const float bump = static_cast<float>((i * 7 + j * 13) % 17) * 1e-5f;
      x[i * S + j] = xv;
      y[i * S + j] = yv;
      z[i * S + j] = ((xv * xv + yv * yv) * 0.5f + 0.7f) + bump;
    }
  return c;
}

}  // namespace cmdr::test
