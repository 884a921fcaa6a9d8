#pragma once
// One process-wide precision for the dense products (issue 8 item 3).
//   fp32 (default): every GEMM / convolution in float32 — the parity reference.
//   bf16 (opt-in):  linear / matmul / bmm (attention products) and conv / deconv round their
//                   two operands to bfloat16 (round to nearest even), accumulate in float32
//                   and write float32 results, forward and backward. Everything else
//                   (element-wise ops, norms, softmax, losses, optimiser state, master
//                   weights) stays float32.
// bf16 needs the AVX512_BF16 instructions (oneDNN's avx512_core_bf16 kernels); setting it
// on a CPU without them is an error, never a silent slow emulation.
#include <string>

namespace cmdr {

enum class Precision { FP32, BF16 };

void set_precision(Precision p);  // throws cmdr::Error for bf16 without AVX512_BF16
Precision precision();
const char* precision_name(Precision p);                            // "fp32" / "bf16"
Precision parse_precision(const std::string& s, const char* what);  // "fp32" | "bf16"
bool cpu_has_avx512_bf16();  // CPUID leaf 7 subleaf 1 EAX bit 5, with AVX-512 OS support

// Testing hook for the refusal path: the check set_precision() applies, with the CPU
// capability given explicitly.
void check_precision_supported(Precision p, bool has_bf16);

// Sets the precision for a scope and restores the previous one (tests, benchmarks).
class PrecisionScope {
 public:
  explicit PrecisionScope(Precision p) : prev_(precision()) { set_precision(p); }
  ~PrecisionScope() { set_precision(prev_); }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  Precision prev_;
};

}  // namespace cmdr
