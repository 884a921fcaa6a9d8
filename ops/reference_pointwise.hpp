#pragma once
// Reference kernels for norms, elementwise, reductions, pooling, resampling, index ops.
#include "ops/ops.hpp"
namespace cmdr::ops::ref {}  // namespace cmdr::ops::ref
