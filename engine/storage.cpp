#include "engine/storage.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "engine/error.hpp"

namespace cmdr {
namespace {
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_count{0};

constexpr std::size_t kCacheMin = std::size_t{1} << 20;

struct BlockCache {
  std::mutex mu;
  std::map<std::size_t, std::vector<void*>> free;  // rounded size -> blocks
  std::size_t bytes = 0;
  std::size_t limit;
  BlockCache() {
    const char* env = std::getenv("CMDR_ALLOC_CACHE_MB");
    limit = env ? static_cast<std::size_t>(std::strtoull(env, nullptr, 10)) << 20
                : std::size_t{2} << 30;
  }
  ~BlockCache() { clear(); }
  void clear() {
    std::lock_guard<std::mutex> lk(mu);
    for (auto& [sz, v] : free)
      for (void* p : v) std::free(p);
    free.clear();
    bytes = 0;
  }
  void* take(std::size_t sz) {
    if (sz < kCacheMin) return nullptr;
    std::lock_guard<std::mutex> lk(mu);
    auto it = free.find(sz);
    if (it == free.end() || it->second.empty()) return nullptr;
    void* p = it->second.back();
    it->second.pop_back();
    bytes -= sz;
    return p;
  }
  bool give(void* p, std::size_t sz) {
    if (sz < kCacheMin || sz > limit) return false;
    std::lock_guard<std::mutex> lk(mu);
    while (bytes + sz > limit && !free.empty()) {  // evict the largest sizes first
      auto it = std::prev(free.end());
      for (void* q : it->second) std::free(q);
      bytes -= it->first * it->second.size();
      free.erase(it);
    }
    if (bytes + sz > limit) return false;
    free[sz].push_back(p);
    bytes += sz;
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
  return {g_current.load(), g_peak.load(), g_count.load(), cached};
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

Storage::Storage(int64_t count, bool zero) : count_(count) {
  CMDR_CHECK(count >= 0, "Storage: negative element count ", count);
  std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  std::size_t rounded = rounded_bytes(count);
  data_ = static_cast<float*>(cache().take(rounded));
  if (!data_) data_ = static_cast<float*>(std::aligned_alloc(kAlignment, rounded));
  if (!data_) fail("Storage: out of memory allocating ", bytes, " bytes");
  if (zero) std::memset(data_, 0, bytes);
  track(static_cast<int64_t>(bytes));
  g_count.fetch_add(1);
}

Storage::~Storage() {
  if (!cache().give(data_, rounded_bytes(count_))) std::free(data_);
  track(-count_ * static_cast<int64_t>(sizeof(float)));
}

}  // namespace cmdr
