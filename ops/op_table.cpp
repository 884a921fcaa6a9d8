// The closed op table: names used by the profiler and by autograd node kinds.
#include <array>

#include "ops/ops.hpp"

namespace cmdr::ops {
namespace {
constexpr std::array<const char*, static_cast<std::size_t>(Op::kCount)> kNames = {
    "linear",
    "linear_gelu",
    "matmul",
    "bmm",
    "conv1d",
    "conv2d",
    "conv_transpose1d",
    "conv_transpose2d",
    "batch_norm",
    "layer_norm",
    "gelu",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "dropout",
    "add",
    "sub",
    "mul",
    "div",
    "exp",
    "sqrt",
    "sum",
    "mean",
    "max",
    "l2_normalize",
    "cosine_similarity",
    "attention",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "upsample_bilinear2d",
    "resize_nearest2d",
    "index_select",
    "index_add",
    "spmm",
    "dense_spmm",
};
// Every slot filled: a new enum entry without a name fails to compile here.
constexpr bool all_named() {
  for (const char* n : kNames)
    if (n == nullptr) return false;
  return true;
}
static_assert(kNames.size() == static_cast<std::size_t>(Op::kCount), "op table size");
static_assert(all_named(), "every Op needs a name in ops/op_table.cpp");
}  // namespace

const char* op_name(Op op) {
  const auto i = static_cast<std::size_t>(op);
  return i < kNames.size() ? kNames[i] : "unknown_op";
}

}  // namespace cmdr::ops
