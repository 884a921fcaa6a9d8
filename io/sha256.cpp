#include "io/sha256.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define CMDR_SHA256_X86 1
#endif

#include "engine/error.hpp"

namespace cmdr {
namespace {
// FIPS 180-4 section 4.2.2: first 32 bits of the fractional parts of the cube roots of the
// first 64 primes.
constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
// Section 5.3.3: initial hash value (square roots of the first 8 primes).
constexpr uint32_t kH0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t rotr(uint32_t x, int n) {
  return (x >> n) | (x << (32 - n));
}

// Section 6.2.2: `blocks` consecutive 512-bit blocks into h[8].
void compress_portable(uint32_t* hs, const uint8_t* p, std::size_t blocks) {
  for (; blocks > 0; --blocks, p += 64) {
    uint32_t w[64];
    for (int t = 0; t < 16; ++t)
      w[t] = (uint32_t(p[4 * t]) << 24) | (uint32_t(p[4 * t + 1]) << 16) |
             (uint32_t(p[4 * t + 2]) << 8) | uint32_t(p[4 * t + 3]);
    for (int t = 16; t < 64; ++t) {
      const uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = hs[0], b = hs[1], c = hs[2], d = hs[3], e = hs[4], f = hs[5], g = hs[6], h = hs[7];
    for (int t = 0; t < 64; ++t) {
      const uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
      const uint32_t ch = (e & f) ^ (~e & g);
      const uint32_t t1 = h + S1 + ch + kK[t] + w[t];
      const uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
      const uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
      const uint32_t t2 = S0 + maj;
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    hs[0] += a, hs[1] += b, hs[2] += c, hs[3] += d, hs[4] += e, hs[5] += f, hs[6] += g, hs[7] += h;
  }
}

#ifdef CMDR_SHA256_X86
// The same computation with the Intel SHA extensions. The state is kept as the two
// registers the instructions use, ABEF and CDGH; each sha256rnds2 does two rounds, taking
// W[t] + K[t] in the low 64 bits of its message operand. Message schedule (FIPS 180-4 6.2.2
// step 1) in groups of four words: msg1 adds sigma0 of W[t-15], msg2 adds sigma1 of W[t-2]
// after the W[t-7] terms are added with alignr. Compiled for these instructions only; called
// only after the CPUID check in has_shani().
__attribute__((target("sha,sse4.1,ssse3"))) void compress_shani(uint32_t* hs, const uint8_t* p,
                                                                std::size_t blocks) {
  // Byte order within each 32-bit word: big-endian message words (section 3.1).
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hs));      // DCBA
  __m128i st1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hs + 4));  // HGFE
  tmp = _mm_shuffle_epi32(tmp, 0xB1);                                       // CDAB
  st1 = _mm_shuffle_epi32(st1, 0x1B);                                       // EFGH
  __m128i st0 = _mm_alignr_epi8(tmp, st1, 8);                               // ABEF
  st1 = _mm_blend_epi16(st1, tmp, 0xF0);                                    // CDGH
  for (; blocks > 0; --blocks, p += 64) {
    const __m128i abef = st0, cdgh = st1;
    __m128i m[4];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {  // rounds 4i .. 4i+3
      if (i < 4)
        m[i] =
            _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), bswap);
      __m128i msg =
          _mm_add_epi32(m[i % 4], _mm_loadu_si128(reinterpret_cast<const __m128i*>(kK + 4 * i)));
      st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
      if (i >= 3 && i <= 14) {  // finish W for group i+1
        const __m128i w7 = _mm_alignr_epi8(m[i % 4], m[(i + 3) % 4], 4);
        m[(i + 1) % 4] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(i + 1) % 4], w7), m[i % 4]);
      }
      msg = _mm_shuffle_epi32(msg, 0x0E);
      st0 = _mm_sha256rnds2_epu32(st0, st1, msg);
      if (i >= 1 && i <= 12)  // start W for group i+3
        m[(i + 3) % 4] = _mm_sha256msg1_epu32(m[(i + 3) % 4], m[i % 4]);
    }
    st0 = _mm_add_epi32(st0, abef);
    st1 = _mm_add_epi32(st1, cdgh);
  }
  tmp = _mm_shuffle_epi32(st0, 0x1B);     // FEBA
  st1 = _mm_shuffle_epi32(st1, 0xB1);     // DCHG
  st0 = _mm_blend_epi16(tmp, st1, 0xF0);  // DCBA
  st1 = _mm_alignr_epi8(st1, tmp, 8);     // HGFE
  _mm_storeu_si128(reinterpret_cast<__m128i*>(hs), st0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(hs + 4), st1);
}

// CPUID: leaf 7 EBX bit 29 = SHA; leaf 1 ECX bit 19 = SSE4.1, bit 9 = SSSE3.
bool has_shani() {
  static const bool yes = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool sse = (c & (1u << 19)) && (c & (1u << 9));
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return sse && (b & (1u << 29));
  }();
  return yes;
}
#else
bool has_shani() {
  return false;
}
#endif

}  // namespace

bool sha256_impl_available(Sha256Impl impl) {
  return impl != Sha256Impl::ShaNi || has_shani();
}

const char* sha256_auto_impl_name() {
  return has_shani() ? "sha-ni" : "portable";
}

Sha256::Sha256(Sha256Impl impl) {
  CMDR_CHECK(sha256_impl_available(impl), "sha256: the SHA-NI kernel was requested but this CPU ",
             "lacks the SHA extensions");
#ifdef CMDR_SHA256_X86
  compress_ = impl == Sha256Impl::Portable || !has_shani() ? compress_portable : compress_shani;
#else
  compress_ = compress_portable;
#endif
  reset();
}

void Sha256::reset() {
  std::memcpy(h_, kH0, sizeof h_);
  buf_len_ = 0;
  total_ = 0;
  finished_ = false;
}

void Sha256::update(const void* data, std::size_t n) {
  CMDR_CHECK(!finished_, "sha256: update() after digest() (call reset() first)");
  const auto* p = static_cast<const uint8_t*>(data);
  total_ += n;
  if (buf_len_ > 0) {
    const std::size_t take = std::min<std::size_t>(n, 64 - buf_len_);
    std::memcpy(buf_ + buf_len_, p, take);
    buf_len_ += take;
    p += take;
    n -= take;
    if (buf_len_ < 64) return;
    compress_(h_, buf_, 1);
    buf_len_ = 0;
  }
  if (n >= 64) {
    compress_(h_, p, n / 64);
    p += n / 64 * 64;
    n %= 64;
  }
  if (n) std::memcpy(buf_, p, n);
  buf_len_ = n;
}

std::array<uint8_t, 32> Sha256::digest() {
  CMDR_CHECK(!finished_, "sha256: digest() called twice (call reset() first)");
  // Section 5.1.1 padding: 0x80, zeros, then the message length in bits, big-endian.
  const uint64_t bits = total_ * 8;
  uint8_t pad[72] = {0x80};
  const std::size_t padlen = (buf_len_ < 56 ? 56 : 120) - buf_len_;
  for (int i = 0; i < 8; ++i) pad[padlen + i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
  update(pad, padlen + 8);
  finished_ = true;
  std::array<uint8_t, 32> out{};
  for (int i = 0; i < 8; ++i)
    for (int k = 0; k < 4; ++k) out[4 * i + k] = static_cast<uint8_t>(h_[i] >> (24 - 8 * k));
  return out;
}

std::string to_hex(const uint8_t* p, std::size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    s[2 * i] = d[p[i] >> 4];
    s[2 * i + 1] = d[p[i] & 15];
  }
  return s;
}

std::string Sha256::hex_digest() {
  const auto d = digest();
  return to_hex(d.data(), d.size());
}

std::string sha256_hex(const void* data, std::size_t n) {
  Sha256 s;
  s.update(data, n);
  return s.hex_digest();
}

std::string sha256_hex(const std::string& s) {
  return sha256_hex(s.data(), s.size());
}

std::string sha256_file_hex(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  CMDR_CHECK(f, "sha256: cannot open '", path, "' (", std::strerror(errno), ")");
  Sha256 s;
  std::vector<uint8_t> chunk(1 << 20);
  for (;;) {
    const std::size_t got = std::fread(chunk.data(), 1, chunk.size(), f.get());
    if (got) s.update(chunk.data(), got);
    if (got < chunk.size()) {
      CMDR_CHECK(!std::ferror(f.get()), "sha256: read error on '", path, "'");
      break;
    }
  }
  return s.hex_digest();
}

}  // namespace cmdr
