#pragma once
// Plain reference kernels (simple loops, no oneDNN/Eigen/OpenMP), one per op, same
// signatures as the optimised ones in ops.hpp. Tests compare the two on odd shapes.
#include "ops/reference_dense.hpp"
#include "ops/reference_pointwise.hpp"
#include "ops/reference_sparse.hpp"
