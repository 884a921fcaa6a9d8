#include "engine/rng.hpp"

#include <cmath>

#include "engine/error.hpp"

namespace cmdr {
namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}
}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform01() {
  return static_cast<double>(next_u64() >> 11) * 0x1.0p-53;
}

float Rng::uniform(float lo, float hi) {
  return lo + static_cast<float>(uniform01() * (static_cast<double>(hi) - lo));
}

double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u1 = 0.0;
  while (u1 <= 0.0) u1 = uniform01();
  double u2 = uniform01();
  double r = std::sqrt(-2.0 * std::log(u1));
  spare_ = r * std::sin(2.0 * M_PI * u2);
  has_spare_ = true;
  return r * std::cos(2.0 * M_PI * u2);
}

int64_t Rng::below(int64_t n) {
  CMDR_CHECK(n > 0, "Rng::below: n must be positive, got ", n);
  const uint64_t un = static_cast<uint64_t>(n);
  const uint64_t limit = UINT64_MAX - UINT64_MAX % un;
  uint64_t x;
  do x = next_u64();
  while (x >= limit);
  return static_cast<int64_t>(x % un);
}

void Rng::fill_bernoulli01(float* out, int64_t n, double p) {
  uint64_t s0 = s_[0], s1 = s_[1], s2 = s_[2], s3 = s_[3];  // next_u64 on locals
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t result = rotl(s1 * 5, 7) * 9;
    const uint64_t t = s1 << 17;
    s2 ^= s0;
    s3 ^= s1;
    s1 ^= s2;
    s0 ^= s3;
    s2 ^= t;
    s3 = rotl(s3, 45);
    out[i] = static_cast<double>(result >> 11) * 0x1.0p-53 < p ? 1.0f : 0.0f;  // uniform01() < p
  }
  s_[0] = s0, s_[1] = s1, s_[2] = s2, s_[3] = s3;
}

bool Rng::bernoulli(double p) {
  return uniform01() < p;
}

void Rng::fill_uniform(Tensor& t, float lo, float hi) {
  Tensor c = t.contiguous();
  float* d = c.data();
  for (int64_t i = 0; i < c.numel(); ++i) d[i] = uniform(lo, hi);
  if (!c.shares_storage(t)) t.copy_(c);
}

void Rng::fill_normal(Tensor& t, float mean, float std) {
  Tensor c = t.contiguous();
  float* d = c.data();
  for (int64_t i = 0; i < c.numel(); ++i) d[i] = static_cast<float>(mean + std * normal());
  if (!c.shares_storage(t)) t.copy_(c);
}

void Rng::fill_trunc_normal(Tensor& t, float std) {
  Tensor c = t.contiguous();
  float* d = c.data();
  for (int64_t i = 0; i < c.numel(); ++i) {
    double v;
    do v = normal();
    while (v < -2.0 || v > 2.0);
    d[i] = static_cast<float>(std * v);
  }
  if (!c.shares_storage(t)) t.copy_(c);
}

}  // namespace cmdr
