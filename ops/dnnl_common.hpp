#pragma once
// Internal to ops/: the process-wide oneDNN CPU engine, a per-thread stream, a thread-safe
// cache of primitive descriptors / primitives keyed by a shape string, and small helpers
// (memory descriptors from tensors, reorders). Not part of the public contract.
#include <bit>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <sstream>
#include <string>
#include <unordered_map>

#include "engine/tensor.hpp"

namespace cmdr::ops::dnnl_util {

dnnl::engine& engine();  // one CPU engine for the process
dnnl::stream& stream();  // one in-order stream per calling thread (CPU streams are cheap)

// Thread-safe cache: cached<T>(key, make) returns the object built by make() the first time
// `key` is seen. Objects are immutable after creation (oneDNN primitives may be executed
// concurrently with different arguments), so sharing them is safe.
std::shared_ptr<void> cache_lookup(const std::string& key,
                                   const std::function<std::shared_ptr<void>()>& make);
template <typename T>
std::shared_ptr<T> cached(const std::string& key, const std::function<std::shared_ptr<T>()>& make) {
  return std::static_pointer_cast<T>(
      cache_lookup(key, [&]() -> std::shared_ptr<void> { return make(); }));
}
std::size_t cache_size();

// Builds a cache key from streamable pieces.
template <typename... Args>
std::string key(const Args&... args) {
  std::ostringstream os;
  ((os << args << '|'), ...);
  return os.str();
}

inline dnnl::memory::dims dims_of(const Shape& s) {
  return dnnl::memory::dims(s.begin(), s.end());
}

// Plain row-major f32 descriptor for a contiguous shape.
inline dnnl::memory::desc plain_md(const Shape& s) {
  return dnnl::memory::desc(dims_of(s), dnnl::memory::data_type::f32,
                            dims_of(contiguous_strides(s)));
}
// f32 descriptor with explicit strides.
inline dnnl::memory::desc strided_md(const dnnl::memory::dims& d, const dnnl::memory::dims& s) {
  return dnnl::memory::desc(d, dnnl::memory::data_type::f32, s);
}
inline dnnl::memory::desc any_md(const Shape& s) {
  return dnnl::memory::desc(dims_of(s), dnnl::memory::data_type::f32,
                            dnnl::memory::format_tag::any);
}
inline dnnl::memory make_mem(const dnnl::memory::desc& md, const float* p) {
  return dnnl::memory(md, engine(), const_cast<float*>(p));
}

// float32 -> bfloat16, round to nearest even (what oneDNN's reorder and the AVX512_BF16
// vcvtneps2bf16 instruction do); NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Returns `user` if its layout already equals `want`, else a reordered copy in `want`'s
// layout (allocated by oneDNN, owned by the returned memory).
dnnl::memory to_layout(const dnnl::memory& user, const dnnl::memory::desc& want);
// Copies `src` into `dst` (different layouts, same logical tensor).
void reorder(const dnnl::memory& src, const dnnl::memory& dst);

// Describes a short summary of the implementation chosen by a primitive descriptor
// (e.g. "brg:avx512_core", "gemm:jit"): used by tests to make sure no reference fallback
// is hit on the hot shapes.
std::string impl_of(const dnnl::primitive_desc_base& pd);

}  // namespace cmdr::ops::dnnl_util
