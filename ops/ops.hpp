#pragma once
// cmdr::ops — every operator's forward and backward, side by side, on plain Tensors.
// No tape here: autograd/ records calls to these functions; frozen networks call the
// *_forward functions directly (no tape, no saved activations).
//
// Conventions
// - Shapes are checked at the boundary; a mismatch throws cmdr::Error naming the op, the
//   argument and the shapes ("linear: x [4, 7] vs weight [3, 8]: in_features differ").
// - Inputs may be non-contiguous unless a comment says "contiguous"; outputs are always
//   fresh contiguous tensors.
// - Weight layouts are PyTorch's: Linear [out, in]; Conv [out, in, k...];
//   ConvTranspose [in, out, k...].
// - Backward functions take the upstream gradient `dy` (same shape as the forward output)
//   plus whatever the forward saved, and return gradients for the inputs. A gradient the
//   caller does not need may be skipped by passing need_* = false (returned undefined).
// - Every op has a plain reference kernel (namespace cmdr::ops::ref, ops/reference.hpp)
//   that the tests compare against the optimised one on odd shapes.
#include <cstdint>
#include <vector>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"

namespace cmdr::ops {

// ---- the closed op table (ggml style); profiler names and autograd node kinds ----------
enum class Op : int {
  Linear,
  LinearGelu,
  Matmul,
  BatchedMatmul,
  Conv1d,
  Conv2d,
  ConvTranspose1d,
  ConvTranspose2d,
  BatchNorm,
  LayerNorm,
  Gelu,
  Relu,
  Sigmoid,
  Tanh,
  Softmax,
  Dropout,
  Add,
  Sub,
  Mul,
  Div,
  Exp,
  Sqrt,
  Sum,
  Mean,
  Max,
  L2Normalize,
  CosineSimilarity,
  Attention,
  AvgPool2d,
  AdaptiveAvgPool2d,
  UpsampleBilinear2d,
  ResizeNearest2d,
  IndexSelect,
  IndexAdd,
  Spmm,
  DenseSpmm,
  kCount
};
const char* op_name(Op op);  // "linear", "matmul", ... (table in ops/op_table.cpp)

// ---- dense ------------------------------------------------------------------------------
// linear: x [..., K], weight [N, K], bias [N] or undefined -> y [..., N]   (y = x·Wᵀ + b)
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias);
struct LinearGrads {
  Tensor dx, dweight, dbias;
};
LinearGrads linear_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                            bool need_dx = true, bool need_dweight = true, bool need_dbias = true);
// linear_gelu (inference, no backward): x [..., K], weight [N, K], bias [N] or undefined
// -> y [..., N] = gelu(x·Wᵀ + b), exact erf GELU fused into the GEMM (issue 8). Equals
// gelu_forward(linear_forward(x, weight, bias)) within oneDNN's erf (~1e-6 relative).
Tensor linear_gelu_forward(const Tensor& x, const Tensor& weight, const Tensor& bias);

// matmul: a [M, K] (or [K, M] if trans_a), b [K, N] (or [N, K] if trans_b) -> [M, N]
Tensor matmul_forward(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
struct MatmulGrads {
  Tensor da, db;
};
MatmulGrads matmul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool trans_a,
                            bool trans_b, bool need_da = true, bool need_db = true);

// batched matmul: a [B, M, K], b [B, K, N] (trans flags as above, per batch) -> [B, M, N]
Tensor bmm_forward(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
MatmulGrads bmm_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool trans_a,
                         bool trans_b, bool need_da = true, bool need_db = true);

// ---- convolutions (oneDNN; batch-first) --------------------------------------------------
// conv1d: x [B, Cin, L], weight [Cout, Cin, k], bias [Cout] or undefined -> [B, Cout, Lout]
//   Lout = (L + 2·pad − k) / stride + 1
Tensor conv1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t pad);
struct ConvGrads {
  Tensor dx, dweight, dbias;
};
ConvGrads conv1d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, int64_t stride,
                          int64_t pad, bool need_dx = true, bool need_dweight = true,
                          bool need_dbias = true);
// conv2d: x [B, Cin, H, W], weight [Cout, Cin, kh, kw] -> [B, Cout, Hout, Wout]
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t pad);
ConvGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, int64_t stride,
                          int64_t pad, bool need_dx = true, bool need_dweight = true,
                          bool need_dbias = true);
// conv_transpose1d: x [B, Cin, L], weight [Cin, Cout, k] -> [B, Cout, (L−1)·stride − 2·pad + k]
Tensor conv_transpose1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                int64_t stride, int64_t pad);
ConvGrads conv_transpose1d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    int64_t stride, int64_t pad, bool need_dx = true,
                                    bool need_dweight = true, bool need_dbias = true);
// The forward of kernel 4 / stride 2 / pad 1 (Decoder3D, SPEC 5.3) runs as two GEMMs, one per
// output parity (ops/conv.cpp "polyphase"), not oneDNN's deconvolution; off = oneDNN's path,
// for benchmarks and tests comparing the two (process-wide, default on; not thread-safe).
void set_conv_transpose1d_polyphase(bool on);
// conv_transpose2d: x [B, Cin, H, W], weight [Cin, Cout, kh, kw] -> [B, Cout, Hout, Wout]
Tensor conv_transpose2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                int64_t stride, int64_t pad);
ConvGrads conv_transpose2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    int64_t stride, int64_t pad, bool need_dx = true,
                                    bool need_dweight = true, bool need_dbias = true);

// ---- normalisation -------------------------------------------------------------------------
// batch_norm: x [B, C, *] (1d: [B, C, L]; 2d: [B, C, H, W]); weight/bias [C] or undefined.
// training: normalise with batch statistics (mean and biased variance over all but C,
//   accumulated in float64); if running_mean/var are defined, update them in place:
//   r ← (1 − momentum)·r + momentum·stat, with the UNBIASED variance.
// eval: normalise with running_mean / running_var.
struct BatchNormSaved {
  Tensor mean, invstd;
};  // [C] each, what backward needs
Tensor batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Tensor running_mean, Tensor running_var, bool training, float momentum,
                          float eps, BatchNormSaved* saved = nullptr);
struct BatchNormGrads {
  Tensor dx, dweight, dbias;
};
// Backward of the training-mode forward (batch statistics depend on x).
BatchNormGrads batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const BatchNormSaved& saved);

// layer_norm over the last dimension D: x [..., D], weight/bias [D] or undefined.
struct LayerNormSaved {
  Tensor mean, rstd;
};  // [rows] each
Tensor layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                          LayerNormSaved* saved = nullptr);
struct LayerNormGrads {
  Tensor dx, dweight, dbias;
};
LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const LayerNormSaved& saved);

// ---- elementwise ---------------------------------------------------------------------------
Tensor gelu_forward(const Tensor& x);  // exact: x·Φ(x) = 0.5·x·(1 + erf(x/√2))
Tensor gelu_backward(const Tensor& dy, const Tensor& x);
Tensor relu_forward(const Tensor& x);
Tensor relu_backward(const Tensor& dy, const Tensor& x);
Tensor sigmoid_forward(const Tensor& x);
Tensor sigmoid_backward(const Tensor& dy, const Tensor& y);  // y = forward output
Tensor tanh_forward(const Tensor& x);
Tensor tanh_backward(const Tensor& dy, const Tensor& y);  // y = forward output
Tensor exp_forward(const Tensor& x);
Tensor exp_backward(const Tensor& dy, const Tensor& y);
Tensor sqrt_forward(const Tensor& x);
Tensor sqrt_backward(const Tensor& dy, const Tensor& y);

// softmax along the last dimension.
Tensor softmax_forward(const Tensor& x);
Tensor softmax_backward(const Tensor& dy, const Tensor& y);

// dropout (inverted): training → y = x·mask/(1−p); p == 0 or !training → y = x itself (no
// copy; mask undefined). The mask is not stored (issue 8): one key per call from rng, element
// i (row-major) kept iff counter_keep(key, i, keep_threshold(1 − p)) (engine/rng.hpp); the
// backward regenerates it from the DropoutMask. Independent of the thread count.
struct DropoutMask {
  uint64_t key = 0;
  float p = 0.0f;
  int64_t n = -1;  // elements; -1: no dropout applied
  bool defined() const { return n >= 0; }
};
Tensor dropout_forward(const Tensor& x, float p, bool training, Rng& rng,
                       DropoutMask* mask = nullptr);
Tensor dropout_backward(const Tensor& dy, const DropoutMask& mask);  // dy·mask/(1 − p)
// The mask as 0/1 floats of `shape` (tests, references); undefined mask → undefined tensor.
Tensor dropout_mask_values(const DropoutMask& mask, const Shape& shape);
// Explicit 0/1 float mask (fixtures, the reference): dx = dy·mask/(1 − p).
Tensor dropout_backward(const Tensor& dy, const Tensor& mask, float p);

// Broadcasting binary ops (NumPy rules, trailing alignment). Backward reduces each gradient
// to its input's shape.
Tensor add_forward(const Tensor& a, const Tensor& b);
Tensor sub_forward(const Tensor& a, const Tensor& b);
Tensor mul_forward(const Tensor& a, const Tensor& b);
Tensor div_forward(const Tensor& a, const Tensor& b);
struct BinaryGrads {
  Tensor da, db;
};
BinaryGrads add_backward(const Tensor& dy, const Shape& a_shape, const Shape& b_shape);
BinaryGrads sub_backward(const Tensor& dy, const Shape& a_shape, const Shape& b_shape);
BinaryGrads mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b);
BinaryGrads div_backward(const Tensor& dy, const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, float s);  // x·s (helper; no table entry of its own: Mul)
// Sums `t` down to `shape` (the reverse of broadcasting).
Tensor reduce_to_shape(const Tensor& t, const Shape& shape);

// ---- reductions (along one axis; keepdim keeps it as size 1) -------------------------------
Tensor sum_forward(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor sum_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim);
Tensor mean_forward(const Tensor& x, int64_t axis, bool keepdim = false);
Tensor mean_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim);
// max: also returns the argmax (first index of the maximum) for backward.
Tensor max_forward(const Tensor& x, int64_t axis, bool keepdim, std::vector<int64_t>* argmax);
Tensor max_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim,
                    const std::vector<int64_t>& argmax);

// l2_normalize along axis: x / max(‖x‖₂, eps)
Tensor l2_normalize_forward(const Tensor& x, int64_t axis, float eps);
Tensor l2_normalize_backward(const Tensor& dy, const Tensor& x, int64_t axis, float eps);
// cosine similarity along axis (PyTorch F.cosine_similarity semantics would clamp the
// product; we follow SPEC 6: cos = <a/max(‖a‖,eps), b/max(‖b‖,eps)>). Output drops axis.
Tensor cosine_similarity_forward(const Tensor& a, const Tensor& b, int64_t axis, float eps);
BinaryGrads cosine_similarity_backward(const Tensor& dy, const Tensor& a, const Tensor& b,
                                       int64_t axis, float eps);

// ---- attention ------------------------------------------------------------------------------
// q, k, v: [B, H, T, d]. Full attention when window == 0; otherwise tokens are cut into
// consecutive windows of `window` tokens (the last one shorter when T % window != 0; its
// missing keys get no attention, SPEC 5.2). probs = softmax(q·kᵀ·scale) per window;
// attention dropout (p_drop, training) on probs; out = probs·v -> [B, H, T, d].
struct AttentionSaved {
  Tensor probs;      // after softmax (pre-drop)
  DropoutMask drop;  // forward's dropout: regenerated in the backward (issue 8)
  Tensor drop_mask;  // explicit mask (fixtures): used instead of `drop` when defined
};
// probs layout: window == 0 → [B, H, T, T]; window > 0 → [B, H, nw, W, W] (nw = ceil(T/W)),
// the last window's rem×rem probabilities in the top-left of its slot, zeros elsewhere.
// Dropout: entry at flat offset i of that layout is kept iff counter_keep(drop.key, i, ·) and
// then scaled by 1/(1 − p); drop is undefined when no dropout was applied. drop_mask (an
// explicit mask given by the caller, e.g. torch's): same shape, entries 0 or 1/(1 − p).
Tensor attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         int64_t window, float p_drop, bool training, Rng* rng,
                         AttentionSaved* saved = nullptr);
struct AttentionGrads {
  Tensor dq, dk, dv;
};
// The keyed mask `drop` materialised (0 or 1/(1 − p), zeros in the padding) for q's shape.
Tensor attention_dropout_mask(const Shape& q_shape, int64_t window, const DropoutMask& drop);
AttentionGrads attention_backward(const Tensor& dy, const Tensor& q, const Tensor& k,
                                  const Tensor& v, float scale, int64_t window, float p_drop,
                                  const AttentionSaved& saved);

// ---- pooling and resampling (x [B, C, H, W]) --------------------------------------------------
// avg_pool2d: kernel k, stride 1, zero padding pad, divisor k² (count_include_pad).
Tensor avg_pool2d_forward(const Tensor& x, int64_t k, int64_t pad);
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, int64_t k, int64_t pad);
// adaptive_avg_pool2d: bin i covers [floor(i·In/Out), ceil((i+1)·In/Out)).
Tensor adaptive_avg_pool2d_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor adaptive_avg_pool2d_backward(const Tensor& dy, const Shape& x_shape);
// bilinear, align_corners = false (PyTorch semantics, incl. clamping of negative source).
Tensor upsample_bilinear2d_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor upsample_bilinear2d_backward(const Tensor& dy, const Shape& x_shape);
// nearest as PyTorch interpolate(mode='nearest'): scale = (float)in/out,
// src = min(floor(dst·scale), in−1) in float32 (SPEC 3.2).
Tensor resize_nearest2d_forward(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor resize_nearest2d_backward(const Tensor& dy, const Shape& x_shape);

// ---- gather / scatter by index along dim 0 -----------------------------------------------------
// index_select: x [N, ...], idx (values in [0, N)) -> [idx.size(), ...]
Tensor index_select_forward(const Tensor& x, const std::vector<int64_t>& idx);
// index_add: out = zeros([n_rows, ...]); out[idx[i]] += src[i]  (the backward of the above)
Tensor index_add_forward(const Tensor& src, const std::vector<int64_t>& idx, int64_t n_rows);
Tensor index_select_backward(const Tensor& dy, const std::vector<int64_t>& idx, int64_t n_rows);
Tensor index_add_backward(const Tensor& dy, const std::vector<int64_t>& idx);

// ---- constant sparse operators (CSR), SPEC 10 (ops/sparse.cpp) ---------------------------------
// A fixed linear operator (bilinear upsampling U, the 3D assembly P of SPEC 4.3): no gradient
// flows into it. Every product accumulates each output element in a fixed order
// (deterministic for any thread count).
struct CsrMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_ptr;  // [rows + 1]
  std::vector<int32_t> col;      // ascending within a row
  std::vector<float> val;
  int64_t nnz() const { return static_cast<int64_t>(col.size()); }
  // this [rows, cols] · dense [cols, C] -> [rows, C] (= spmm_forward)
  Tensor matmul(const Tensor& dense) const;
  // The given rows, in the given order (row selection composes with the operator).
  CsrMatrix select_rows(const std::vector<int64_t>& idx) const;
  CsrMatrix transpose() const;
  Tensor to_dense() const;  // [rows, cols] (tests)
  void check() const;       // structure valid, else Error
};
// Bilinear upsampling (align_corners = false, the taps of upsample_bilinear2d) of an
// in_h×in_w grid to out_h×out_w as an operator [out_h·out_w, in_h·in_w] on row-major grids;
// ≤ 4 entries per row, summing to 1 (up to float rounding).
CsrMatrix bilinear_operator(int64_t in_h, int64_t in_w, int64_t out_h, int64_t out_w);
// spmm: y = A·x, A [R, K] CSR, x [K, C] -> [R, C]; backward dx = Aᵀ·dy [K, C].
Tensor spmm_forward(const CsrMatrix& a, const Tensor& x);
Tensor spmm_backward(const CsrMatrix& a, const Tensor& dy);
// dense_spmm: y = x·A, x [M, R] dense, A [R, K] CSR -> [M, K]; backward dx = dy·Aᵀ [M, R].
Tensor dense_spmm_forward(const Tensor& x, const CsrMatrix& a);
Tensor dense_spmm_backward(const Tensor& dy, const CsrMatrix& a);

}  // namespace cmdr::ops
