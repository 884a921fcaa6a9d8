#pragma once
// Reference kernels for the constant sparse products (spmm, dense_spmm): the operator
// densified, plain loops, float64 accumulation. Same signatures as cmdr::ops.
#include "ops/ops.hpp"

namespace cmdr::ops::ref {

Tensor spmm_forward(const CsrMatrix& a, const Tensor& x);
Tensor spmm_backward(const CsrMatrix& a, const Tensor& dy);
Tensor dense_spmm_forward(const Tensor& x, const CsrMatrix& a);
Tensor dense_spmm_backward(const Tensor& dy, const CsrMatrix& a);

}  // namespace cmdr::ops::ref
