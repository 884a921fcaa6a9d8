#include "ops/weight_cache.hpp"

#include <cstdio>
#include <cstdlib>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/error.hpp"
#include "engine/precision.hpp"
#include "engine/storage.hpp"
#include "ops/dnnl_common.hpp"

namespace cmdr::ops::weight_cache {
namespace {

struct Entry {
  uint64_t id = 0, version = 0;
  int64_t offset = 0;
  Shape shape, strides;
  std::string tag;  // caller tag + precision
  dnnl::memory::desc desc;
  dnnl::memory mem;  // owns its buffer (allocated by oneDNN)
  int64_t bytes = 0;
  uint64_t last_use = 0;
};

struct Cache {
  std::mutex mu;
  // id -> entries of that storage (a handful: one per view / layout); list for stable refs.
  std::unordered_map<uint64_t, std::list<Entry>> by_id;
  int64_t bytes = 0, entries = 0;
  int64_t limit;
  uint64_t tick = 0;
  int64_t hits = 0, misses = 0, evictions = 0, dropped = 0;
  Cache() {
    // Default bound 1 GiB: every weight of the four CMDR networks and both extractors
    // (ViT-B/8 ~86 M and Point-MAE ~22 M parameters, fp32) fits with room to spare.
    const char* env = std::getenv("CMDR_WEIGHT_CACHE_MB");
    limit = env ? static_cast<int64_t>(std::strtoll(env, nullptr, 10)) << 20 : int64_t{1} << 30;
    if (limit < 0) limit = 0;
  }
};
Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: the release hook may run at exit
  return *c;
}

// Moves the entries matching `pred` out of the cache (destroyed by the caller, outside the
// lock). Caller holds the lock.
template <typename Pred>
void take_out(Cache& c, std::list<Entry>& l, std::vector<Entry>& out, Pred pred) {
  for (auto it = l.begin(); it != l.end();) {
    if (pred(*it)) {
      c.bytes -= it->bytes;
      --c.entries;
      out.push_back(std::move(*it));
      it = l.erase(it);
    } else {
      ++it;
    }
  }
}

void on_release(uint64_t id) {
  std::vector<Entry> dead;  // destroyed after the lock is released
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  auto it = c.by_id.find(id);
  if (it == c.by_id.end()) return;
  take_out(c, it->second, dead, [](const Entry&) { return true; });
  c.dropped += static_cast<int64_t>(dead.size());
  c.by_id.erase(it);
}

// (Re-)installed on every caching call, not once: a test may swap the process-wide hook
// for its own and reset it afterwards.
void install_hook() {
  set_storage_release_hook(&on_release);
}

// Evicts least recently used entries until `need` more bytes fit. Caller holds the lock.
void make_room(Cache& c, int64_t need, std::vector<Entry>& dead) {
  while (c.bytes + need > c.limit && c.entries > 0) {
    std::list<Entry>* oldest_list = nullptr;
    std::list<Entry>::iterator oldest;
    for (auto& [id, l] : c.by_id)
      for (auto it = l.begin(); it != l.end(); ++it)
        if (oldest_list == nullptr || it->last_use < oldest->last_use) {
          oldest_list = &l;
          oldest = it;
        }
    const uint64_t id = oldest->id;
    c.bytes -= oldest->bytes;
    --c.entries;
    ++c.evictions;
    dead.push_back(std::move(*oldest));
    oldest_list->erase(oldest);
    if (oldest_list->empty()) c.by_id.erase(id);
  }
}

bool matches(const Entry& e, uint64_t version, const Tensor& w, const std::string& tag,
             const dnnl::memory::desc& want) {
  return e.version == version && e.offset == w.offset() && e.shape == w.shape() &&
         e.strides == w.strides() && e.tag == tag && e.desc == want;
}

}  // namespace

dnnl::memory get(const Tensor& w, const std::string& tag_in, const dnnl::memory::desc& want,
                 const std::function<void(dnnl::memory& dst)>& fill) {
  CMDR_CHECK(w.defined(), "weight cache: undefined weight tensor");
  Cache& c = cache();
  const std::string tag = tag_in + "|" + precision_name(precision());
  const int64_t bytes = static_cast<int64_t>(want.get_size());
  uint64_t version = 0;
  const uint64_t id = w.storage_id();
  bool keep;
  {
    std::lock_guard<std::mutex> lk(c.mu);
    keep = bytes <= c.limit;
    if (keep) {
      install_hook();
      // Read the version before the data (fill below): a write after this point starts a
      // newer version, so an entry made from half-old data can never be matched.
      version = w.watch_version();
      auto it = c.by_id.find(id);
      if (it != c.by_id.end())
        for (Entry& e : it->second)
          if (matches(e, version, w, tag, want)) {
            e.last_use = ++c.tick;
            ++c.hits;
            return e.mem;
          }
    }
    ++c.misses;
  }
  dnnl::memory mem(want, dnnl_util::engine());
  fill(mem);
  if (!keep) return mem;
  std::vector<Entry> dead;  // destroyed after the lock is released
  std::lock_guard<std::mutex> lk(c.mu);
  if (bytes > c.limit) return mem;  // disabled meanwhile
  std::list<Entry>& l = c.by_id[id];
  for (Entry& e : l)  // another thread raced us: keep its entry
    if (matches(e, version, w, tag, want)) return e.mem;
  // A newer version of this storage: its older entries can never match again.
  const int64_t before = static_cast<int64_t>(dead.size());
  take_out(c, l, dead, [&](const Entry& e) { return e.version < version; });
  c.dropped += static_cast<int64_t>(dead.size()) - before;
  // (make_room may erase this id's list when it becomes empty: insert after it.)
  make_room(c, bytes, dead);
  Entry e;
  e.id = id;
  e.version = version;
  e.offset = w.offset();
  e.shape = w.shape();
  e.strides = w.strides();
  e.tag = tag;
  e.desc = want;
  e.mem = mem;
  e.bytes = bytes;
  e.last_use = ++c.tick;
  c.by_id[id].push_back(std::move(e));
  c.bytes += bytes;
  ++c.entries;
  return mem;
}

Stats stats() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  return Stats{c.entries, c.bytes, c.limit, c.hits, c.misses, c.evictions, c.dropped};
}

std::string stats_str() {
  const Stats s = stats();
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "weight cache: %lld entries, %.1f MiB (limit %lld MiB), %lld hits, %lld misses, "
                "%lld evicted, %lld dropped",
                static_cast<long long>(s.entries), static_cast<double>(s.bytes) / (1 << 20),
                static_cast<long long>(s.limit >> 20), static_cast<long long>(s.hits),
                static_cast<long long>(s.misses), static_cast<long long>(s.evictions),
                static_cast<long long>(s.dropped));
  return buf;
}

void set_limit(int64_t bytes) {
  std::vector<Entry> dead;
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  c.limit = bytes < 0 ? 0 : bytes;
  make_room(c, 0, dead);
}

int64_t limit() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  return c.limit;
}

void clear() {
  std::vector<Entry> dead;
  Cache& c = cache();
  std::lock_guard<std::mutex> lk(c.mu);
  for (auto& [id, l] : c.by_id) take_out(c, l, dead, [](const Entry&) { return true; });
  c.by_id.clear();
}

}  // namespace cmdr::ops::weight_cache
