#pragma once
// 64-byte aligned float storage with a process-wide tracked allocator.
// memory_stats() reports current and peak bytes held by all tensors, so every command can
// state its peak (DEVELOPERS.md: "know your peak").
#include <cstddef>
#include <cstdint>
#include <memory>

namespace cmdr {

struct MemoryStats {
  int64_t current_bytes = 0;
  int64_t peak_bytes = 0;
  int64_t allocations = 0;  // number of live-or-dead allocations made since start/reset
};

MemoryStats memory_stats();
// Resets the peak to the current value (to measure the peak of one phase).
void reset_peak_memory();

constexpr std::size_t kAlignment = 64;

// Owns `count` floats, 64-byte aligned, zero-initialised only on request.
class Storage {
 public:
  explicit Storage(int64_t count, bool zero = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  float* data() { return data_; }
  const float* data() const { return data_; }
  int64_t count() const { return count_; }

 private:
  float* data_ = nullptr;
  int64_t count_ = 0;
};

}  // namespace cmdr
