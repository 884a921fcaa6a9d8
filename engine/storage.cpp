#include "engine/storage.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>

#include "engine/error.hpp"

namespace cmdr {
namespace {
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_count{0};
std::atomic<int64_t> g_fresh_count{0};
std::atomic<int64_t> g_fresh_bytes{0};
std::atomic<uint64_t> g_next_id{1};
std::atomic<StorageReleaseHook> g_release_hook{nullptr};

constexpr std::size_t kCacheMin = std::size_t{1} << 20;

// Fresh blocks of 2 MiB and more are 2 MiB aligned, rounded up to whole 2 MiB and marked
// MADV_HUGEPAGE (transparent huge pages; Debian's default mode is `madvise`): first touch
// of a fresh activation then costs one fault per 2 MiB instead of one per 4 KiB. Measured
// (issue 8): a cold `detect` at S = 224 took 1.4 M minor faults (5.6 GB of 4 KiB pages) and
// ran its networks 2.2× slower than the warm repeat. Env CMDR_HUGE_PAGES=0 turns it off
// (side-by-side measurement); where THP is `never` madvise is a harmless no-op.
constexpr std::size_t kHugePage = std::size_t{2} << 20;
bool huge_pages_on() {
  static const bool on = [] {
    const char* e = std::getenv("CMDR_HUGE_PAGES");
    return !(e != nullptr && std::string(e) == "0");
  }();
  return on;
}
std::size_t fresh_capacity(std::size_t bytes) {
  if (bytes < kHugePage || !huge_pages_on()) return bytes;
  return (bytes + kHugePage - 1) / kHugePage * kHugePage;
}
void* fresh_block(std::size_t* cap) {
  if (*cap < kHugePage || !huge_pages_on()) return std::aligned_alloc(kAlignment, *cap);
  const std::size_t rounded = fresh_capacity(*cap);
  void* p = std::aligned_alloc(kHugePage, rounded);
  if (p == nullptr) return nullptr;
  *cap = rounded;
  (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure leaves 4 KiB pages
  return p;
}

// Cached blocks by capacity. take(sz) is best fit: the smallest cached block of capacity
// in [sz, sz + sz/4], so a request whose size varies a little from step to step (e.g. the
// number of valid rows) still reuses a block; at most 1/4 of a reused block is slack.
// Eviction (cache full) frees the least recently cached blocks first: blocks of the current
// phase (training step / inference) stay.
struct BlockCache {
  struct Block {
    void* p;
    uint64_t seq;  // order in which blocks were given back (LRU eviction)
  };
  std::mutex mu;
  std::multimap<std::size_t, Block> free;  // capacity -> block
  std::size_t bytes = 0;
  uint64_t seq = 0;
  bool env_limit = false;
  std::size_t limit;
  BlockCache() {
    const char* env = std::getenv("CMDR_ALLOC_CACHE_MB");
    env_limit = env != nullptr;
    limit = env ? static_cast<std::size_t>(std::strtoull(env, nullptr, 10)) << 20
                : std::size_t{2} << 30;
  }
  ~BlockCache() { clear(); }
  void clear() {
    std::lock_guard<std::mutex> lk(mu);
    for (auto& [sz, b] : free) std::free(b.p);
    free.clear();
    bytes = 0;
  }
  // Returns a block of capacity >= sz (stored in *cap), or nullptr.
  void* take(std::size_t sz, std::size_t* cap) {
    if (sz < kCacheMin) return nullptr;
    std::lock_guard<std::mutex> lk(mu);
    auto it = free.lower_bound(sz);
    // A fresh block of this request would be rounded to whole huge pages: such a block
    // must fit it again whatever the rounding slack.
    const std::size_t hi = std::max(sz + sz / 4, fresh_capacity(sz));
    if (it == free.end() || it->first > hi) return nullptr;
    void* p = it->second.p;
    *cap = it->first;
    bytes -= it->first;
    free.erase(it);
    return p;
  }
  // Bound: CMDR_ALLOC_CACHE_MB if set, else max(2 GiB, 2 × peak live tensor bytes). Blocks
  // of many sizes (four networks) fragment the cache: a steady training step at S = 112
  // (live peak 1.44 GiB) needs ~2.4 GiB cached to take no fresh block (measured with
  // bench_memory; with a bound of 1× peak it took 77 MiB fresh and 142k page faults per
  // step). The cache is full only between phases, when little is live, so resident memory
  // stays near live peak + bound.
  std::size_t bound(int64_t peak) const {
    return env_limit ? limit
                     : std::max(limit, 2 * static_cast<std::size_t>(std::max<int64_t>(peak, 0)));
  }
  bool give(void* p, std::size_t cap, int64_t peak) {
    const std::size_t lim = bound(peak);
    if (cap < kCacheMin || cap > lim) return false;
    std::lock_guard<std::mutex> lk(mu);
    while (bytes + cap > lim && !free.empty()) {  // evict the least recently cached first
      auto oldest = free.begin();
      for (auto it = free.begin(); it != free.end(); ++it)
        if (it->second.seq < oldest->second.seq) oldest = it;
      std::free(oldest->second.p);
      bytes -= oldest->first;
      free.erase(oldest);
    }
    if (bytes + cap > lim) return false;
    free.emplace(cap, Block{p, seq++});
    bytes += cap;
    return true;
  }
};
BlockCache& cache() {
  static BlockCache c;
  return c;
}

void track(int64_t delta) {
  int64_t now = g_current.fetch_add(delta) + delta;
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

MemoryStats memory_stats() {
  int64_t cached;
  {
    std::lock_guard<std::mutex> lk(cache().mu);
    cached = static_cast<int64_t>(cache().bytes);
  }
  return {g_current.load(), g_peak.load(),        g_count.load(),
          cached,           g_fresh_count.load(), g_fresh_bytes.load()};
}

void release_cached_memory() {
  cache().clear();
}

namespace {
std::size_t rounded_bytes(int64_t count) {
  std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  return rounded == 0 ? kAlignment : rounded;
}
}  // namespace

void reset_peak_memory() {
  g_peak.store(g_current.load());
}

void set_storage_release_hook(StorageReleaseHook hook) {
  g_release_hook.store(hook);
}

uint64_t Storage::watch_version() const {
  ever_watched_.store(true, std::memory_order_relaxed);
  watched_.store(true, std::memory_order_release);
  return version_.load(std::memory_order_acquire);
}

void Storage::new_version() {
  watched_.store(false, std::memory_order_relaxed);
  version_.fetch_add(1, std::memory_order_acq_rel);
}

Storage::Storage(int64_t count, bool zero) : id_(g_next_id.fetch_add(1)), count_(count) {
  CMDR_CHECK(count >= 0, "Storage: negative element count ", count);
  std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  capacity_ = rounded_bytes(count);
  data_ = static_cast<float*>(cache().take(capacity_, &capacity_));
  if (!data_) {
    data_ = static_cast<float*>(fresh_block(&capacity_));
    if (capacity_ >= kCacheMin) {
      g_fresh_count.fetch_add(1);
      g_fresh_bytes.fetch_add(static_cast<int64_t>(capacity_));
    }
  }
  if (!data_) fail("Storage: out of memory allocating ", bytes, " bytes");
  if (zero) std::memset(data_, 0, bytes);
  track(static_cast<int64_t>(bytes));
  g_count.fetch_add(1);
}

Storage::~Storage() {
  if (ever_watched_.load(std::memory_order_relaxed))
    if (StorageReleaseHook h = g_release_hook.load()) h(id_);
  if (!cache().give(data_, capacity_, g_peak.load())) std::free(data_);
  track(-count_ * static_cast<int64_t>(sizeof(float)));
}

}  // namespace cmdr
