#include "ops/dnnl_common.hpp"

#include <omp.h>

#include <string>

#include "engine/error.hpp"

namespace cmdr::ops::dnnl_util {

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream& stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

namespace {
std::mutex g_mu;
std::unordered_map<std::string, std::shared_ptr<void>>& table() {
  static std::unordered_map<std::string, std::shared_ptr<void>> t;
  return t;
}
}  // namespace

std::shared_ptr<void> cache_lookup(const std::string& key_in,
                                   const std::function<std::shared_ptr<void>()>& make) {
  // oneDNN sizes scratchpads and partitions work for the thread count at creation time, so
  // a primitive is only reused under the same OpenMP thread count.
  const std::string key = key_in + "nthr=" + std::to_string(omp_get_max_threads());
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto it = table().find(key);
    if (it != table().end()) return it->second;
  }
  // Built outside the lock (primitive creation can take milliseconds); if two threads race
  // the first insertion wins and both get the same object.
  std::shared_ptr<void> v;
  try {
    v = make();
  } catch (const dnnl::error& e) {  // surface oneDNN's refusal as our error, naming the op
    fail("oneDNN could not create a primitive for ", key, ": ", e.what());
  }
  std::lock_guard<std::mutex> lk(g_mu);
  auto [it, inserted] = table().emplace(key, std::move(v));
  return it->second;
}

std::size_t cache_size() {
  std::lock_guard<std::mutex> lk(g_mu);
  return table().size();
}

void reorder(const dnnl::memory& src, const dnnl::memory& dst) {
  // oneDNN's own primitive cache makes re-creating a reorder for a seen layout cheap.
  dnnl::reorder r(src, dst);
  r.execute(stream(), const_cast<dnnl::memory&>(src), const_cast<dnnl::memory&>(dst));
  stream().wait();
}

dnnl::memory to_layout(const dnnl::memory& user, const dnnl::memory::desc& want) {
  if (user.get_desc() == want) return user;
  dnnl::memory out(want, engine());
  reorder(user, out);
  return out;
}

std::string impl_of(const dnnl::primitive_desc_base& pd) {
  return pd.impl_info_str();
}

}  // namespace cmdr::ops::dnnl_util
