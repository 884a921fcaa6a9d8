#include "engine/storage.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "engine/error.hpp"

namespace cmdr {
namespace {
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_count{0};

void track(int64_t delta) {
  int64_t now = g_current.fetch_add(delta) + delta;
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}
}  // namespace

MemoryStats memory_stats() { return {g_current.load(), g_peak.load(), g_count.load()}; }

void reset_peak_memory() { g_peak.store(g_current.load()); }

Storage::Storage(int64_t count, bool zero) : count_(count) {
  CMDR_CHECK(count >= 0, "Storage: negative element count ", count);
  std::size_t bytes = static_cast<std::size_t>(count) * sizeof(float);
  std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  data_ = static_cast<float*>(std::aligned_alloc(kAlignment, rounded));
  if (!data_) fail("Storage: out of memory allocating ", bytes, " bytes");
  if (zero) std::memset(data_, 0, bytes);
  track(static_cast<int64_t>(bytes));
  g_count.fetch_add(1);
}

Storage::~Storage() {
  std::free(data_);
  track(-count_ * static_cast<int64_t>(sizeof(float)));
}

}  // namespace cmdr
