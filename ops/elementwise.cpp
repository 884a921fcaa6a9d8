// Optimised elementwise ops: activations (Eigen's vectorised erf/exp/tanh/logistic),
// softmax over the last dim, dropout, broadcasting binary ops. Work is cut into fixed-size
// chunks/rows (parallel_chunks, static schedule); no value depends on the thread count.
// GCC 12 reports false "maybe-uninitialized" warnings inside Eigen's AVX-512 packet code
// (the intrinsics' __Y placeholders); this file only, since warnings are errors.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <unsupported/Eigen/SpecialFunctions>
#include <vector>

#include "engine/profiler.hpp"
#include "ops/ops.hpp"
#include "ops/pointwise_detail.hpp"

namespace cmdr::ops {
using namespace detail;

namespace {
using ArrF = Eigen::Array<float, Eigen::Dynamic, 1>;
using MapF = Eigen::Map<ArrF>;
using CMapF = Eigen::Map<const ArrF>;
constexpr int64_t kChunk = 1 << 14;  // elements per parallel chunk (multiple of 16)

// y = f(x) chunkwise; f gets (const map in, map out).
template <typename F>
Tensor unary_map(Op op_id, const char* arg, const Tensor& x, double flops_per, F f) {
  const char* op = op_name(op_id);
  check_defined(op, arg, x);
  const int64_t n = x.numel();
  ProfileScope prof(op, flops_per * static_cast<double>(n), 8.0 * static_cast<double>(n));
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape());
  const float* xp = xc.data();
  float* yp = y.data();
  parallel_chunks(n, kChunk, [&](int64_t b, int64_t e) {
    CMapF in(xp + b, e - b);
    MapF out(yp + b, e - b);
    f(in, out);
  });
  return y;
}

// dx = f(dy, s) chunkwise, s = the saved x or y.
template <typename F>
Tensor binary_map(Op op_id, const char* op, const char* arg, const Tensor& dy, const Tensor& s,
                  double flops_per, F f) {
  check_same_shape(op, "dy", dy, arg, s);
  const int64_t n = s.numel();
  ProfileScope prof(op_name(op_id), flops_per * static_cast<double>(n),
                    12.0 * static_cast<double>(n));
  const Tensor gc = dy.contiguous(), sc = s.contiguous();
  Tensor dx = Tensor::empty(s.shape());
  const float* gp = gc.data();
  const float* sp = sc.data();
  float* dp = dx.data();
  parallel_chunks(n, kChunk, [&](int64_t b, int64_t e) {
    CMapF g(gp + b, e - b);
    CMapF v(sp + b, e - b);
    MapF out(dp + b, e - b);
    f(g, v, out);
  });
  return dx;
}

constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;
}  // namespace

// ---- activations (x, y, dy: any shape; outputs contiguous, same shape) ----------------------
Tensor gelu_forward(const Tensor& x) {
  return unary_map(Op::Gelu, "x", x, 8.0, [](const CMapF& in, MapF& out) {
    out = 0.5f * in * (1.0f + (in * kSqrt1_2).erf());
  });
}
// d/dx x·Φ(x) = Φ(x) + x·φ(x)
Tensor gelu_backward(const Tensor& dy, const Tensor& x) {
  return binary_map(
      Op::Gelu, "gelu_backward", "x", dy, x, 14.0, [](const CMapF& g, const CMapF& v, MapF& out) {
        out =
            g * (0.5f * (1.0f + (v * kSqrt1_2).erf()) + v * ((-0.5f * v * v).exp() * kInvSqrt2Pi));
      });
}
Tensor relu_forward(const Tensor& x) {
  return unary_map(Op::Relu, "x", x, 1.0,
                   [](const CMapF& in, MapF& out) { out = (in > 0.0f).select(in, 0.0f); });
}
Tensor relu_backward(const Tensor& dy, const Tensor& x) {
  return binary_map(
      Op::Relu, "relu_backward", "x", dy, x, 1.0,
      [](const CMapF& g, const CMapF& v, MapF& out) { out = (v > 0.0f).select(g, 0.0f); });
}
Tensor sigmoid_forward(const Tensor& x) {
  return unary_map(Op::Sigmoid, "x", x, 4.0,
                   [](const CMapF& in, MapF& out) { out = in.logistic(); });
}
Tensor sigmoid_backward(const Tensor& dy, const Tensor& y) {
  return binary_map(Op::Sigmoid, "sigmoid_backward", "y", dy, y, 3.0,
                    [](const CMapF& g, const CMapF& v, MapF& out) { out = g * v * (1.0f - v); });
}
Tensor tanh_forward(const Tensor& x) {
  return unary_map(Op::Tanh, "x", x, 4.0, [](const CMapF& in, MapF& out) { out = in.tanh(); });
}
Tensor tanh_backward(const Tensor& dy, const Tensor& y) {
  return binary_map(Op::Tanh, "tanh_backward", "y", dy, y, 3.0,
                    [](const CMapF& g, const CMapF& v, MapF& out) { out = g * (1.0f - v * v); });
}
Tensor exp_forward(const Tensor& x) {
  return unary_map(Op::Exp, "x", x, 4.0, [](const CMapF& in, MapF& out) { out = in.exp(); });
}
Tensor exp_backward(const Tensor& dy, const Tensor& y) {
  return binary_map(Op::Exp, "exp_backward", "y", dy, y, 1.0,
                    [](const CMapF& g, const CMapF& v, MapF& out) { out = g * v; });
}
Tensor sqrt_forward(const Tensor& x) {
  return unary_map(Op::Sqrt, "x", x, 1.0, [](const CMapF& in, MapF& out) { out = in.sqrt(); });
}
Tensor sqrt_backward(const Tensor& dy, const Tensor& y) {
  return binary_map(Op::Sqrt, "sqrt_backward", "y", dy, y, 2.0,
                    [](const CMapF& g, const CMapF& v, MapF& out) { out = g / (2.0f * v); });
}

// ---- softmax over the last dim: x [R, D] ---------------------------------------------------
// y = exp(x − max)/Σexp(x − max) per row; the sum is a float Eigen reduction (fixed order
// for a given D). Backward: dx = y·(dy − Σ dy·y).
Tensor softmax_forward(const Tensor& x) {
  const char* op = op_name(Op::Softmax);
  check_defined(op, "x", x);
  CMDR_CHECK(x.dim() >= 1, op, ": x must have at least one dimension, got ", x.str());
  const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
  ProfileScope prof(op, 6.0 * static_cast<double>(x.numel()), 8.0 * x.numel());
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape());
  const float* xp = xc.data();
  float* yp = y.data();
  if (D == 0) return y;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    CMapF in(xp + r * D, D);
    MapF out(yp + r * D, D);
    const float m = in.maxCoeff();
    out = (in - m).exp();
    const double s = static_cast<double>(out.sum());
    out *= static_cast<float>(1.0 / s);
  }
  return y;
}
Tensor softmax_backward(const Tensor& dy, const Tensor& y) {
  const char* op = "softmax_backward";
  check_same_shape(op, "dy", dy, "y", y);
  CMDR_CHECK(y.dim() >= 1, op, ": y must have at least one dimension, got ", y.str());
  const int64_t D = y.size(-1), R = y.numel() / std::max<int64_t>(D, 1);
  ProfileScope prof(op_name(Op::Softmax), 4.0 * static_cast<double>(y.numel()), 12.0 * y.numel());
  const Tensor gc = dy.contiguous(), yc = y.contiguous();
  Tensor dx = Tensor::empty(y.shape());
  const float* gp = gc.data();
  const float* yp = yc.data();
  float* dp = dx.data();
  if (D == 0) return dx;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    CMapF g(gp + r * D, D);
    CMapF v(yp + r * D, D);
    MapF out(dp + r * D, D);
    const float dot = (g * v).sum();
    out = v * (g - dot);
  }
  return dx;
}

// ---- dropout ------------------------------------------------------------------------------------
// Counter-based mask (issue 8): element i is kept iff counter_keep(key, i, thr), computed in
// the loop (no mask tensor, AVX-512 64-bit lanes), so y = x·m·1/(1 − p) is one parallel pass
// and the same for any thread count; the backward remakes m from (key, p). p = 1 → zeros.
namespace {
float dropout_scale(float p) {
  return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}
// out[i] = in[i]·m(i)·s over n elements (both contiguous).
void dropout_apply(const float* in, float* out, int64_t n, const DropoutMask& m) {
  const uint64_t key = m.key, thr = keep_threshold(1.0 - static_cast<double>(m.p));
  const float s = dropout_scale(m.p);
  parallel_chunks(n, kChunk, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      const float keep = counter_keep(key, static_cast<uint64_t>(i), thr) ? 1.0f : 0.0f;
      out[i] = in[i] * keep * s;
    }
  });
}
}  // namespace

Tensor dropout_forward(const Tensor& x, float p, bool training, Rng& rng, DropoutMask* mask) {
  const char* op = op_name(Op::Dropout);
  check_defined(op, "x", x);
  CMDR_CHECK(p >= 0.0f && p <= 1.0f, op, ": p must be in [0, 1], got ", p);
  if (mask) *mask = DropoutMask{};
  // The identity returns x itself, as PyTorch does (ag::dropout returned the input Var
  // already); ops never write into their inputs, so sharing is safe.
  if (!training || p == 0.0f) return x;
  const int64_t n = x.numel();
  ProfileScope prof(op, 2.0 * static_cast<double>(n), 8.0 * static_cast<double>(n));
  const DropoutMask m{rng.next_u64(), p, n};
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(x.shape());
  dropout_apply(xc.data(), y.data(), n, m);
  if (mask) *mask = m;
  return y;
}
Tensor dropout_backward(const Tensor& dy, const DropoutMask& mask) {
  const char* op = "dropout_backward";
  check_defined(op, "dy", dy);
  if (!mask.defined()) return dy.clone();  // eval or p == 0: identity
  CMDR_CHECK(dy.numel() == mask.n, op, ": dy ", dy.str(), " has ", dy.numel(),
             " elements, the mask ", mask.n);
  ProfileScope prof(op_name(Op::Dropout), 2.0 * static_cast<double>(mask.n),
                    8.0 * static_cast<double>(mask.n));
  const Tensor gc = dy.contiguous();
  Tensor dx = Tensor::empty(dy.shape());
  dropout_apply(gc.data(), dx.data(), mask.n, mask);
  return dx;
}
Tensor dropout_mask_values(const DropoutMask& mask, const Shape& shape) {
  if (!mask.defined()) return Tensor();
  CMDR_CHECK(shape_numel(shape) == mask.n, "dropout_mask_values: shape ", shape_str(shape), " vs ",
             mask.n, " mask elements");
  Tensor m = Tensor::empty(shape);
  float* mp = m.data();
  const uint64_t thr = keep_threshold(1.0 - static_cast<double>(mask.p));
  parallel_chunks(mask.n, kChunk, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      mp[i] = counter_keep(mask.key, static_cast<uint64_t>(i), thr) ? 1.0f : 0.0f;
  });
  return m;
}
Tensor dropout_backward(const Tensor& dy, const Tensor& mask, float p) {
  const char* op = "dropout_backward";
  check_defined(op, "dy", dy);
  CMDR_CHECK(p >= 0.0f && p <= 1.0f, op, ": p must be in [0, 1], got ", p);
  if (!mask.defined()) return dy.clone();  // eval or p == 0: identity
  const float s = dropout_scale(p);
  return binary_map(Op::Dropout, op, "mask", dy, mask, 2.0,
                    [s](const CMapF& g, const CMapF& m, MapF& out) { out = g * m * s; });
}

// ---- broadcasting binary ops
// ---------------------------------------------------------------------
namespace {
// Output shape + per-operand strides with adjacent dims merged where both operands allow,
// so the innermost loop is as long as possible (stride 1 or 0 for each operand).
struct BcastPlan {
  Shape shape, sa, sb;
};
BcastPlan plan_broadcast(const Shape& out, const Shape& as, const Shape& bs) {
  const Shape sa = broadcast_strides(as, out), sb = broadcast_strides(bs, out);
  BcastPlan p;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == 1) continue;  // size-1 dims contribute nothing
    if (!p.shape.empty() && p.sa.back() == sa[i] * out[i] && p.sb.back() == sb[i] * out[i]) {
      p.shape.back() *= out[i];
      p.sa.back() = sa[i];
      p.sb.back() = sb[i];
    } else {
      p.shape.push_back(out[i]);
      p.sa.push_back(sa[i]);
      p.sb.push_back(sb[i]);
    }
  }
  if (p.shape.empty()) {
    p.shape = {1};
    p.sa = {0};
    p.sb = {0};
  }
  return p;
}

template <typename F>
Tensor broadcast_binary(Op op_id, const Tensor& a, const Tensor& b, F f) {
  const char* op = op_name(op_id);
  check_defined(op, "a", a);
  check_defined(op, "b", b);
  const Shape out = broadcast_shapes(op, a.shape(), b.shape());
  Tensor y = Tensor::empty(out);
  const int64_t n = y.numel();
  ProfileScope prof(op, static_cast<double>(n),
                    4.0 * static_cast<double>(n + a.numel() + b.numel()));
  if (n == 0) return y;
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  const float* ap = ac.data();
  const float* bp = bc.data();
  float* yp = y.data();
  const BcastPlan pl = plan_broadcast(out, a.shape(), b.shape());
  const int64_t nd = static_cast<int64_t>(pl.shape.size());
  const int64_t inner = pl.shape.back(), ia = pl.sa.back(), ib = pl.sb.back();
  const int64_t rows = n / inner;
  // Tiles: (row, column block); each tile decodes its row's offsets once.
  const int64_t tile = std::min<int64_t>(inner, kChunk);
  const int64_t tiles_per_row = (inner + tile - 1) / tile;
  parallel_chunks(rows * tiles_per_row, std::max<int64_t>(1, kChunk / inner),
                  [&](int64_t t0, int64_t t1) {
                    for (int64_t t = t0; t < t1; ++t) {
                      const int64_t row = t / tiles_per_row, c0 = (t % tiles_per_row) * tile;
                      const int64_t c1 = std::min(inner, c0 + tile);
                      int64_t oa = 0, ob = 0, rem = row;
                      for (int64_t d = nd - 2; d >= 0; --d) {
                        const int64_t i = rem % pl.shape[d];
                        rem /= pl.shape[d];
                        oa += i * pl.sa[d];
                        ob += i * pl.sb[d];
                      }
                      float* yr = yp + row * inner;
                      const float* ar = ap + oa;
                      const float* br = bp + ob;
                      if (ia == 1 && ib == 1) {
#pragma omp simd
                        for (int64_t j = c0; j < c1; ++j) yr[j] = f(ar[j], br[j]);
                      } else if (ia == 1) {
                        const float bv = br[0];
#pragma omp simd
                        for (int64_t j = c0; j < c1; ++j) yr[j] = f(ar[j], bv);
                      } else if (ib == 1) {
                        const float av = ar[0];
#pragma omp simd
                        for (int64_t j = c0; j < c1; ++j) yr[j] = f(av, br[j]);
                      } else {
                        for (int64_t j = c0; j < c1; ++j) yr[j] = f(ar[j * ia], br[j * ib]);
                      }
                    }
                  });
  return y;
}
}  // namespace

// a, b: NumPy-broadcastable shapes -> broadcast shape.
Tensor add_forward(const Tensor& a, const Tensor& b) {
  return broadcast_binary(Op::Add, a, b, [](float u, float v) { return u + v; });
}
Tensor sub_forward(const Tensor& a, const Tensor& b) {
  return broadcast_binary(Op::Sub, a, b, [](float u, float v) { return u - v; });
}
Tensor mul_forward(const Tensor& a, const Tensor& b) {
  return broadcast_binary(Op::Mul, a, b, [](float u, float v) { return u * v; });
}
Tensor div_forward(const Tensor& a, const Tensor& b) {
  return broadcast_binary(Op::Div, a, b, [](float u, float v) { return u / v; });
}
Tensor scale(const Tensor& x, float s) {
  return unary_map(Op::Mul, "x", x, 1.0, [s](const CMapF& in, MapF& out) { out = in * s; });
}

// Sums t down to `shape` (which must broadcast to t's shape): first the extra leading dims
// (as one axis), then every dim where shape has 1 and t does not (keepdim). Each step is a
// deterministic sum_forward.
Tensor reduce_to_shape(const Tensor& t, const Shape& shape) {
  check_defined("reduce_to_shape", "t", t);
  CMDR_CHECK(broadcasts_to(shape, t.shape()), "reduce_to_shape: ", shape_str(shape),
             " does not broadcast to t ", t.str());
  if (t.shape() == shape) return t.contiguous();
  Tensor r = t;
  const int64_t lead = t.dim() - static_cast<int64_t>(shape.size());
  if (lead > 0) {
    Shape s2{-1};
    s2.insert(s2.end(), t.shape().end() - static_cast<int64_t>(shape.size()), t.shape().end());
    r = sum_forward(r.reshape(s2), 0, false);
  }
  for (std::size_t d = 0; d < shape.size(); ++d)
    if (shape[d] == 1 && r.size(static_cast<int64_t>(d)) != 1)
      r = sum_forward(r, static_cast<int64_t>(d), true);
  return r.reshape(shape);
}

namespace {
// dy must have the broadcast shape of the two operands.
void check_binary_grad(const char* op, const Tensor& dy, const Shape& a, const Shape& b) {
  check_defined(op, "dy", dy);
  const Shape out = broadcast_shapes(op, a, b);
  CMDR_CHECK(dy.shape() == out, op, ": dy ", dy.str(), " vs the broadcast of a ", shape_str(a),
             " and b ", shape_str(b), " (", shape_str(out), ")");
}
}  // namespace

BinaryGrads add_backward(const Tensor& dy, const Shape& a_shape, const Shape& b_shape) {
  check_binary_grad("add_backward", dy, a_shape, b_shape);
  return {reduce_to_shape(dy, a_shape), reduce_to_shape(dy, b_shape)};
}
BinaryGrads sub_backward(const Tensor& dy, const Shape& a_shape, const Shape& b_shape) {
  check_binary_grad("sub_backward", dy, a_shape, b_shape);
  return {reduce_to_shape(dy, a_shape), scale(reduce_to_shape(dy, b_shape), -1.0f)};
}
BinaryGrads mul_backward(const Tensor& dy, const Tensor& a, const Tensor& b) {
  check_binary_grad("mul_backward", dy, a.shape(), b.shape());
  return {reduce_to_shape(mul_forward(dy, b), a.shape()),
          reduce_to_shape(mul_forward(dy, a), b.shape())};
}
// d(a/b)/da = 1/b; d(a/b)/db = −a/b² (computed as −(dy/b)·(a/b), PyTorch's order differs
// only in rounding).
BinaryGrads div_backward(const Tensor& dy, const Tensor& a, const Tensor& b) {
  check_binary_grad("div_backward", dy, a.shape(), b.shape());
  const Tensor gb = div_forward(dy, b);
  const Tensor q = div_forward(a, b);
  return {reduce_to_shape(gb, a.shape()),
          reduce_to_shape(broadcast_binary(Op::Div, gb, q, [](float u, float v) { return -u * v; }),
                          b.shape())};
}

}  // namespace cmdr::ops
