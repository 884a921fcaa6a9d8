// Optimised pooling / resampling on x [B, C, H, W] (parallel over the B·C planes, each
// plane computed by one thread: deterministic for any thread count) and gather/scatter by
// index along dim 0.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/profiler.hpp"
#include "ops/ops.hpp"
#include "ops/pointwise_detail.hpp"

namespace cmdr::ops {
using namespace detail;

namespace {
void check_pool(const char* op, const Shape& xs, int64_t k, int64_t pad) {
  CMDR_CHECK(xs.size() == 4, op, ": x must be [B, C, H, W], got ", shape_str(xs));
  CMDR_CHECK(k >= 1 && pad >= 0 && 2 * pad <= k, op, ": kernel ", k, " and padding ", pad,
             " invalid (need k >= 1, 0 <= pad <= k/2)");
  CMDR_CHECK(xs[2] + 2 * pad >= k && xs[3] + 2 * pad >= k, op, ": x ", shape_str(xs),
             " is smaller than the kernel ", k, " with padding ", pad);
}
void check_out(const char* op, int64_t oh, int64_t ow) {
  CMDR_CHECK(oh >= 1 && ow >= 1, op, ": output size ", oh, "x", ow, " must be positive");
}
void check_grad_planes(const char* op, const Tensor& dy, const Shape& x_shape) {
  check_nchw(op, "dy", dy);
  CMDR_CHECK(x_shape.size() == 4 && dy.size(0) == x_shape[0] && dy.size(1) == x_shape[1], op,
             ": dy ", dy.str(), " does not match x ", shape_str(x_shape));
}

// Separable zero-padded box sum of one plane: out[oh][ow] = s·Σ_{i,j<k} in[oh+i−pad][ow+j−pad].
// Used for the forward (s = 1/k²) and, with the window mirrored (pad' = k−1−pad), the backward.
void box_plane(const float* in, int64_t H, int64_t W, float* out, int64_t Ho, int64_t Wo, int64_t k,
               int64_t pad, float s, std::vector<float>& prow, std::vector<float>& tmp) {
  // Horizontal: tmp[h][ow] = Σ_j in[h][ow + j − pad] over a zero-padded row.
  const int64_t Wp = Wo + k - 1;
  prow.assign(static_cast<std::size_t>(Wp), 0.0f);
  tmp.resize(static_cast<std::size_t>(H * Wo));
  for (int64_t h = 0; h < H; ++h) {
    const int64_t lo = std::max<int64_t>(0, pad), hi = std::min(Wp, W + pad);
    std::fill(prow.begin(), prow.end(), 0.0f);
    std::memcpy(prow.data() + lo, in + h * W + (lo - pad), sizeof(float) * (hi - lo));
    float* t = tmp.data() + h * Wo;
    std::memcpy(t, prow.data(), sizeof(float) * Wo);
    for (int64_t j = 1; j < k; ++j) {
      const float* p = prow.data() + j;
#pragma omp simd
      for (int64_t ow = 0; ow < Wo; ++ow) t[ow] += p[ow];
    }
  }
  // Vertical: out[oh] = s·Σ_i tmp[oh + i − pad] (rows outside [0, H) are zero).
  for (int64_t oh = 0; oh < Ho; ++oh) {
    float* o = out + oh * Wo;
    std::fill(o, o + Wo, 0.0f);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t h = oh + i - pad;
      if (h < 0 || h >= H) continue;
      const float* t = tmp.data() + h * Wo;
#pragma omp simd
      for (int64_t ow = 0; ow < Wo; ++ow) o[ow] += t[ow];
    }
#pragma omp simd
    for (int64_t ow = 0; ow < Wo; ++ow) o[ow] *= s;
  }
}
}  // namespace

// ---- avg_pool2d: kernel k, stride 1, zero pad, divisor k²
// ---------------------------------------- x [B, C, H, W] -> [B, C, H + 2·pad − k + 1, W + 2·pad −
// k + 1]
Tensor avg_pool2d_forward(const Tensor& x, int64_t k, int64_t pad) {
  const char* op = op_name(Op::AvgPool2d);
  check_nchw(op, "x", x);
  check_pool(op, x.shape(), k, pad);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1;
  ProfileScope prof(op, 2.0 * k * static_cast<double>(P * Ho * Wo),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), Ho, Wo});
  const float* xp = xc.data();
  float* yp = y.data();
  const float s = 1.0f / static_cast<float>(k * k);
#pragma omp parallel
  {
    std::vector<float> prow, tmp;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p)
      box_plane(xp + p * H * W, H, W, yp + p * Ho * Wo, Ho, Wo, k, pad, s, prow, tmp);
  }
  return y;
}
// dx[h][w] = Σ over the outputs whose window covers (h, w) of dy/k²: the same box filter on
// dy with the mirrored padding k − 1 − pad.
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, int64_t k, int64_t pad) {
  const char* op = "avg_pool2d_backward";
  check_pool(op, x_shape, k, pad);
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1;
  check_defined(op, "dy", dy);
  CMDR_CHECK(dy.shape() == Shape({x_shape[0], x_shape[1], Ho, Wo}), op, ": dy ", dy.str(),
             " does not match x ", shape_str(x_shape), " pooled with k ", k, " pad ", pad);
  ProfileScope prof(op_name(Op::AvgPool2d), 2.0 * k * static_cast<double>(P * H * W),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::empty(x_shape);
  const float* gp = gc.data();
  float* dp = dx.data();
  const float s = 1.0f / static_cast<float>(k * k);
#pragma omp parallel
  {
    std::vector<float> prow, tmp;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p)
      box_plane(gp + p * Ho * Wo, Ho, Wo, dp + p * H * W, H, W, k, k - 1 - pad, s, prow, tmp);
  }
  return dx;
}

// ---- adaptive_avg_pool2d: bin i = [floor(i·In/Out), ceil((i+1)·In/Out))
// -------------------------- x [B, C, H, W] -> [B, C, out_h, out_w]; separable: row bins then
// column bins, / count.
Tensor adaptive_avg_pool2d_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  const char* op = op_name(Op::AdaptiveAvgPool2d);
  check_nchw(op, "x", x);
  check_out(op, out_h, out_w);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  CMDR_CHECK(H >= 1 && W >= 1, op, ": x ", x.str(), " has an empty plane");
  ProfileScope prof(op, static_cast<double>(P * H * W),
                    4.0 * static_cast<double>(P * (H * W + out_h * out_w)));
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w});
  const float* xp = xc.data();
  float* yp = y.data();
#pragma omp parallel
  {
    std::vector<float> tmp(static_cast<std::size_t>(H * out_w));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const float* in = xp + p * H * W;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t w0 = adaptive_start(ow, W, out_w), w1 = adaptive_end(ow, W, out_w);
          float s = 0.0f;
          for (int64_t w = w0; w < w1; ++w) s += in[h * W + w];
          tmp[h * out_w + ow] = s;
        }
      float* o = yp + p * out_h * out_w;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t h0 = adaptive_start(oh, H, out_h), h1 = adaptive_end(oh, H, out_h);
        float* orow = o + oh * out_w;
        std::fill(orow, orow + out_w, 0.0f);
        for (int64_t h = h0; h < h1; ++h) {
          const float* t = tmp.data() + h * out_w;
#pragma omp simd
          for (int64_t ow = 0; ow < out_w; ++ow) orow[ow] += t[ow];
        }
        for (int64_t ow = 0; ow < out_w; ++ow) {
          const int64_t cw = adaptive_end(ow, W, out_w) - adaptive_start(ow, W, out_w);
          orow[ow] /= static_cast<float>((h1 - h0) * cw);
        }
      }
    }
  }
  return y;
}
Tensor adaptive_avg_pool2d_backward(const Tensor& dy, const Shape& x_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  check_grad_planes(op, dy, x_shape);
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = dy.size(2), Wo = dy.size(3);
  ProfileScope prof(op_name(Op::AdaptiveAvgPool2d), static_cast<double>(P * H * W),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::empty(x_shape);
  const float* gp = gc.data();
  float* dp = dx.data();
#pragma omp parallel
  {
    std::vector<float> tmp(static_cast<std::size_t>(Ho * W));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const float* g = gp + p * Ho * Wo;
      // tmp[oh][w] = Σ_{ow: w ∈ bin(ow)} dy[oh][ow] / count(oh, ow)
      std::fill(tmp.begin(), tmp.end(), 0.0f);
      for (int64_t oh = 0; oh < Ho; ++oh) {
        const int64_t ch = adaptive_end(oh, H, Ho) - adaptive_start(oh, H, Ho);
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const int64_t w0 = adaptive_start(ow, W, Wo), w1 = adaptive_end(ow, W, Wo);
          const float v = g[oh * Wo + ow] / static_cast<float>(ch * (w1 - w0));
          for (int64_t w = w0; w < w1; ++w) tmp[oh * W + w] += v;
        }
      }
      float* d = dp + p * H * W;
      std::fill(d, d + H * W, 0.0f);
      for (int64_t oh = 0; oh < Ho; ++oh) {
        const int64_t h0 = adaptive_start(oh, H, Ho), h1 = adaptive_end(oh, H, Ho);
        const float* t = tmp.data() + oh * W;
        for (int64_t h = h0; h < h1; ++h) {
          float* drow = d + h * W;
#pragma omp simd
          for (int64_t w = 0; w < W; ++w) drow[w] += t[w];
        }
      }
    }
  }
  return dx;
}

// ---- bilinear upsample, align_corners = false
// ------------------------------------------------------ Per plane: each input row is interpolated
// horizontally once (t = x[j0]·l0 + x[j1]·l1), then out = t_row0·h0 + t_row1·h1. (PyTorch's kernel
// differs in the last bit on some elements: its build may fuse multiply-adds.)
Tensor upsample_bilinear2d_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  const char* op = op_name(Op::UpsampleBilinear2d);
  check_nchw(op, "x", x);
  check_out(op, out_h, out_w);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  CMDR_CHECK(H >= 1 && W >= 1, op, ": x ", x.str(), " has an empty plane");
  ProfileScope prof(op, 6.0 * static_cast<double>(P * out_h * out_w),
                    4.0 * static_cast<double>(P * (H * W + out_h * out_w)));
  const std::vector<LinearTap> th = bilinear_taps(H, out_h), tw = bilinear_taps(W, out_w);
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w});
  const float* xp = xc.data();
  float* yp = y.data();
  std::vector<int64_t> j0(out_w), j1(out_w);
  std::vector<float> l0(out_w), l1(out_w);
  for (int64_t ow = 0; ow < out_w; ++ow) {
    j0[ow] = tw[ow].i0;
    j1[ow] = tw[ow].i1;
    l0[ow] = tw[ow].l0;
    l1[ow] = tw[ow].l1;
  }
#pragma omp parallel
  {
    std::vector<float> rows(static_cast<std::size_t>(H * out_w));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const float* in = xp + p * H * W;
      for (int64_t h = 0; h < H; ++h) {
        const float* r = in + h * W;
        float* t = rows.data() + h * out_w;
#pragma omp simd
        for (int64_t ow = 0; ow < out_w; ++ow) t[ow] = r[j0[ow]] * l0[ow] + r[j1[ow]] * l1[ow];
      }
      float* o = yp + p * out_h * out_w;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const LinearTap& a = th[oh];
        const float* t0 = rows.data() + a.i0 * out_w;
        const float* t1 = rows.data() + a.i1 * out_w;
        float* orow = o + oh * out_w;
#pragma omp simd
        for (int64_t ow = 0; ow < out_w; ++ow) orow[ow] = t0[ow] * a.l0 + t1[ow] * a.l1;
      }
    }
  }
  return y;
}
// Backward: the transpose, separably: tmp[oh][w] = Σ_ow dy·l(w), then dx[h] += tmp[oh]·l(h).
Tensor upsample_bilinear2d_backward(const Tensor& dy, const Shape& x_shape) {
  const char* op = "upsample_bilinear2d_backward";
  check_grad_planes(op, dy, x_shape);
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = dy.size(2), Wo = dy.size(3);
  ProfileScope prof(op_name(Op::UpsampleBilinear2d), 6.0 * static_cast<double>(P * Ho * Wo),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const std::vector<LinearTap> th = bilinear_taps(H, Ho), tw = bilinear_taps(W, Wo);
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::empty(x_shape);
  const float* gp = gc.data();
  float* dp = dx.data();
#pragma omp parallel
  {
    std::vector<float> tmp(static_cast<std::size_t>(W));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const float* g = gp + p * Ho * Wo;
      float* d = dp + p * H * W;
      std::fill(d, d + H * W, 0.0f);
      for (int64_t oh = 0; oh < Ho; ++oh) {
        std::fill(tmp.begin(), tmp.end(), 0.0f);
        const float* grow = g + oh * Wo;
        for (int64_t ow = 0; ow < Wo; ++ow) {
          tmp[tw[ow].i0] += grow[ow] * tw[ow].l0;
          tmp[tw[ow].i1] += grow[ow] * tw[ow].l1;
        }
        const LinearTap& a = th[oh];
        float* d0 = d + a.i0 * W;
        float* d1 = d + a.i1 * W;
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) d0[w] += tmp[w] * a.l0;
#pragma omp simd
        for (int64_t w = 0; w < W; ++w) d1[w] += tmp[w] * a.l1;
      }
    }
  }
  return dx;
}

// ---- nearest resize (SPEC 3.2 float32 source index)
// ------------------------------------------------
Tensor resize_nearest2d_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  const char* op = op_name(Op::ResizeNearest2d);
  check_nchw(op, "x", x);
  check_out(op, out_h, out_w);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  CMDR_CHECK(H >= 1 && W >= 1, op, ": x ", x.str(), " has an empty plane");
  ProfileScope prof(op, 0.0, 8.0 * static_cast<double>(P * out_h * out_w));
  const std::vector<int64_t> sh = nearest_src(H, out_h), sw = nearest_src(W, out_w);
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w});
  const float* xp = xc.data();
  float* yp = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const float* r = xp + (p * H + sh[oh]) * W;
      float* o = yp + (p * out_h + oh) * out_w;
      for (int64_t ow = 0; ow < out_w; ++ow) o[ow] = r[sw[ow]];
    }
  return y;
}
Tensor resize_nearest2d_backward(const Tensor& dy, const Shape& x_shape) {
  const char* op = "resize_nearest2d_backward";
  check_grad_planes(op, dy, x_shape);
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = dy.size(2), Wo = dy.size(3);
  ProfileScope prof(op_name(Op::ResizeNearest2d), static_cast<double>(P * Ho * Wo),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const std::vector<int64_t> sh = nearest_src(H, Ho), sw = nearest_src(W, Wo);
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::zeros(x_shape);
  const float* gp = gc.data();
  float* dp = dx.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const float* g = gp + (p * Ho + oh) * Wo;
      float* d = dp + (p * H + sh[oh]) * W;
      for (int64_t ow = 0; ow < Wo; ++ow) d[sw[ow]] += g[ow];
    }
  return dx;
}

// ---- index_select / index_add along dim 0
// ----------------------------------------------------------- index_select: x [N, ...] ->
// [idx.size(), ...]; rows copied in parallel.
Tensor index_select_forward(const Tensor& x, const std::vector<int64_t>& idx) {
  const char* op = op_name(Op::IndexSelect);
  check_defined(op, "x", x);
  CMDR_CHECK(x.dim() >= 1, op, ": x must have at least one dimension, got ", x.str());
  check_index(op, idx, x.size(0));
  const int64_t row = x.numel() / std::max<int64_t>(x.size(0), 1);
  const int64_t n = static_cast<int64_t>(idx.size());
  ProfileScope prof(op, 0.0, 8.0 * static_cast<double>(n * row));
  Shape os = x.shape();
  os[0] = n;
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(os);
  const float* xp = xc.data();
  float* yp = y.data();
  parallel_chunks(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(row, 1)),
                  [&](int64_t i0, int64_t i1) {
                    for (int64_t i = i0; i < i1; ++i)
                      std::memcpy(yp + i * row, xp + idx[static_cast<std::size_t>(i)] * row,
                                  sizeof(float) * row);
                  });
  return y;
}
// index_add: out = zeros([n_rows, ...]); out[idx[i]] += src[i] in order of i. Parallel over
// column blocks only, so every output element sums its contributions in index order.
Tensor index_add_forward(const Tensor& src, const std::vector<int64_t>& idx, int64_t n_rows) {
  const char* op = op_name(Op::IndexAdd);
  check_defined(op, "src", src);
  CMDR_CHECK(src.dim() >= 1 && src.size(0) == static_cast<int64_t>(idx.size()), op, ": src ",
             src.str(), " must have one row per index (", idx.size(), " indices)");
  CMDR_CHECK(n_rows >= 0, op, ": n_rows must be >= 0, got ", n_rows);
  check_index(op, idx, n_rows);
  const int64_t row = src.numel() / std::max<int64_t>(src.size(0), 1);
  const int64_t n = static_cast<int64_t>(idx.size());
  ProfileScope prof(op, static_cast<double>(n * row), 12.0 * static_cast<double>(n * row));
  Shape os = src.shape();
  os[0] = n_rows;
  const Tensor sc = src.contiguous();
  Tensor y = Tensor::zeros(os);
  const float* sp = sc.data();
  float* yp = y.data();
  constexpr int64_t kCols = 256;
  parallel_chunks(row, kCols, [&](int64_t c0, int64_t c1) {
    for (int64_t i = 0; i < n; ++i) {
      const float* s = sp + i * row;
      float* d = yp + idx[static_cast<std::size_t>(i)] * row;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) d[c] += s[c];
    }
  });
  return y;
}
Tensor index_select_backward(const Tensor& dy, const std::vector<int64_t>& idx, int64_t n_rows) {
  return index_add_forward(dy, idx, n_rows);
}
Tensor index_add_backward(const Tensor& dy, const std::vector<int64_t>& idx) {
  return index_select_forward(dy, idx);
}

}  // namespace cmdr::ops
