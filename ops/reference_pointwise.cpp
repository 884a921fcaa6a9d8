// Reference kernels (cmdr::ops::ref) for the non-dense ops: the plainest loops that compute
// each op's definition, in row-major order, with double accumulators where a sum is
// involved. The optimised kernels (ops/norm.cpp, elementwise.cpp, reduce.cpp,
// resample.cpp) are tested against these on odd shapes.
#include "ops/reference_pointwise.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/pointwise_detail.hpp"

namespace cmdr::ops::ref {
using namespace cmdr::ops::detail;

namespace {
void check_param(const char* op, const char* arg, const Tensor& t, int64_t n) {
  if (!t.defined()) return;
  CMDR_CHECK(t.dim() == 1 && t.size(0) == n, op, ": ", arg, " ", t.str(), " must be [", n, "]");
}
float param_or(const std::vector<float>& v, int64_t i, float dflt) {
  return v.empty() ? dflt : v[static_cast<std::size_t>(i)];
}
std::vector<float> vec_or_empty(const Tensor& t) {
  return t.defined() ? t.to_vector() : std::vector<float>{};
}
}  // namespace

// ---- batch_norm: x [B, C, *] -----------------------------------------------------------------
Tensor batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Tensor running_mean, Tensor running_var, bool training, float momentum,
                          float eps, BatchNormSaved* saved) {
  const char* op = "batch_norm";
  check_defined(op, "x", x);
  CMDR_CHECK(x.dim() >= 2, op, ": x must be [B, C, *], got ", x.str());
  const int64_t B = x.size(0), C = x.size(1), S = x.numel() / std::max<int64_t>(B * C, 1);
  check_param(op, "weight", weight, C);
  check_param(op, "bias", bias, C);
  check_param(op, "running_mean", running_mean, C);
  check_param(op, "running_var", running_var, C);
  const std::vector<float> xv = x.to_vector(), w = vec_or_empty(weight), b = vec_or_empty(bias);
  std::vector<float> mean(C), invstd(C);
  std::vector<double> md(C), isd(C);
  if (training) {
    const int64_t N = B * S;
    CMDR_CHECK(N > 1, op, ": training needs more than one value per channel, x ", x.str());
    for (int64_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (int64_t i = 0; i < B; ++i)
        for (int64_t k = 0; k < S; ++k) s += xv[(i * C + c) * S + k];
      const double m = s / static_cast<double>(N);
      double v = 0.0;
      for (int64_t i = 0; i < B; ++i)
        for (int64_t k = 0; k < S; ++k) {
          const double d = xv[(i * C + c) * S + k] - m;
          v += d * d;
        }
      const double var = v / static_cast<double>(N);
      md[c] = m;
      isd[c] = 1.0 / std::sqrt(var + static_cast<double>(eps));
      if (running_mean.defined()) {
        float& r = running_mean.data()[c * running_mean.stride(0)];
        r = static_cast<float>((1.0 - momentum) * r + static_cast<double>(momentum) * m);
      }
      if (running_var.defined()) {
        float& r = running_var.data()[c * running_var.stride(0)];
        const double unbiased = var * static_cast<double>(N) / static_cast<double>(N - 1);
        r = static_cast<float>((1.0 - momentum) * r + static_cast<double>(momentum) * unbiased);
      }
    }
  } else {
    CMDR_CHECK(running_mean.defined() && running_var.defined(), op,
               ": eval mode needs running_mean and running_var");
    const std::vector<float> rm = running_mean.to_vector(), rv = running_var.to_vector();
    for (int64_t c = 0; c < C; ++c) {
      md[c] = rm[c];
      isd[c] = 1.0 / std::sqrt(static_cast<double>(rv[c]) + eps);
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = static_cast<float>(md[c]);
    invstd[c] = static_cast<float>(isd[c]);
  }
  Tensor y = Tensor::empty(x.shape());
  float* yp = y.data();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t k = 0; k < S; ++k) {
        const int64_t j = (i * C + c) * S + k;
        yp[j] = static_cast<float>((xv[j] - md[c]) * isd[c] * param_or(w, c, 1.0f) +
                                   param_or(b, c, 0.0f));
      }
  if (saved) {
    saved->mean = Tensor::from_vector({C}, mean);
    saved->invstd = Tensor::from_vector({C}, invstd);
  }
  return y;
}

BatchNormGrads batch_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const BatchNormSaved& saved) {
  const char* op = "batch_norm_backward";
  check_same_shape(op, "dy", dy, "x", x);
  CMDR_CHECK(x.dim() >= 2, op, ": x must be [B, C, *], got ", x.str());
  const int64_t B = x.size(0), C = x.size(1), S = x.numel() / std::max<int64_t>(B * C, 1);
  check_param(op, "weight", weight, C);
  check_defined(op, "saved.mean", saved.mean);
  check_defined(op, "saved.invstd", saved.invstd);
  check_param(op, "saved.mean", saved.mean, C);
  check_param(op, "saved.invstd", saved.invstd, C);
  const std::vector<float> xv = x.to_vector(), g = dy.to_vector(), w = vec_or_empty(weight);
  const std::vector<float> mean = saved.mean.to_vector(), invstd = saved.invstd.to_vector();
  const double N = static_cast<double>(B * S);
  BatchNormGrads out;
  out.dx = Tensor::empty(x.shape());
  out.dweight = Tensor::empty({C});
  out.dbias = Tensor::empty({C});
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0.0, dot = 0.0;
    for (int64_t i = 0; i < B; ++i)
      for (int64_t k = 0; k < S; ++k) {
        const int64_t j = (i * C + c) * S + k;
        sum += g[j];
        dot += (static_cast<double>(xv[j]) - mean[c]) * g[j];
      }
    const double is = invstd[c], wc = param_or(w, c, 1.0f);
    const double k2 = dot * is * is / N, gm = sum / N;
    for (int64_t i = 0; i < B; ++i)
      for (int64_t k = 0; k < S; ++k) {
        const int64_t j = (i * C + c) * S + k;
        const double d = (static_cast<double>(xv[j]) - mean[c]) * k2;
        out.dx.data()[j] = static_cast<float>((g[j] - gm - d) * is * wc);
      }
    out.dweight.data()[c] = static_cast<float>(dot * is);
    out.dbias.data()[c] = static_cast<float>(sum);
  }
  return out;
}

// ---- layer_norm: x [..., D] -------------------------------------------------------------------
Tensor layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                          LayerNormSaved* saved) {
  const char* op = "layer_norm";
  check_defined(op, "x", x);
  CMDR_CHECK(x.dim() >= 1, op, ": x must have at least one dimension, got ", x.str());
  const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
  check_param(op, "weight", weight, D);
  check_param(op, "bias", bias, D);
  const std::vector<float> xv = x.to_vector(), w = vec_or_empty(weight), b = vec_or_empty(bias);
  std::vector<float> mean(R), rstd(R);
  Tensor y = Tensor::empty(x.shape());
  for (int64_t r = 0; r < R; ++r) {
    double s = 0.0;
    for (int64_t j = 0; j < D; ++j) s += xv[r * D + j];
    const double m = s / static_cast<double>(D);
    double v = 0.0;
    for (int64_t j = 0; j < D; ++j) v += (xv[r * D + j] - m) * (xv[r * D + j] - m);
    mean[r] = static_cast<float>(m);
    rstd[r] = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(D) + eps));
    for (int64_t j = 0; j < D; ++j)
      y.data()[r * D + j] =
          (xv[r * D + j] - mean[r]) * rstd[r] * param_or(w, j, 1.0f) + param_or(b, j, 0.0f);
  }
  if (saved) {
    Shape rs(x.shape().begin(), x.shape().end() - 1);
    saved->mean = Tensor::from_vector(rs, mean);
    saved->rstd = Tensor::from_vector(rs, rstd);
  }
  return y;
}

LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const LayerNormSaved& saved) {
  const char* op = "layer_norm_backward";
  check_same_shape(op, "dy", dy, "x", x);
  const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
  check_param(op, "weight", weight, D);
  check_defined(op, "saved.mean", saved.mean);
  check_defined(op, "saved.rstd", saved.rstd);
  CMDR_CHECK(saved.mean.numel() == R && saved.rstd.numel() == R, op, ": saved mean ",
             saved.mean.str(), " / rstd ", saved.rstd.str(), " must have ", R, " rows for x ",
             x.str());
  const std::vector<float> xv = x.to_vector(), g = dy.to_vector(), w = vec_or_empty(weight);
  const std::vector<float> mean = saved.mean.to_vector(), rstd = saved.rstd.to_vector();
  LayerNormGrads out;
  out.dx = Tensor::empty(x.shape());
  std::vector<double> dw(D, 0.0), db(D, 0.0);
  for (int64_t r = 0; r < R; ++r) {
    double a = 0.0, bsum = 0.0;
    for (int64_t j = 0; j < D; ++j) {
      const double xh = (static_cast<double>(xv[r * D + j]) - mean[r]) * rstd[r];
      const double gw = static_cast<double>(g[r * D + j]) * param_or(w, j, 1.0f);
      a += gw;
      bsum += gw * xh;
      dw[j] += g[r * D + j] * xh;
      db[j] += g[r * D + j];
    }
    for (int64_t j = 0; j < D; ++j) {
      const double xh = (static_cast<double>(xv[r * D + j]) - mean[r]) * rstd[r];
      const double gw = static_cast<double>(g[r * D + j]) * param_or(w, j, 1.0f);
      out.dx.data()[r * D + j] = static_cast<float>(
          rstd[r] * (gw - a / static_cast<double>(D) - xh * bsum / static_cast<double>(D)));
    }
  }
  out.dweight = Tensor::empty({D});
  out.dbias = Tensor::empty({D});
  for (int64_t j = 0; j < D; ++j) {
    out.dweight.data()[j] = static_cast<float>(dw[j]);
    out.dbias.data()[j] = static_cast<float>(db[j]);
  }
  return out;
}

// ---- elementwise ----------------------------------------------------------------------------
namespace {
template <typename F>
Tensor unary(const char* op, const Tensor& x, F f) {
  check_defined(op, "x", x);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty(x.shape());
  for (std::size_t i = 0; i < v.size(); ++i) y.data()[i] = f(v[i]);
  return y;
}
template <typename F>
Tensor unary_grad(const char* op, const char* arg, const Tensor& dy, const Tensor& s, F f) {
  check_same_shape(op, "dy", dy, arg, s);
  const std::vector<float> g = dy.to_vector(), v = s.to_vector();
  Tensor dx = Tensor::empty(s.shape());
  for (std::size_t i = 0; i < v.size(); ++i) dx.data()[i] = f(g[i], v[i]);
  return dx;
}
}  // namespace

Tensor gelu_forward(const Tensor& x) {
  return unary("gelu", x, [](float v) {
    return static_cast<float>(0.5 * v * (1.0 + std::erf(v * M_SQRT1_2)));
  });
}
Tensor gelu_backward(const Tensor& dy, const Tensor& x) {
  return unary_grad("gelu_backward", "x", dy, x, [](float g, float v) {
    const double cdf = 0.5 * (1.0 + std::erf(v * M_SQRT1_2));
    const double pdf = std::exp(-0.5 * v * v) * 0.5 * M_2_SQRTPI * M_SQRT1_2;
    return static_cast<float>(g * (cdf + v * pdf));
  });
}
Tensor relu_forward(const Tensor& x) {
  return unary("relu", x, [](float v) { return v > 0.0f ? v : 0.0f; });
}
Tensor relu_backward(const Tensor& dy, const Tensor& x) {
  return unary_grad("relu_backward", "x", dy, x,
                    [](float g, float v) { return v > 0.0f ? g : 0.0f; });
}
Tensor sigmoid_forward(const Tensor& x) {
  return unary("sigmoid", x,
               [](float v) { return static_cast<float>(1.0 / (1.0 + std::exp(-double(v)))); });
}
Tensor sigmoid_backward(const Tensor& dy, const Tensor& y) {
  return unary_grad("sigmoid_backward", "y", dy, y,
                    [](float g, float v) { return g * v * (1.0f - v); });
}
Tensor tanh_forward(const Tensor& x) {
  return unary("tanh", x, [](float v) { return static_cast<float>(std::tanh(double(v))); });
}
Tensor tanh_backward(const Tensor& dy, const Tensor& y) {
  return unary_grad("tanh_backward", "y", dy, y,
                    [](float g, float v) { return g * (1.0f - v * v); });
}
Tensor exp_forward(const Tensor& x) {
  return unary("exp", x, [](float v) { return static_cast<float>(std::exp(double(v))); });
}
Tensor exp_backward(const Tensor& dy, const Tensor& y) {
  return unary_grad("exp_backward", "y", dy, y, [](float g, float v) { return g * v; });
}
Tensor sqrt_forward(const Tensor& x) {
  return unary("sqrt", x, [](float v) { return std::sqrt(v); });
}
Tensor sqrt_backward(const Tensor& dy, const Tensor& y) {
  return unary_grad("sqrt_backward", "y", dy, y, [](float g, float v) { return g / (2.0f * v); });
}

Tensor softmax_forward(const Tensor& x) {
  check_defined("softmax", "x", x);
  CMDR_CHECK(x.dim() >= 1, "softmax: x must have at least one dimension, got ", x.str());
  const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty(x.shape());
  for (int64_t r = 0; r < R; ++r) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < D; ++j) m = std::max(m, v[r * D + j]);
    double s = 0.0;
    for (int64_t j = 0; j < D; ++j) s += std::exp(static_cast<double>(v[r * D + j]) - m);
    for (int64_t j = 0; j < D; ++j)
      y.data()[r * D + j] = static_cast<float>(std::exp(static_cast<double>(v[r * D + j]) - m) / s);
  }
  return y;
}
Tensor softmax_backward(const Tensor& dy, const Tensor& y) {
  check_same_shape("softmax_backward", "dy", dy, "y", y);
  const int64_t D = y.size(-1), R = y.numel() / std::max<int64_t>(D, 1);
  const std::vector<float> g = dy.to_vector(), v = y.to_vector();
  Tensor dx = Tensor::empty(y.shape());
  for (int64_t r = 0; r < R; ++r) {
    double dot = 0.0;
    for (int64_t j = 0; j < D; ++j) dot += static_cast<double>(g[r * D + j]) * v[r * D + j];
    for (int64_t j = 0; j < D; ++j)
      dx.data()[r * D + j] = static_cast<float>(v[r * D + j] * (g[r * D + j] - dot));
  }
  return dx;
}

Tensor dropout_forward(const Tensor& x, float p, bool training, Rng& rng, Tensor* mask) {
  check_defined("dropout", "x", x);
  CMDR_CHECK(p >= 0.0f && p <= 1.0f, "dropout: p must be in [0, 1], got ", p);
  if (!training || p == 0.0f) {
    if (mask) *mask = Tensor();
    return x.clone();
  }
  const std::vector<float> v = x.to_vector();
  Tensor m = Tensor::empty(x.shape()), y = Tensor::empty(x.shape());
  const float s = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  // The optimised op's counter-based mask (issue 8), element by element.
  const uint64_t key = rng.next_u64(), thr = keep_threshold(1.0 - static_cast<double>(p));
  for (std::size_t i = 0; i < v.size(); ++i) {
    m.data()[i] = counter_keep(key, i, thr) ? 1.0f : 0.0f;
    y.data()[i] = v[i] * m.data()[i] * s;
  }
  if (mask) *mask = m;
  return y;
}
Tensor dropout_backward(const Tensor& dy, const Tensor& mask, float p) {
  if (!mask.defined()) return dy.clone();
  check_same_shape("dropout_backward", "dy", dy, "mask", mask);
  const float s = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  const std::vector<float> g = dy.to_vector(), m = mask.to_vector();
  Tensor dx = Tensor::empty(dy.shape());
  for (std::size_t i = 0; i < g.size(); ++i) dx.data()[i] = g[i] * m[i] * s;
  return dx;
}

// ---- broadcasting binary ops
// ---------------------------------------------------------------------
namespace {
template <typename F>
Tensor binary(const char* op, const Tensor& a, const Tensor& b, F f) {
  check_defined(op, "a", a);
  check_defined(op, "b", b);
  const Shape out = broadcast_shapes(op, a.shape(), b.shape());
  const Shape sa = broadcast_strides(a.shape(), out), sb = broadcast_strides(b.shape(), out);
  const std::vector<float> av = a.to_vector(), bv = b.to_vector();
  Tensor y = Tensor::empty(out);
  std::vector<int64_t> ob(static_cast<std::size_t>(y.numel()));
  for_each_offset(out, sb, 0, [&](int64_t i, int64_t off) { ob[i] = off; });
  for_each_offset(out, sa, 0, [&](int64_t i, int64_t off) { y.data()[i] = f(av[off], bv[ob[i]]); });
  return y;
}
}  // namespace

Tensor add_forward(const Tensor& a, const Tensor& b) {
  return binary("add", a, b, [](float u, float v) { return u + v; });
}
Tensor sub_forward(const Tensor& a, const Tensor& b) {
  return binary("sub", a, b, [](float u, float v) { return u - v; });
}
Tensor mul_forward(const Tensor& a, const Tensor& b) {
  return binary("mul", a, b, [](float u, float v) { return u * v; });
}
Tensor div_forward(const Tensor& a, const Tensor& b) {
  return binary("div", a, b, [](float u, float v) { return u / v; });
}

Tensor reduce_to_shape(const Tensor& t, const Shape& shape) {
  check_defined("reduce_to_shape", "t", t);
  CMDR_CHECK(broadcasts_to(shape, t.shape()), "reduce_to_shape: ", shape_str(shape),
             " does not broadcast to t ", t.str());
  const Shape st = broadcast_strides(shape, t.shape());
  const std::vector<float> v = t.to_vector();
  std::vector<double> acc(static_cast<std::size_t>(shape_numel(shape)), 0.0);
  for_each_offset(t.shape(), st, 0, [&](int64_t i, int64_t off) { acc[off] += v[i]; });
  Tensor out = Tensor::empty(shape);
  for (std::size_t i = 0; i < acc.size(); ++i) out.data()[i] = static_cast<float>(acc[i]);
  return out;
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
BinaryGrads div_backward(const Tensor& dy, const Tensor& a, const Tensor& b) {
  check_binary_grad("div_backward", dy, a.shape(), b.shape());
  // d(a/b)/db = −a/b²
  Tensor db = binary("div_backward", a, b, [](float u, float v) { return -u / (v * v); });
  return {reduce_to_shape(div_forward(dy, b), a.shape()),
          reduce_to_shape(mul_forward(dy, db), b.shape())};
}
Tensor scale(const Tensor& x, float s) {
  return unary("scale", x, [s](float v) { return v * s; });
}

// ---- reductions ---------------------------------------------------------------------------------
Tensor sum_forward(const Tensor& x, int64_t axis, bool keepdim) {
  check_defined("sum", "x", x);
  const AxisSplit s = split_axis("sum", x.shape(), axis);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty(reduced_shape(x.shape(), s.axis, keepdim));
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double acc = 0.0;
      for (int64_t k = 0; k < s.n; ++k) acc += v[(o * s.n + k) * s.inner + i];
      y.data()[o * s.inner + i] = static_cast<float>(acc);
    }
  return y;
}
Tensor sum_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim) {
  check_defined("sum_backward", "dy", dy);
  const AxisSplit s = split_axis("sum_backward", x_shape, axis);
  CMDR_CHECK(dy.shape() == reduced_shape(x_shape, s.axis, keepdim), "sum_backward: dy ", dy.str(),
             " does not match x ", shape_str(x_shape), " reduced over axis ", axis);
  const std::vector<float> g = dy.to_vector();
  Tensor dx = Tensor::empty(x_shape);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t k = 0; k < s.n; ++k)
      for (int64_t i = 0; i < s.inner; ++i)
        dx.data()[(o * s.n + k) * s.inner + i] = g[o * s.inner + i];
  return dx;
}
Tensor mean_forward(const Tensor& x, int64_t axis, bool keepdim) {
  check_defined("mean", "x", x);
  const AxisSplit s = split_axis("mean", x.shape(), axis);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty(reduced_shape(x.shape(), s.axis, keepdim));
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double acc = 0.0;
      for (int64_t k = 0; k < s.n; ++k) acc += v[(o * s.n + k) * s.inner + i];
      y.data()[o * s.inner + i] = static_cast<float>(acc / static_cast<double>(s.n));
    }
  return y;
}
Tensor mean_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim) {
  const AxisSplit s = split_axis("mean_backward", x_shape, axis);
  return scale(sum_backward(dy, x_shape, axis, keepdim), 1.0f / static_cast<float>(s.n));
}
Tensor max_forward(const Tensor& x, int64_t axis, bool keepdim, std::vector<int64_t>* argmax) {
  check_defined("max", "x", x);
  const AxisSplit s = split_axis("max", x.shape(), axis);
  CMDR_CHECK(s.n > 0, "max: axis ", axis, " of x ", x.str(), " is empty");
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty(reduced_shape(x.shape(), s.axis, keepdim));
  if (argmax) argmax->assign(static_cast<std::size_t>(s.outer * s.inner), 0);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      float best = v[o * s.n * s.inner + i];
      int64_t at = 0;
      for (int64_t k = 1; k < s.n; ++k) {
        const float u = v[(o * s.n + k) * s.inner + i];
        if (std::isnan(best)) break;  // NaN propagates (first NaN wins)
        if (u > best || std::isnan(u)) {
          best = u;
          at = k;
        }
      }
      y.data()[o * s.inner + i] = best;
      if (argmax) (*argmax)[o * s.inner + i] = at;
    }
  return y;
}
Tensor max_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim,
                    const std::vector<int64_t>& argmax) {
  check_defined("max_backward", "dy", dy);
  const AxisSplit s = split_axis("max_backward", x_shape, axis);
  CMDR_CHECK(dy.shape() == reduced_shape(x_shape, s.axis, keepdim), "max_backward: dy ", dy.str(),
             " does not match x ", shape_str(x_shape), " reduced over axis ", axis);
  CMDR_CHECK(static_cast<int64_t>(argmax.size()) == dy.numel(), "max_backward: argmax has ",
             argmax.size(), " entries for dy ", dy.str());
  const std::vector<float> g = dy.to_vector();
  Tensor dx = Tensor::zeros(x_shape);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      const int64_t k = argmax[o * s.inner + i];
      CMDR_CHECK(k >= 0 && k < s.n, "max_backward: argmax ", k, " out of range [0, ", s.n, ")");
      dx.data()[(o * s.n + k) * s.inner + i] = g[o * s.inner + i];
    }
  return dx;
}

Tensor l2_normalize_forward(const Tensor& x, int64_t axis, float eps) {
  check_defined("l2_normalize", "x", x);
  const AxisSplit s = split_axis("l2_normalize", x.shape(), axis);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty(x.shape());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double ss = 0.0;
      for (int64_t k = 0; k < s.n; ++k) {
        const double u = v[(o * s.n + k) * s.inner + i];
        ss += u * u;
      }
      const double d = std::max(std::sqrt(ss), static_cast<double>(eps));
      for (int64_t k = 0; k < s.n; ++k) {
        const int64_t j = (o * s.n + k) * s.inner + i;
        y.data()[j] = static_cast<float>(v[j] / d);
      }
    }
  return y;
}
Tensor l2_normalize_backward(const Tensor& dy, const Tensor& x, int64_t axis, float eps) {
  check_same_shape("l2_normalize_backward", "dy", dy, "x", x);
  const AxisSplit s = split_axis("l2_normalize_backward", x.shape(), axis);
  const std::vector<float> v = x.to_vector(), g = dy.to_vector();
  Tensor dx = Tensor::empty(x.shape());
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double ss = 0.0, dot = 0.0;
      for (int64_t k = 0; k < s.n; ++k) {
        const int64_t j = (o * s.n + k) * s.inner + i;
        ss += static_cast<double>(v[j]) * v[j];
        dot += static_cast<double>(v[j]) * g[j];
      }
      const double nrm = std::sqrt(ss);
      // The clamp max(‖x‖, eps) passes the norm's gradient only when ‖x‖ >= eps.
      const bool active = nrm >= static_cast<double>(eps);
      const double d = active ? nrm : static_cast<double>(eps);
      for (int64_t k = 0; k < s.n; ++k) {
        const int64_t j = (o * s.n + k) * s.inner + i;
        const double r = active ? g[j] / d - v[j] * dot / (d * d * d) : g[j] / d;
        dx.data()[j] = static_cast<float>(r);
      }
    }
  return dx;
}

Tensor cosine_similarity_forward(const Tensor& a, const Tensor& b, int64_t axis, float eps) {
  check_same_shape("cosine_similarity", "a", a, "b", b);
  const AxisSplit s = split_axis("cosine_similarity", a.shape(), axis);
  const std::vector<float> av = a.to_vector(), bv = b.to_vector();
  Tensor y = Tensor::empty(reduced_shape(a.shape(), s.axis, false));
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double aa = 0.0, bb = 0.0, ab = 0.0;
      for (int64_t k = 0; k < s.n; ++k) {
        const int64_t j = (o * s.n + k) * s.inner + i;
        aa += static_cast<double>(av[j]) * av[j];
        bb += static_cast<double>(bv[j]) * bv[j];
        ab += static_cast<double>(av[j]) * bv[j];
      }
      const double da = std::max(std::sqrt(aa), static_cast<double>(eps));
      const double db = std::max(std::sqrt(bb), static_cast<double>(eps));
      y.data()[o * s.inner + i] = static_cast<float>(ab / (da * db));
    }
  return y;
}
BinaryGrads cosine_similarity_backward(const Tensor& dy, const Tensor& a, const Tensor& b,
                                       int64_t axis, float eps) {
  const char* op = "cosine_similarity_backward";
  check_same_shape(op, "a", a, "b", b);
  check_defined(op, "dy", dy);
  const AxisSplit s = split_axis(op, a.shape(), axis);
  CMDR_CHECK(dy.shape() == reduced_shape(a.shape(), s.axis, false), op, ": dy ", dy.str(),
             " does not match a ", a.str(), " without axis ", axis);
  const std::vector<float> av = a.to_vector(), bv = b.to_vector(), g = dy.to_vector();
  BinaryGrads out{Tensor::empty(a.shape()), Tensor::empty(b.shape())};
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      double aa = 0.0, bb = 0.0, ab = 0.0;
      for (int64_t k = 0; k < s.n; ++k) {
        const int64_t j = (o * s.n + k) * s.inner + i;
        aa += static_cast<double>(av[j]) * av[j];
        bb += static_cast<double>(bv[j]) * bv[j];
        ab += static_cast<double>(av[j]) * bv[j];
      }
      const double na = std::sqrt(aa), nb = std::sqrt(bb);
      const double da = std::max(na, static_cast<double>(eps));
      const double db = std::max(nb, static_cast<double>(eps));
      const double cs = ab / (da * db), gg = g[o * s.inner + i];
      const double ka = na >= eps ? cs / (da * na) : 0.0, kb = nb >= eps ? cs / (db * nb) : 0.0;
      for (int64_t k = 0; k < s.n; ++k) {
        const int64_t j = (o * s.n + k) * s.inner + i;
        out.da.data()[j] = static_cast<float>(gg * (bv[j] / (da * db) - ka * av[j]));
        out.db.data()[j] = static_cast<float>(gg * (av[j] / (da * db) - kb * bv[j]));
      }
    }
  return out;
}

// ---- pooling and resampling --------------------------------------------------------------------
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
}  // namespace

// Pooling follows PyTorch's float arithmetic exactly (sums in float, row-major window
// order; backward scatters in output order) so the optimised kernels can be compared bit
// for bit.
Tensor avg_pool2d_forward(const Tensor& x, int64_t k, int64_t pad) {
  check_nchw("avg_pool2d", "x", x);
  check_pool("avg_pool2d", x.shape(), k, pad);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1;
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty({x.size(0), x.size(1), Ho, Wo});
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        float s = 0.0f;
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < k; ++j) {
            const int64_t h = oh + i - pad, w = ow + j - pad;
            if (h >= 0 && h < H && w >= 0 && w < W) s += v[(p * H + h) * W + w];
          }
        y.data()[(p * Ho + oh) * Wo + ow] = s / static_cast<float>(k * k);
      }
  return y;
}
Tensor avg_pool2d_backward(const Tensor& dy, const Shape& x_shape, int64_t k, int64_t pad) {
  check_pool("avg_pool2d_backward", x_shape, k, pad);
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1;
  check_defined("avg_pool2d_backward", "dy", dy);
  CMDR_CHECK(dy.shape() == Shape({x_shape[0], x_shape[1], Ho, Wo}), "avg_pool2d_backward: dy ",
             dy.str(), " does not match x ", shape_str(x_shape), " pooled with k ", k, " pad ",
             pad);
  const std::vector<float> g = dy.to_vector();
  Tensor dx = Tensor::zeros(x_shape);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const float d = g[(p * Ho + oh) * Wo + ow] / static_cast<float>(k * k);
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < k; ++j) {
            const int64_t h = oh + i - pad, w = ow + j - pad;
            if (h >= 0 && h < H && w >= 0 && w < W) dx.data()[(p * H + h) * W + w] += d;
          }
      }
  return dx;
}

Tensor adaptive_avg_pool2d_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_nchw("adaptive_avg_pool2d", "x", x);
  check_out("adaptive_avg_pool2d", out_h, out_w);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w});
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t h0 = adaptive_start(oh, H, out_h), h1 = adaptive_end(oh, H, out_h);
        const int64_t w0 = adaptive_start(ow, W, out_w), w1 = adaptive_end(ow, W, out_w);
        float s = 0.0f;
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) s += v[(p * H + h) * W + w];
        y.data()[(p * out_h + oh) * out_w + ow] =
            s / static_cast<float>(h1 - h0) / static_cast<float>(w1 - w0);
      }
  return y;
}
Tensor adaptive_avg_pool2d_backward(const Tensor& dy, const Shape& x_shape) {
  check_nchw("adaptive_avg_pool2d_backward", "dy", dy);
  CMDR_CHECK(x_shape.size() == 4 && dy.size(0) == x_shape[0] && dy.size(1) == x_shape[1],
             "adaptive_avg_pool2d_backward: dy ", dy.str(), " does not match x ",
             shape_str(x_shape));
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = dy.size(2), Wo = dy.size(3);
  const std::vector<float> g = dy.to_vector();
  Tensor dx = Tensor::zeros(x_shape);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const int64_t h0 = adaptive_start(oh, H, Ho), h1 = adaptive_end(oh, H, Ho);
        const int64_t w0 = adaptive_start(ow, W, Wo), w1 = adaptive_end(ow, W, Wo);
        const float d =
            g[(p * Ho + oh) * Wo + ow] / static_cast<float>(h1 - h0) / static_cast<float>(w1 - w0);
        for (int64_t h = h0; h < h1; ++h)
          for (int64_t w = w0; w < w1; ++w) dx.data()[(p * H + h) * W + w] += d;
      }
  return dx;
}

Tensor upsample_bilinear2d_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_nchw("upsample_bilinear2d", "x", x);
  check_out("upsample_bilinear2d", out_h, out_w);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const std::vector<LinearTap> th = bilinear_taps(H, out_h), tw = bilinear_taps(W, out_w);
  const bool cl = bilinear_channels_last_kernel(x.size(1), H, W);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w});
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const LinearTap& a = th[oh];
        const LinearTap& b = tw[ow];
        const float* r0 = &v[(p * H + a.i0) * W];
        const float* r1 = &v[(p * H + a.i1) * W];
        y.data()[(p * out_h + oh) * out_w + ow] =
            cl ? bilinear_value_cl(r0[b.i0], r0[b.i1], r1[b.i0], r1[b.i1], a, b)
               : bilinear_value_sep(r0[b.i0], r0[b.i1], r1[b.i0], r1[b.i1], a, b);
      }
  return y;
}
Tensor upsample_bilinear2d_backward(const Tensor& dy, const Shape& x_shape) {
  check_nchw("upsample_bilinear2d_backward", "dy", dy);
  CMDR_CHECK(x_shape.size() == 4 && dy.size(0) == x_shape[0] && dy.size(1) == x_shape[1],
             "upsample_bilinear2d_backward: dy ", dy.str(), " does not match x ",
             shape_str(x_shape));
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = dy.size(2), Wo = dy.size(3);
  const std::vector<LinearTap> th = bilinear_taps(H, Ho), tw = bilinear_taps(W, Wo);
  const std::vector<float> g = dy.to_vector();
  std::vector<double> acc(static_cast<std::size_t>(P * H * W), 0.0);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow) {
        const LinearTap& a = th[oh];
        const LinearTap& b = tw[ow];
        const double gv = g[(p * Ho + oh) * Wo + ow];
        acc[(p * H + a.i0) * W + b.i0] += gv * a.l0 * b.l0;
        acc[(p * H + a.i0) * W + b.i1] += gv * a.l0 * b.l1;
        acc[(p * H + a.i1) * W + b.i0] += gv * a.l1 * b.l0;
        acc[(p * H + a.i1) * W + b.i1] += gv * a.l1 * b.l1;
      }
  Tensor dx = Tensor::empty(x_shape);
  for (std::size_t i = 0; i < acc.size(); ++i) dx.data()[i] = static_cast<float>(acc[i]);
  return dx;
}

Tensor resize_nearest2d_forward(const Tensor& x, int64_t out_h, int64_t out_w) {
  check_nchw("resize_nearest2d", "x", x);
  check_out("resize_nearest2d", out_h, out_w);
  const int64_t P = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const std::vector<int64_t> sh = nearest_src(H, out_h), sw = nearest_src(W, out_w);
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty({x.size(0), x.size(1), out_h, out_w});
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow)
        y.data()[(p * out_h + oh) * out_w + ow] = v[(p * H + sh[oh]) * W + sw[ow]];
  return y;
}
Tensor resize_nearest2d_backward(const Tensor& dy, const Shape& x_shape) {
  check_nchw("resize_nearest2d_backward", "dy", dy);
  CMDR_CHECK(x_shape.size() == 4 && dy.size(0) == x_shape[0] && dy.size(1) == x_shape[1],
             "resize_nearest2d_backward: dy ", dy.str(), " does not match x ", shape_str(x_shape));
  const int64_t P = x_shape[0] * x_shape[1], H = x_shape[2], W = x_shape[3];
  const int64_t Ho = dy.size(2), Wo = dy.size(3);
  const std::vector<int64_t> sh = nearest_src(H, Ho), sw = nearest_src(W, Wo);
  const std::vector<float> g = dy.to_vector();
  std::vector<double> acc(static_cast<std::size_t>(P * H * W), 0.0);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow)
        acc[(p * H + sh[oh]) * W + sw[ow]] += g[(p * Ho + oh) * Wo + ow];
  Tensor dx = Tensor::empty(x_shape);
  for (std::size_t i = 0; i < acc.size(); ++i) dx.data()[i] = static_cast<float>(acc[i]);
  return dx;
}

// ---- gather / scatter along dim 0
// ----------------------------------------------------------------
Tensor index_select_forward(const Tensor& x, const std::vector<int64_t>& idx) {
  check_defined("index_select", "x", x);
  CMDR_CHECK(x.dim() >= 1, "index_select: x must have at least one dimension, got ", x.str());
  check_index("index_select", idx, x.size(0));
  const int64_t row = x.numel() / std::max<int64_t>(x.size(0), 1);
  Shape os = x.shape();
  os[0] = static_cast<int64_t>(idx.size());
  const std::vector<float> v = x.to_vector();
  Tensor y = Tensor::empty(os);
  for (std::size_t i = 0; i < idx.size(); ++i)
    for (int64_t j = 0; j < row; ++j) y.data()[i * row + j] = v[idx[i] * row + j];
  return y;
}
Tensor index_add_forward(const Tensor& src, const std::vector<int64_t>& idx, int64_t n_rows) {
  check_defined("index_add", "src", src);
  CMDR_CHECK(src.dim() >= 1 && src.size(0) == static_cast<int64_t>(idx.size()), "index_add: src ",
             src.str(), " must have one row per index (", idx.size(), " indices)");
  check_index("index_add", idx, n_rows);
  const int64_t row = src.numel() / std::max<int64_t>(src.size(0), 1);
  Shape os = src.shape();
  os[0] = n_rows;
  const std::vector<float> v = src.to_vector();
  Tensor y = Tensor::zeros(os);
  for (std::size_t i = 0; i < idx.size(); ++i)
    for (int64_t j = 0; j < row; ++j) y.data()[idx[i] * row + j] += v[i * row + j];
  return y;
}
Tensor index_select_backward(const Tensor& dy, const std::vector<int64_t>& idx, int64_t n_rows) {
  return index_add_forward(dy, idx, n_rows);
}
Tensor index_add_backward(const Tensor& dy, const std::vector<int64_t>& idx) {
  return index_select_forward(dy, idx);
}

}  // namespace cmdr::ops::ref
