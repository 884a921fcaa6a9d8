#pragma once
// Reference kernels for norms, elementwise, reductions, pooling, resampling, index ops.
// Plain loops in row-major order (no OpenMP, no Eigen), same signatures and semantics as
// the optimised kernels in ops.hpp; the tests compare both on odd shapes.
#include <cstdint>
#include <vector>

#include "ops/ops.hpp"

namespace cmdr::ops::ref {

Tensor batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Tensor running_mean, Tensor running_var, bool training, float momentum,
                          float eps, BatchNormSaved* saved = nullptr);
BatchNormGrads batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const BatchNormSaved& saved);
Tensor layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                          LayerNormSaved* saved = nullptr);
LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const LayerNormSaved& saved);

Tensor gelu_forward(const Tensor& x);
Tensor gelu_backward(const Tensor& dy, const Tensor& x);
Tensor relu_forward(const Tensor& x);
Tensor relu_backward(const Tensor& dy, const Tensor& x);
Tensor sigmoid_forward(const Tensor& x);
Tensor sigmoid_backward(const Tensor& dy, const Tensor& y);
Tensor tanh_forward(const Tensor& x);
Tensor tanh_backward(const Tensor& dy, const Tensor& y);
Tensor exp_forward(const Tensor& x);
Tensor exp_backward(const Tensor& dy, const Tensor& y);
Tensor sqrt_forward(const Tensor& x);
Tensor sqrt_backward(const Tensor& dy, const Tensor& y);
Tensor softmax_forward(const Tensor& x);
Tensor softmax_backward(const Tensor& dy, const Tensor& y);
Tensor dropout_forward(const Tensor& x, float p, bool training, Rng& rng, Tensor* mask);
Tensor dropout_backward(const Tensor& dy, const Tensor& mask, float p);

Tensor add_forward(const Tensor& a, const Tensor& b);
Tensor sub_forward(const Tensor& a, const Tensor& b);
Tensor mul_forward(const Tensor& a, const Tensor& b);
Tensor div_forward(const Tensor& a, const Tensor& b);
BinaryGrads add_backward(const Tensor& dy, const Shape& a_shape, const Shape& b_shape);
BinaryGrads sub_backward(const Tensor& dy, const Shape& a_shape, const Shape& b_shape);
BinaryGrads mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b);
BinaryGrads div_backward(const Tensor& dy, const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float s);
Tensor reduce_to_shape(const Tensor& t, const Shape& shape);

Tensor sum_forward(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor sum_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim);
Tensor mean_forward(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor mean_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim);
Tensor max_forward(const Tensor& x, int64_t axis, bool keepdim, std::vector<int64_t>* argmax);
Tensor max_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim,
                    const std::vector<int64_t>& argmax);
Tensor l2_normalize_forward(const Tensor& x, int64_t axis, float eps);
Tensor l2_normalize_backward(const Tensor& dy, const Tensor& x, int64_t axis, float eps);
Tensor cosine_similarity_forward(const Tensor& a, const Tensor& b, int64_t axis, float eps);
BinaryGrads cosine_similarity_backward(const Tensor& dy, const Tensor& a, const Tensor& b,
                                       int64_t axis, float eps);

Tensor avg_pool2d_forward(const Tensor& x, int64_t k, int64_t pad);
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, int64_t k, int64_t pad);
Tensor adaptive_avg_pool2d_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor adaptive_avg_pool2d_backward(const Tensor& dy, const Shape& x_shape);
Tensor upsample_bilinear2d_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor upsample_bilinear2d_backward(const Tensor& dy, const Shape& x_shape);
Tensor resize_nearest2d_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor resize_nearest2d_backward(const Tensor& dy, const Shape& x_shape);

Tensor index_select_forward(const Tensor& x, const std::vector<int64_t>& idx);
Tensor index_add_forward(const Tensor& src, const std::vector<int64_t>& idx, int64_t n_rows);
Tensor index_select_backward(const Tensor& dy, const std::vector<int64_t>& idx, int64_t n_rows);
Tensor index_add_backward(const Tensor& dy, const std::vector<int64_t>& idx);

}  // namespace cmdr::ops::ref
