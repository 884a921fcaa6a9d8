#pragma once
// Reference kernels for the dense ops (linear, matmul, bmm, conv*, attention).
#include "ops/ops.hpp"
namespace cmdr::ops::ref {}  // namespace cmdr::ops::ref
