#pragma once
// Internal helpers shared by the pointwise kernels (optimised and reference): argument
// checks that name the op, the argument and the shapes, axis splitting and NumPy
// broadcasting of shapes. Not part of the ops contract.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/error.hpp"
#include "engine/tensor.hpp"

namespace cmdr::ops::detail {

inline void check_defined(const char* op, const char* arg, const Tensor& t) {
  CMDR_CHECK(t.defined(), op, ": argument '", arg, "' is undefined");
}

inline void check_same_shape(const char* op, const char* arg_a, const Tensor& a, const char* arg_b,
                             const Tensor& b) {
  check_defined(op, arg_a, a);
  check_defined(op, arg_b, b);
  CMDR_CHECK(a.shape() == b.shape(), op, ": ", arg_a, " ", a.str(), " vs ", arg_b, " ", b.str(),
             ": shapes must be equal");
}

// x viewed as [outer, n, inner] around `axis`.
struct AxisSplit {
  int64_t axis = 0, outer = 1, n = 1, inner = 1;
};

inline AxisSplit split_axis(const char* op, const Shape& shape, int64_t axis) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  const int64_t a = axis < 0 ? axis + nd : axis;
  CMDR_CHECK(a >= 0 && a < nd, op, ": axis ", axis, " out of range for shape ", shape_str(shape));
  AxisSplit s;
  s.axis = a;
  for (int64_t d = 0; d < a; ++d) s.outer *= shape[d];
  s.n = shape[a];
  for (int64_t d = a + 1; d < nd; ++d) s.inner *= shape[d];
  return s;
}

// Shape of a reduction over `axis` (kept as 1 or dropped).
inline Shape reduced_shape(const Shape& shape, int64_t axis, bool keepdim) {
  Shape out = shape;
  if (keepdim) {
    out[axis] = 1;
  } else {
    out.erase(out.begin() + axis);
  }
  return out;
}

// NumPy broadcasting (trailing alignment); errors name the op and both shapes.
inline Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const std::size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (std::size_t i = 0; i < nd; ++i) {
    const int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    const int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    CMDR_CHECK(da == db || da == 1 || db == 1, op, ": a ", shape_str(a), " and b ", shape_str(b),
               " cannot be broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

// Strides (in elements) that read a contiguous tensor of shape `in` as if it had the
// broadcast shape `out` (0 on broadcast dimensions).
inline Shape broadcast_strides(const Shape& in, const Shape& out) {
  Shape st(out.size(), 0);
  const Shape cs = contiguous_strides(in);
  const std::size_t lead = out.size() - in.size();
  for (std::size_t i = 0; i < in.size(); ++i) st[lead + i] = in[i] == 1 ? 0 : cs[i];
  return st;
}

// True when `shape` broadcasts to `target` (the reverse of reduce_to_shape).
inline bool broadcasts_to(const Shape& shape, const Shape& target) {
  if (shape.size() > target.size()) return false;
  const std::size_t lead = target.size() - shape.size();
  for (std::size_t i = 0; i < shape.size(); ++i)
    if (shape[i] != 1 && shape[i] != target[lead + i]) return false;
  return true;
}

inline void check_nchw(const char* op, const char* arg, const Tensor& x) {
  check_defined(op, arg, x);
  CMDR_CHECK(x.dim() == 4, op, ": ", arg, " must be [B, C, H, W], got ", x.str());
}

inline void check_index(const char* op, const std::vector<int64_t>& idx, int64_t n_rows) {
  for (std::size_t i = 0; i < idx.size(); ++i)
    CMDR_CHECK(idx[i] >= 0 && idx[i] < n_rows, op, ": idx[", i, "] = ", idx[i],
               " out of range [0, ", n_rows, ")");
}

// Bilinear source indices/weights along one axis, align_corners = false, as PyTorch's CPU
// kernel computes them (matched bit for bit against torch 1.13): scale = (float)in/out in
// float; src = scale·(dst + 0.5) − 0.5 in double, clamped at 0; i0 = floor(src),
// i1 = min(i0 + 1, in − 1); l1 = (float)clamp(src − i0, 0, 1); l0 = 1 − l1 in float.
// Same size in and out: the identity (i1 = i0, l1 = 0).
struct LinearTap {
  int64_t i0, i1;
  float l0, l1;
};
inline std::vector<LinearTap> bilinear_taps(int64_t in, int64_t out) {
  std::vector<LinearTap> taps(static_cast<std::size_t>(out));
  const double scale = static_cast<double>(static_cast<float>(in) / static_cast<float>(out));
  for (int64_t d = 0; d < out; ++d) {
    LinearTap t;
    if (in == out) {
      t = {d, d, 1.0f, 0.0f};
    } else {
      double src = scale * (static_cast<double>(d) + 0.5) - 0.5;
      if (src < 0.0) src = 0.0;
      const int64_t i0 = std::min(static_cast<int64_t>(src), in - 1);
      t.i0 = i0;
      t.i1 = i0 + (i0 < in - 1 ? 1 : 0);
      t.l1 = static_cast<float>(std::min(std::max(src - static_cast<double>(i0), 0.0), 1.0));
      t.l0 = 1.0f - t.l1;
    }
    taps[static_cast<std::size_t>(d)] = t;
  }
  return taps;
}

// PyTorch 1.13's CPU bilinear forward has two kernels, and we reproduce both bit for bit:
// - the input is also channels-last contiguous (C == 1 or H·W == 1): the four float weights
//   h·w, the weighted sum accumulated in double in the order (i0,j0), (i0,j1), (i1,j0),
//   (i1,j1), rounded once (bilinear_value_cl);
// - otherwise (every CMDR use: C = 768 or 1152): separable in float with fused
//   multiply-adds, t_r = fma(x[r][j0], w0, x[r][j1]·w1), y = fma(t_i0, h0, t_i1·h1).
inline bool bilinear_channels_last_kernel(int64_t C, int64_t H, int64_t W) {
  return C == 1 || H * W == 1;
}
inline float bilinear_value_cl(float x00, float x01, float x10, float x11, const LinearTap& h,
                               const LinearTap& w) {
  const double s = static_cast<double>(h.l0 * w.l0) * x00 + static_cast<double>(h.l0 * w.l1) * x01 +
                   static_cast<double>(h.l1 * w.l0) * x10 + static_cast<double>(h.l1 * w.l1) * x11;
  return static_cast<float>(s);
}
inline float bilinear_value_sep(float x00, float x01, float x10, float x11, const LinearTap& h,
                                const LinearTap& w) {
  const float t0 = std::fma(x00, w.l0, x01 * w.l1);
  const float t1 = std::fma(x10, w.l0, x11 * w.l1);
  return std::fma(t0, h.l0, t1 * h.l1);
}

// Nearest source index (SPEC 3.2): scale = (float)in/out; src = min(floor(dst·scale), in−1)
// in float32, as PyTorch interpolate(mode='nearest').
inline std::vector<int64_t> nearest_src(int64_t in, int64_t out) {
  std::vector<int64_t> src(static_cast<std::size_t>(out));
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t d = 0; d < out; ++d) {
    const int64_t s = static_cast<int64_t>(std::floor(static_cast<float>(d) * scale));
    src[static_cast<std::size_t>(d)] = std::min(s, in - 1);
  }
  return src;
}

// Adaptive pooling bin: [floor(i·In/Out), ceil((i+1)·In/Out)) in integer arithmetic.
inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) {
  return (i * in) / out;
}
inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) {
  return ((i + 1) * in + out - 1) / out;
}

}  // namespace cmdr::ops::detail

namespace cmdr::ops::detail {
// Runs f(begin, end) over [0, n) in fixed-size chunks with a static OpenMP schedule. The
// chunking does not depend on the thread count, so per-chunk work (and any per-chunk
// partial result) is identical for 1 or N threads.
template <typename F>
void parallel_chunks(int64_t n, int64_t chunk, F&& f) {
  const int64_t nchunks = (n + chunk - 1) / chunk;
  if (nchunks <= 1) {
    if (n > 0) f(int64_t{0}, n);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < nchunks; ++c) f(c * chunk, std::min(n, (c + 1) * chunk));
}
}  // namespace cmdr::ops::detail
