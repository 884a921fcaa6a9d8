#pragma once
// SHA-256 (FIPS 180-4), streaming. Used by `cmdr-iad inspect` and for the weights <->
// checkpoint hashes (a checkpoint records the SHA-256 of the extractor files it was made with).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace cmdr {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t n);
  void update(const std::string& s) { update(s.data(), s.size()); }
  // Finishes the hash; the object must not be updated afterwards (reset() to reuse).
  std::array<uint8_t, 32> digest();
  std::string hex_digest();  // 64 lowercase hex characters
  void reset();

 private:
  void block(const uint8_t* p);
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
