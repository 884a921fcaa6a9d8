#include "engine/precision.hpp"

#include <cpuid.h>

#include <atomic>

#include "engine/error.hpp"

namespace cmdr {
namespace {
std::atomic<Precision> g_precision{Precision::FP32};
}

bool cpu_has_avx512_bf16() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  // The OS must save the AVX-512 state (XCR0 bits 1, 2, 5, 6, 7) and the CPU must have
  // AVX512F; __builtin_cpu_supports checks both.
  if (!__builtin_cpu_supports("avx512f")) return false;
  __cpuid_count(7, 1, a, b, c, d);
  return (a >> 5) & 1u;  // CPUID.(EAX=7,ECX=1):EAX[5] = AVX512_BF16
}

void check_precision_supported(Precision p, bool has_bf16) {
  CMDR_CHECK(p != Precision::BF16 || has_bf16,
             "precision bf16 needs a CPU with AVX512_BF16 (Intel Cooper Lake / Sapphire Rapids, "
             "AMD Zen 4 or newer); this CPU does not report it: use --precision fp32");
}

void set_precision(Precision p) {
  check_precision_supported(p, p == Precision::BF16 ? cpu_has_avx512_bf16() : true);
  g_precision.store(p);
}
Precision precision() {
  return g_precision.load(std::memory_order_relaxed);
}
const char* precision_name(Precision p) {
  return p == Precision::BF16 ? "bf16" : "fp32";
}
Precision parse_precision(const std::string& s, const char* what) {
  if (s == "fp32") return Precision::FP32;
  if (s == "bf16") return Precision::BF16;
  fail(what, ": precision '", s, "' is not one of fp32, bf16");
}

}  // namespace cmdr
