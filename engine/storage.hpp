#pragma once
// 64-byte aligned float storage with a process-wide tracked allocator.
// memory_stats() reports current and peak bytes held by all tensors, so every command can
// state its peak (DEVELOPERS.md: "know your peak").
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace cmdr {

struct MemoryStats {
  int64_t current_bytes = 0;  // bytes held by live tensors
  int64_t peak_bytes = 0;     // peak of current_bytes since start / reset_peak_memory()
  int64_t allocations = 0;    // number of allocations made since start
  int64_t cached_bytes = 0;   // freed blocks kept for reuse (not counted in current/peak)
  // Large blocks (>= 1 MiB) that could not be served from the cache and came from the OS
  // allocator (fresh pages: one page fault per 4 KiB when first written), since start.
  int64_t fresh_allocations = 0;
  int64_t fresh_bytes = 0;
};

MemoryStats memory_stats();
// Resets the peak to the current value (to measure the peak of one phase).
void reset_peak_memory();

// Freed blocks of 1 MiB and more are kept and handed out again (best fit: a cached block
// at most 1/4 larger than the request): a fresh large block costs a page fault per 4 KiB,
// which for a 193 MB activation is more than the op computing it (measured: ~100 ms
// alloc+write vs 45 ms gelu). The cache is bounded (default max(2 GiB, 2 × peak live
// tensor bytes); env CMDR_ALLOC_CACHE_MB sets a fixed bound, 0 disables) and releases its least
// recently cached blocks first when full. Contents of reused blocks are unspecified,
// exactly like a fresh allocation. current/peak count the bytes tensors asked for.
// Fresh blocks of 2 MiB and more are huge-page aligned and madvised MADV_HUGEPAGE (one fault
// per 2 MiB on first touch; env CMDR_HUGE_PAGES=0 turns it off).
void release_cached_memory();

constexpr std::size_t kAlignment = 64;

// Versioning for caches of data derived from a storage's contents (ops/ keeps weights
// re-laid out or rounded to bf16 for oneDNN, issue 8): a cache records (id(), version())
// when it reads a storage; every later non-const data() call starts a new version, so a
// lookup with a different version is a miss. Only storages a cache has watched pay for it
// (one relaxed atomic load per non-const data() otherwise). Rule for writers: take the
// pointer with non-const data() for each write phase; do not keep it across op calls.
// When a watched storage is destroyed, the release hook (one per process, set by the
// cache's owner) gets its id so the cache can drop its entries.
using StorageReleaseHook = void (*)(uint64_t storage_id);
void set_storage_release_hook(StorageReleaseHook hook);

// Owns `count` floats, 64-byte aligned, zero-initialised only on request.
class Storage {
 public:
  explicit Storage(int64_t count, bool zero = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  float* data() {  // a (potential) write: ends the version a cache has seen
    if (watched_.load(std::memory_order_relaxed)) new_version();
    return data_;
  }
  const float* data() const { return data_; }
  int64_t count() const { return count_; }

  uint64_t id() const { return id_; }  // unique in the process, never reused
  // The current version, and marks the storage watched (see StorageReleaseHook above).
  uint64_t watch_version() const;

 private:
  void new_version();
  uint64_t id_;
  mutable std::atomic<uint64_t> version_{0};
  mutable std::atomic<bool> watched_{false};
  mutable std::atomic<bool> ever_watched_{false};
  float* data_ = nullptr;
  int64_t count_ = 0;
  std::size_t capacity_ = 0;  // bytes of the block (>= count·4; a reused block may be larger)
};

}  // namespace cmdr
