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

// Box sum of one plane with zero padding, in PyTorch's order: out[oh][ow] = Σ_{i<k} Σ_{j<k}
// in[oh+i−pad][ow+j−pad] accumulated in float from +0 in row-major window order (padding
// terms add +0, an exact no-op), then out /= div (div = 0: no division). The input is first
// copied into a zero-padded plane so the inner loop is a plain vectorisable add over ow.
void box_plane(const float* in, int64_t H, int64_t W, float* out, int64_t Ho, int64_t Wo, int64_t k,
               int64_t pad, float div, std::vector<float>& padded) {
  const int64_t Hp = Ho + k - 1, Wp = Wo + k - 1;
  padded.assign(static_cast<std::size_t>(Hp * Wp), 0.0f);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t hp = h + pad;
    if (hp < 0 || hp >= Hp) continue;
    const int64_t w0 = std::max<int64_t>(0, -pad), w1 = std::min(W, Wp - pad);
    if (w1 > w0)
      std::memcpy(&padded[static_cast<std::size_t>(hp * Wp + w0 + pad)], in + h * W + w0,
                  sizeof(float) * (w1 - w0));
  }
  for (int64_t oh = 0; oh < Ho; ++oh) {
    float* o = out + oh * Wo;
    std::fill(o, o + Wo, 0.0f);
    for (int64_t i = 0; i < k; ++i) {
      const float* row = &padded[static_cast<std::size_t>((oh + i) * Wp)];
      for (int64_t j = 0; j < k; ++j) {
        const float* r = row + j;
#pragma omp simd
        for (int64_t ow = 0; ow < Wo; ++ow) o[ow] += r[ow];
      }
    }
    if (div != 0.0f) {
#pragma omp simd
      for (int64_t ow = 0; ow < Wo; ++ow) o[ow] /= div;
    }
  }
}
}  // namespace

// ---- avg_pool2d: kernel k, stride 1, zero pad, divisor k² (count_include_pad) ----------------
// x [B, C, H, W] -> [B, C, H + 2·pad − k + 1, W + 2·pad − k + 1]. Bit-identical to PyTorch:
// float window sums in row-major order, divided by k².
Tensor avg_pool2d_forward(const Tensor& x, int64_t k, int64_t pad) {
  const char* op = op_name(Op::AvgPool2d);
  check_nchw(op, "x", x);
  check_pool(op, x.shape(), k, pad);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1;
  ProfileScope prof(op, static_cast<double>(k * k) * static_cast<double>(P * Ho * Wo),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty({x.size(0), x.size(1), Ho, Wo});
  const float* xp = xc.data();
  float* yp = y.data();
  const float div = static_cast<float>(k * k);
#pragma omp parallel
  {
    std::vector<float> padded;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p)
      box_plane(xp + p * H * W, H, W, yp + p * Ho * Wo, Ho, Wo, k, pad, div, padded);
  }
  return y;
}
// PyTorch scatters g = dy/k² over each window, outputs in row-major order. Gathered instead:
// dx[h][w] = Σ over the covering outputs, which in that order are the box sum of the
// zero-padded g with padding k − 1 − pad (window offsets i, j ascending = oh, ow ascending).
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, int64_t k, int64_t pad) {
  const char* op = "avg_pool2d_backward";
  check_pool(op, x_shape, k, pad);
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1;
  check_defined(op, "dy", dy);
  CMDR_CHECK(dy.shape() == Shape({x_shape[0], x_shape[1], Ho, Wo}), op, ": dy ", dy.str(),
             " does not match x ", shape_str(x_shape), " pooled with k ", k, " pad ", pad);
  ProfileScope prof(op_name(Op::AvgPool2d),
                    static_cast<double>(k * k) * static_cast<double>(P * H * W),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::empty(x_shape);
  const float* gp = gc.data();
  float* dp = dx.data();
  const float div = static_cast<float>(k * k);
#pragma omp parallel
  {
    std::vector<float> g(static_cast<std::size_t>(Ho * Wo)), padded;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      const float* src = gp + p * Ho * Wo;
#pragma omp simd
      for (int64_t i = 0; i < Ho * Wo; ++i) g[static_cast<std::size_t>(i)] = src[i] / div;
      box_plane(g.data(), Ho, Wo, dp + p * H * W, H, W, k, k - 1 - pad, 0.0f, padded);
    }
  }
  return dx;
}

// ---- adaptive_avg_pool2d: bin i = [floor(i·In/Out), ceil((i+1)·In/Out)) ----------------------
// x [B, C, H, W] -> [B, C, out_h, out_w]. Bit-identical to PyTorch: float sum over the bin in
// row-major order, then / kh / kw (two divisions, as PyTorch does).
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
  std::vector<int64_t> h0(out_h), h1(out_h), w0(out_w), w1(out_w);
  for (int64_t i = 0; i < out_h; ++i) {
    h0[i] = adaptive_start(i, H, out_h);
    h1[i] = adaptive_end(i, H, out_h);
  }
  for (int64_t i = 0; i < out_w; ++i) {
    w0[i] = adaptive_start(i, W, out_w);
    w1[i] = adaptive_end(i, W, out_w);
  }
  // Vectorised over ow: the bin's columns are visited as offsets t < max width, padded with
  // +0 where a bin is narrower (adding +0 to a sum started at +0 is exact), so each value is
  // accumulated in PyTorch's row-major order.
  // Per column offset t: gather index w0 + min(t, kw − 1) (int32 for 16-lane gathers) and
  // whether the bin really has that column.
  int64_t max_kw = 0;
  for (int64_t i = 0; i < out_w; ++i) max_kw = std::max(max_kw, w1[i] - w0[i]);
  std::vector<int32_t> gidx(static_cast<std::size_t>(max_kw * out_w));
  std::vector<float> live(gidx.size()), fkw(out_w);
  for (int64_t i = 0; i < out_w; ++i) {
    const int64_t kw = w1[i] - w0[i];
    fkw[i] = static_cast<float>(kw);
    for (int64_t t = 0; t < max_kw; ++t) {
      gidx[static_cast<std::size_t>(t * out_w + i)] =
          static_cast<int32_t>(w0[i] + std::min(t, kw - 1));
      live[static_cast<std::size_t>(t * out_w + i)] = t < kw ? 1.0f : 0.0f;
    }
  }
  CMDR_CHECK(W < (int64_t{1} << 31), op, ": x ", x.str(), " is too wide");
  parallel_chunks(P * out_h, 8, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / out_h, oh = r % out_h;
      const float* in = xp + p * H * W;
      float* o = yp + r * out_w;
      std::fill(o, o + out_w, 0.0f);
      for (int64_t h = h0[oh]; h < h1[oh]; ++h) {
        const float* row = in + h * W;
        for (int64_t t = 0; t < max_kw; ++t) {
          const int32_t* gi = &gidx[static_cast<std::size_t>(t * out_w)];
          const float* lv = &live[static_cast<std::size_t>(t * out_w)];
#pragma omp simd
          for (int64_t ow = 0; ow < out_w; ++ow) {
            const float v = row[gi[ow]];
            o[ow] += lv[ow] != 0.0f ? v : 0.0f;
          }
        }
      }
      const float kh = static_cast<float>(h1[oh] - h0[oh]);
#pragma omp simd
      for (int64_t ow = 0; ow < out_w; ++ow) o[ow] = o[ow] / kh / fkw[ow];
    }
  });
  return y;
}
// PyTorch's order: outputs in row-major order, each scattering dy / kh / kw over its bin.
// One plane per thread, so every dx element sums its contributions in that same order.
Tensor adaptive_avg_pool2d_backward(const Tensor& dy, const Shape& x_shape) {
  const char* op = "adaptive_avg_pool2d_backward";
  check_grad_planes(op, dy, x_shape);
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = dy.size(2), Wo = dy.size(3);
  ProfileScope prof(op_name(Op::AdaptiveAvgPool2d), static_cast<double>(P * H * W),
                    4.0 * static_cast<double>(P * (H * W + Ho * Wo)));
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::zeros(x_shape);
  const float* gp = gc.data();
  float* dp = dx.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < P; ++p) {
    const float* g = gp + p * Ho * Wo;
    float* d = dp + p * H * W;
    for (int64_t oh = 0; oh < Ho; ++oh) {
      const int64_t h0 = adaptive_start(oh, H, Ho), h1 = adaptive_end(oh, H, Ho);
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t w0 = adaptive_start(ow, W, Wo), w1 = adaptive_end(ow, W, Wo);
        const float v = g[oh * Wo + ow] / static_cast<float>(h1 - h0) / static_cast<float>(w1 - w0);
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) d[h * W + w] += v;
      }
    }
  }
  return dx;
}

// ---- bilinear upsample, align_corners = false ----------------------------------------------
// x [B, C, H, W] -> [B, C, out_h, out_w], bit-identical to PyTorch's CPU kernel (see
// bilinear_value_cl / bilinear_value_sep in pointwise_detail.hpp for its two variants).
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
  if (!bilinear_channels_last_kernel(x.size(1), H, W)) {
    // Separable: each input row interpolated horizontally once, then rows blended.
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
          for (int64_t ow = 0; ow < out_w; ++ow)
            t[ow] = std::fma(r[j0[ow]], l0[ow], r[j1[ow]] * l1[ow]);
        }
        float* o = yp + p * out_h * out_w;
        for (int64_t oh = 0; oh < out_h; ++oh) {
          const LinearTap& a = th[oh];
          const float* t0 = rows.data() + a.i0 * out_w;
          const float* t1 = rows.data() + a.i1 * out_w;
          float* orow = o + oh * out_w;
#pragma omp simd
          for (int64_t ow = 0; ow < out_w; ++ow) orow[ow] = std::fma(t0[ow], a.l0, t1[ow] * a.l1);
        }
      }
    }
    return y;
  }
  // C == 1 or H·W == 1: four float weights per output, double accumulation.
  std::vector<double> wts(static_cast<std::size_t>(out_h * 4 * out_w));
  for (int64_t oh = 0; oh < out_h; ++oh)
    for (int64_t ow = 0; ow < out_w; ++ow) {
      const LinearTap &a = th[oh], &b = tw[ow];
      double* wr = &wts[static_cast<std::size_t>(oh * 4 * out_w)];
      wr[0 * out_w + ow] = a.l0 * b.l0;
      wr[1 * out_w + ow] = a.l0 * b.l1;
      wr[2 * out_w + ow] = a.l1 * b.l0;
      wr[3 * out_w + ow] = a.l1 * b.l1;
    }
  parallel_chunks(P * out_h, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t p = r / out_h, oh = r % out_h;
      const float* x0 = xp + (p * H + th[oh].i0) * W;
      const float* x1 = xp + (p * H + th[oh].i1) * W;
      const double* w = &wts[static_cast<std::size_t>(oh * 4 * out_w)];
      float* orow = yp + r * out_w;
#pragma omp simd
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const double s = w[ow] * static_cast<double>(x0[j0[ow]]) +
                         w[out_w + ow] * static_cast<double>(x0[j1[ow]]) +
                         w[2 * out_w + ow] * static_cast<double>(x1[j0[ow]]) +
                         w[3 * out_w + ow] * static_cast<double>(x1[j1[ow]]);
        orow[ow] = static_cast<float>(s);
      }
    }
  });
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

// ---- nearest resize (SPEC 3.2 float32 source index) ------------------------------------------
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

// ---- index_select / index_add along dim 0 ---------------------------------------------------
// index_select: x [N, ...] -> [idx.size(), ...]; rows copied in parallel.
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
