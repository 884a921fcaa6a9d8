#pragma once
// Reference kernels for the dense ops (linear, matmul, bmm, conv*, attention): plain loops,
// float64 accumulation, no oneDNN / OpenMP. Same signatures and semantics (including the
// AttentionSaved layout and the counter-based dropout mask) as cmdr::ops; the reference
// stores its mask in AttentionSaved::drop_mask (the explicit-mask path of the backward).
#include "ops/ops.hpp"

namespace cmdr::ops::ref {

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias);
LinearGrads linear_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                            bool need_dx = true, bool need_dweight = true, bool need_dbias = true);
Tensor linear_gelu_forward(const Tensor& x, const Tensor& weight, const Tensor& bias);

Tensor matmul_forward(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
MatmulGrads matmul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool trans_a,
                            bool trans_b, bool need_da = true, bool need_db = true);
Tensor bmm_forward(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
MatmulGrads bmm_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool trans_a,
                         bool trans_b, bool need_da = true, bool need_db = true);

Tensor conv1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t pad);
ConvGrads conv1d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, int64_t stride,
                          int64_t pad, bool need_dx = true, bool need_dweight = true,
                          bool need_dbias = true);
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t pad);
ConvGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, int64_t stride,
                          int64_t pad, bool need_dx = true, bool need_dweight = true,
                          bool need_dbias = true);
Tensor conv_transpose1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                int64_t stride, int64_t pad);
ConvGrads conv_transpose1d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    int64_t stride, int64_t pad, bool need_dx = true,
                                    bool need_dweight = true, bool need_dbias = true);
Tensor conv_transpose2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                int64_t stride, int64_t pad);
ConvGrads conv_transpose2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    int64_t stride, int64_t pad, bool need_dx = true,
                                    bool need_dweight = true, bool need_dbias = true);

Tensor attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         int64_t window, float p_drop, bool training, Rng* rng,
                         AttentionSaved* saved = nullptr);
AttentionGrads attention_backward(const Tensor& dy, const Tensor& q, const Tensor& k,
                                  const Tensor& v, float scale, int64_t window, float p_drop,
                                  const AttentionSaved& saved);

}  // namespace cmdr::ops::ref
