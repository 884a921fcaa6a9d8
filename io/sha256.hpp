#pragma once
// SHA-256 (FIPS 180-4), streaming. Used by `cmdr-iad inspect` and for the weights <->
// checkpoint hashes (a checkpoint records the SHA-256 of the extractor files it was made with).
// Two compression kernels with bit-identical results: the portable one (FIPS 180-4 6.2.2)
// and, on x86 CPUs with the SHA extensions (SHA-NI, checked at run time with CPUID), one
// using the sha256rnds2 / sha256msg1 / sha256msg2 instructions (~5-10x faster; it makes
// hashing the 430 MB of extractor weights at every load cheap).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace cmdr {

// Which compression kernel a Sha256 uses. Auto = ShaNi when the CPU has it, else Portable.
enum class Sha256Impl { Auto, Portable, ShaNi };
// True when `impl` can run on this CPU (Auto and Portable always can).
bool sha256_impl_available(Sha256Impl impl);
// The kernel Auto resolves to here ("sha-ni" or "portable"; for logs and benchmarks).
const char* sha256_auto_impl_name();

class Sha256 {
 public:
  // Throws cmdr::Error when `impl` is not available on this CPU.
  explicit Sha256(Sha256Impl impl = Sha256Impl::Auto);
  void update(const void* data, std::size_t n);
  void update(const std::string& s) { update(s.data(), s.size()); }
  // Finishes the hash; the object must not be updated afterwards (reset() to reuse).
  std::array<uint8_t, 32> digest();
  std::string hex_digest();  // 64 lowercase hex characters
  void reset();

 private:
  using Compress = void (*)(uint32_t* h, const uint8_t* p, std::size_t blocks);
  Compress compress_;
  uint32_t h_[8];
  uint8_t buf_[64];
  std::size_t buf_len_ = 0;
  uint64_t total_ = 0;  // bytes hashed so far
  bool finished_ = false;
};

std::string sha256_hex(const void* data, std::size_t n);
std::string sha256_hex(const std::string& s);
// Streams the file in 1 MiB chunks (constant memory). Throws cmdr::Error naming the path.
std::string sha256_file_hex(const std::string& path);
std::string to_hex(const uint8_t* p, std::size_t n);

}  // namespace cmdr
