#pragma once
// Internal to ops/: a process-wide cache of weights prepared for oneDNN (issue 8 item 2,
// "oneDNN weight reorders cached, not redone per call"). A weight tensor reused unchanged
// (inference: every sample; training: every call within one optimiser step) is reordered
// once into the layout its primitive prefers (format_tag::any, e.g. brgemm's blocked
// BA16a64b) and, under precision bf16, rounded once to bfloat16; later calls reuse the
// prepared oneDNN memory instead of converting / packing it again.
//
// Validity rests on the engine's storage versioning (engine/storage.hpp, "Versioning"): an
// entry records (storage id, version) read with Tensor::watch_version() before the weight
// was read, and every later non-const data() on that storage (optimiser step, checkpoint
// load, copy_, fill_) starts a new version, so the entry no longer matches. The full key:
// storage id, version, offset, shape, strides, a caller tag (precision, orientation) and
// the oneDNN memory descriptor the primitive wants.
// - Entries of an id are dropped when a newer version of that id is cached and when the
//   storage is destroyed (set_storage_release_hook).
// - The total is bounded (default 1 GiB, env CMDR_WEIGHT_CACHE_MB; 0 disables the cache),
//   least recently used entries are evicted first.
// - Entries own oneDNN memory buffers, never Tensors: the release hook runs inside
//   ~Storage, and dropping an entry must not destroy a Storage (no re-entry, no deadlock).
// Thread-safe; the preparation (reorder) runs outside the lock.
// The API is deliberately small so that conv.cpp can use it for convolution weights too.
#include <cstdint>
#include <functional>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>

#include "engine/tensor.hpp"

namespace cmdr::ops::weight_cache {

// The prepared form of weight `w` in layout `want`. On a miss, `fill(dst)` is called with a
// fresh oneDNN memory of descriptor `want` and must write the prepared weight into it (it
// reads w; it runs outside the cache lock). `tag` distinguishes preparations that share a
// descriptor (e.g. which view of w is the operand); the precision is added by the cache.
// When the cache is disabled or the entry would exceed the bound, the prepared memory is
// built and returned without being kept.
dnnl::memory get(const Tensor& w, const std::string& tag, const dnnl::memory::desc& want,
                 const std::function<void(dnnl::memory& dst)>& fill);

struct Stats {
  int64_t entries = 0;
  int64_t bytes = 0;      // bytes held by cached entries
  int64_t limit = 0;      // bound on bytes (0: cache disabled)
  int64_t hits = 0;       // since start
  int64_t misses = 0;     // preparations made (cached or not)
  int64_t evictions = 0;  // entries dropped for the bound
  int64_t dropped = 0;    // entries dropped because their storage died or was re-versioned
};
Stats stats();
std::string stats_str();  // "weight cache: 12 entries, 84.0 MiB (limit 1024 MiB), ..."

// Sets the bound in bytes (0 disables the cache and drops every entry). Tests, benchmarks.
void set_limit(int64_t bytes);
int64_t limit();
inline bool enabled() {
  return limit() > 0;
}
void clear();  // drops every entry (stats counters stay)

// Disables the cache for a scope (benchmarks compare cached vs uncached; tests).
class Disable {
 public:
  Disable() : prev_(limit()) { set_limit(0); }
  ~Disable() { set_limit(prev_); }
  Disable(const Disable&) = delete;
  Disable& operator=(const Disable&) = delete;

 private:
  int64_t prev_;
};

}  // namespace cmdr::ops::weight_cache
