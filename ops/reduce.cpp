// Optimised reductions along one axis (sum, mean, max), l2_normalize and cosine similarity.
// x is viewed as [outer, n, inner]. Every output element is reduced by one thread in a
// fixed order (double accumulators for sums), so results do not depend on the thread count.
// l2_normalize / cosine / max with inner > 1 transpose the axis to the end first (a copy);
// the model uses them along the last axis.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/profiler.hpp"
#include "ops/ops.hpp"
#include "ops/pointwise_detail.hpp"

namespace cmdr::ops {
using namespace detail;

namespace {
constexpr int64_t kColBlock = 256;  // inner columns per tile for strided reductions

// y[o, i] = scale · Σ_k x[o, k, i] in double.
void sum_kernel(const float* xp, float* yp, const AxisSplit& s, double scale) {
  if (s.inner == 1) {
    parallel_chunks(s.outer, std::max<int64_t>(1, 4096 / std::max<int64_t>(s.n, 1)),
                    [&](int64_t o0, int64_t o1) {
                      for (int64_t o = o0; o < o1; ++o) {
                        const float* r = xp + o * s.n;
                        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
                        for (int64_t k = 0; k < s.n; ++k) acc += static_cast<double>(r[k]);
                        yp[o] = static_cast<float>(acc * scale);
                      }
                    });
    return;
  }
  const int64_t nb = (s.inner + kColBlock - 1) / kColBlock;
  parallel_chunks(s.outer * nb, 1, [&](int64_t t0, int64_t t1) {
    double acc[kColBlock];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = t / nb, i0 = (t % nb) * kColBlock;
      const int64_t w = std::min(kColBlock, s.inner - i0);
      std::fill(acc, acc + w, 0.0);
      for (int64_t k = 0; k < s.n; ++k) {
        const float* r = xp + (o * s.n + k) * s.inner + i0;
#pragma omp simd
        for (int64_t j = 0; j < w; ++j) acc[j] += static_cast<double>(r[j]);
      }
      float* yr = yp + o * s.inner + i0;
      for (int64_t j = 0; j < w; ++j) yr[j] = static_cast<float>(acc[j] * scale);
    }
  });
}

// dx[o, k, i] = scale · dy[o, i]
Tensor expand_kernel(const char* op, const Tensor& dy, const Shape& x_shape, int64_t axis,
                     bool keepdim, float scale) {
  check_defined(op, "dy", dy);
  const AxisSplit s = split_axis(op, x_shape, axis);
  CMDR_CHECK(dy.shape() == reduced_shape(x_shape, s.axis, keepdim), op, ": dy ", dy.str(),
             " does not match x ", shape_str(x_shape), " reduced over axis ", axis,
             keepdim ? " (keepdim)" : "");
  const Tensor gc = dy.contiguous();
  const float* gp = gc.data();
  Tensor dx = Tensor::empty(x_shape);
  float* dp = dx.data();
  parallel_chunks(s.outer * s.n, std::max<int64_t>(1, 16384 / std::max<int64_t>(s.inner, 1)),
                  [&](int64_t r0, int64_t r1) {
                    for (int64_t r = r0; r < r1; ++r) {
                      const float* g = gp + (r / s.n) * s.inner;
                      float* d = dp + r * s.inner;
#pragma omp simd
                      for (int64_t i = 0; i < s.inner; ++i) d[i] = g[i] * scale;
                    }
                  });
  return dx;
}

// [outer, n, inner] -> contiguous [outer, inner, n] (axis moved last), and back.
Tensor axis_last(const Tensor& xc, const AxisSplit& s) {
  return xc.reshape({s.outer, s.n, s.inner}).permute({0, 2, 1}).contiguous();
}
Tensor axis_back(const Tensor& t, const AxisSplit& s, const Shape& shape) {
  return t.reshape({s.outer, s.inner, s.n}).permute({0, 2, 1}).contiguous().reshape(shape);
}
}  // namespace

// ---- sum / mean: x [..., n (axis), ...] -> axis dropped (or kept as 1) -------------------------
Tensor sum_forward(const Tensor& x, int64_t axis, bool keepdim) {
  const char* op = op_name(Op::Sum);
  check_defined(op, "x", x);
  const AxisSplit s = split_axis(op, x.shape(), axis);
  ProfileScope prof(op, static_cast<double>(x.numel()), 4.0 * static_cast<double>(x.numel()));
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(reduced_shape(x.shape(), s.axis, keepdim));
  sum_kernel(xc.data(), y.data(), s, 1.0);
  return y;
}
Tensor sum_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim) {
  ProfileScope prof(op_name(Op::Sum), 0.0, 4.0 * static_cast<double>(shape_numel(x_shape)));
  return expand_kernel("sum_backward", dy, x_shape, axis, keepdim, 1.0f);
}
Tensor mean_forward(const Tensor& x, int64_t axis, bool keepdim) {
  const char* op = op_name(Op::Mean);
  check_defined(op, "x", x);
  const AxisSplit s = split_axis(op, x.shape(), axis);
  ProfileScope prof(op, static_cast<double>(x.numel()), 4.0 * static_cast<double>(x.numel()));
  const Tensor xc = x.contiguous();
  Tensor y = Tensor::empty(reduced_shape(x.shape(), s.axis, keepdim));
  sum_kernel(xc.data(), y.data(), s, 1.0 / static_cast<double>(s.n));
  return y;
}
Tensor mean_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim) {
  const AxisSplit s = split_axis("mean_backward", x_shape, axis);
  ProfileScope prof(op_name(Op::Mean), 0.0, 4.0 * static_cast<double>(shape_numel(x_shape)));
  return expand_kernel("mean_backward", dy, x_shape, axis, keepdim, 1.0f / static_cast<float>(s.n));
}

// ---- max (first index of the maximum; NaN propagates) -----------------------------------------
Tensor max_forward(const Tensor& x, int64_t axis, bool keepdim, std::vector<int64_t>* argmax) {
  const char* op = op_name(Op::Max);
  check_defined(op, "x", x);
  const AxisSplit s = split_axis(op, x.shape(), axis);
  CMDR_CHECK(s.n > 0, op, ": axis ", axis, " of x ", x.str(), " is empty");
  ProfileScope prof(op, static_cast<double>(x.numel()), 4.0 * static_cast<double>(x.numel()));
  const Tensor xc = s.inner == 1 ? x.contiguous() : axis_last(x.contiguous(), s);
  const float* xp = xc.data();
  const int64_t rows = s.outer * s.inner;
  Tensor y = Tensor::empty(reduced_shape(x.shape(), s.axis, keepdim));
  float* yp = y.data();
  if (argmax) argmax->assign(static_cast<std::size_t>(rows), 0);
  int64_t* ap = argmax ? argmax->data() : nullptr;
  parallel_chunks(rows, std::max<int64_t>(1, 4096 / s.n), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* v = xp + r * s.n;
      float best = v[0];
      int64_t at = 0;
      for (int64_t k = 1; k < s.n && !std::isnan(best); ++k)
        if (v[k] > best || std::isnan(v[k])) {
          best = v[k];
          at = k;
        }
      yp[r] = best;
      if (ap) ap[r] = at;
    }
  });
  return y;
}
Tensor max_backward(const Tensor& dy, const Shape& x_shape, int64_t axis, bool keepdim,
                    const std::vector<int64_t>& argmax) {
  const char* op = "max_backward";
  check_defined(op, "dy", dy);
  const AxisSplit s = split_axis(op, x_shape, axis);
  CMDR_CHECK(dy.shape() == reduced_shape(x_shape, s.axis, keepdim), op, ": dy ", dy.str(),
             " does not match x ", shape_str(x_shape), " reduced over axis ", axis);
  CMDR_CHECK(static_cast<int64_t>(argmax.size()) == dy.numel(), op, ": argmax has ", argmax.size(),
             " entries for dy ", dy.str());
  for (int64_t k : argmax)
    CMDR_CHECK(k >= 0 && k < s.n, op, ": argmax ", k, " out of range [0, ", s.n, ")");
  ProfileScope prof(op_name(Op::Max), 0.0, 4.0 * static_cast<double>(shape_numel(x_shape)));
  const Tensor gc = dy.contiguous();
  const float* gp = gc.data();
  Tensor dx = Tensor::zeros(x_shape);
  float* dp = dx.data();
  parallel_chunks(s.outer, 1, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t r = o * s.inner + i;
        dp[(o * s.n + argmax[static_cast<std::size_t>(r)]) * s.inner + i] = gp[r];
      }
  });
  return dx;
}

// ---- l2_normalize: y = x / max(‖x‖₂, eps) along axis
// ----------------------------------------------
Tensor l2_normalize_forward(const Tensor& x, int64_t axis, float eps) {
  const char* op = op_name(Op::L2Normalize);
  check_defined(op, "x", x);
  const AxisSplit s = split_axis(op, x.shape(), axis);
  ProfileScope prof(op, 3.0 * static_cast<double>(x.numel()), 8.0 * x.numel());
  const Tensor xc = s.inner == 1 ? x.contiguous() : axis_last(x.contiguous(), s);
  const float* xp = xc.data();
  Tensor y = Tensor::empty(xc.shape());
  float* yp = y.data();
  const int64_t rows = s.outer * s.inner;
  parallel_chunks(
      rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(s.n, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* v = xp + r * s.n;
          float* o = yp + r * s.n;
          double ss = 0.0;
#pragma omp simd reduction(+ : ss)
          for (int64_t k = 0; k < s.n; ++k)
            ss += static_cast<double>(v[k]) * static_cast<double>(v[k]);
          const float d = static_cast<float>(std::max(std::sqrt(ss), static_cast<double>(eps)));
#pragma omp simd
          for (int64_t k = 0; k < s.n; ++k) o[k] = v[k] / d;
        }
      });
  return s.inner == 1 ? y : axis_back(y, s, x.shape());
}
// ‖x‖ ≥ eps: dx = dy/‖x‖ − x·<x,dy>/‖x‖³; otherwise (clamp active) dx = dy/eps.
Tensor l2_normalize_backward(const Tensor& dy, const Tensor& x, int64_t axis, float eps) {
  const char* op = "l2_normalize_backward";
  check_same_shape(op, "dy", dy, "x", x);
  const AxisSplit s = split_axis(op, x.shape(), axis);
  ProfileScope prof(op_name(Op::L2Normalize), 6.0 * static_cast<double>(x.numel()),
                    12.0 * x.numel());
  const Tensor xc = s.inner == 1 ? x.contiguous() : axis_last(x.contiguous(), s);
  const Tensor gc = s.inner == 1 ? dy.contiguous() : axis_last(dy.contiguous(), s);
  const float* xp = xc.data();
  const float* gp = gc.data();
  Tensor dx = Tensor::empty(xc.shape());
  float* dp = dx.data();
  const int64_t rows = s.outer * s.inner;
  parallel_chunks(
      rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(s.n, 1)), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* v = xp + r * s.n;
          const float* g = gp + r * s.n;
          float* o = dp + r * s.n;
          double ss = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : ss, dot)
          for (int64_t k = 0; k < s.n; ++k) {
            ss += static_cast<double>(v[k]) * static_cast<double>(v[k]);
            dot += static_cast<double>(v[k]) * static_cast<double>(g[k]);
          }
          const double nrm = std::sqrt(ss);
          const bool active = nrm >= static_cast<double>(eps);
          const double d = active ? nrm : static_cast<double>(eps);
          // In double: the two terms cancel (exactly, when n = 1).
          const double c1 = 1.0 / d;
          const double c2 = active ? dot / (d * d * d) : 0.0;
#pragma omp simd
          for (int64_t k = 0; k < s.n; ++k)
            o[k] =
                static_cast<float>(static_cast<double>(g[k]) * c1 - static_cast<double>(v[k]) * c2);
        }
      });
  return s.inner == 1 ? dx : axis_back(dx, s, x.shape());
}

// ---- cosine similarity (SPEC 6): <a/max(‖a‖,eps), b/max(‖b‖,eps)>, axis dropped ---------------
Tensor cosine_similarity_forward(const Tensor& a, const Tensor& b, int64_t axis, float eps) {
  const char* op = op_name(Op::CosineSimilarity);
  check_same_shape(op, "a", a, "b", b);
  const AxisSplit s = split_axis(op, a.shape(), axis);
  ProfileScope prof(op, 6.0 * static_cast<double>(a.numel()), 8.0 * a.numel());
  const Tensor ac = s.inner == 1 ? a.contiguous() : axis_last(a.contiguous(), s);
  const Tensor bc = s.inner == 1 ? b.contiguous() : axis_last(b.contiguous(), s);
  const float* ap = ac.data();
  const float* bp = bc.data();
  Tensor y = Tensor::empty(reduced_shape(a.shape(), s.axis, false));
  float* yp = y.data();
  parallel_chunks(s.outer * s.inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(s.n, 1)),
                  [&](int64_t r0, int64_t r1) {
                    for (int64_t r = r0; r < r1; ++r) {
                      const float* u = ap + r * s.n;
                      const float* v = bp + r * s.n;
                      double aa = 0.0, bb = 0.0, ab = 0.0;
#pragma omp simd reduction(+ : aa, bb, ab)
                      for (int64_t k = 0; k < s.n; ++k) {
                        const double x = u[k], z = v[k];
                        aa += x * x;
                        bb += z * z;
                        ab += x * z;
                      }
                      const double da = std::max(std::sqrt(aa), static_cast<double>(eps));
                      const double db = std::max(std::sqrt(bb), static_cast<double>(eps));
                      yp[r] = static_cast<float>(ab / (da * db));
                    }
                  });
  return y;
}
// d cos/da = b/(da·db) − cos·a/(da·‖a‖) when ‖a‖ ≥ eps (else the first term only); same for b.
BinaryGrads cosine_similarity_backward(const Tensor& dy, const Tensor& a, const Tensor& b,
                                       int64_t axis, float eps) {
  const char* op = "cosine_similarity_backward";
  check_same_shape(op, "a", a, "b", b);
  check_defined(op, "dy", dy);
  const AxisSplit s = split_axis(op, a.shape(), axis);
  CMDR_CHECK(dy.shape() == reduced_shape(a.shape(), s.axis, false), op, ": dy ", dy.str(),
             " does not match a ", a.str(), " without axis ", axis);
  ProfileScope prof(op_name(Op::CosineSimilarity), 12.0 * static_cast<double>(a.numel()),
                    16.0 * a.numel());
  const Tensor ac = s.inner == 1 ? a.contiguous() : axis_last(a.contiguous(), s);
  const Tensor bc = s.inner == 1 ? b.contiguous() : axis_last(b.contiguous(), s);
  const Tensor gc = dy.contiguous();
  const float* ap = ac.data();
  const float* bp = bc.data();
  const float* gp = gc.data();
  BinaryGrads out{Tensor::empty(ac.shape()), Tensor::empty(bc.shape())};
  float* dap = out.da.data();
  float* dbp = out.db.data();
  parallel_chunks(s.outer * s.inner, std::max<int64_t>(1, 4096 / std::max<int64_t>(s.n, 1)),
                  [&](int64_t r0, int64_t r1) {
                    for (int64_t r = r0; r < r1; ++r) {
                      const float* u = ap + r * s.n;
                      const float* v = bp + r * s.n;
                      double aa = 0.0, bb = 0.0, ab = 0.0;
#pragma omp simd reduction(+ : aa, bb, ab)
                      for (int64_t k = 0; k < s.n; ++k) {
                        const double x = u[k], z = v[k];
                        aa += x * x;
                        bb += z * z;
                        ab += x * z;
                      }
                      const double na = std::sqrt(aa), nb = std::sqrt(bb);
                      const double da = std::max(na, static_cast<double>(eps));
                      const double db = std::max(nb, static_cast<double>(eps));
                      const double cs = ab / (da * db), g = gp[r];
                      // In double: the two terms of each gradient cancel (n = 1, a ∥ b).
                      const double c = g / (da * db);
                      const double ka = na >= eps ? g * cs / (da * na) : 0.0;
                      const double kb = nb >= eps ? g * cs / (db * nb) : 0.0;
                      float* ga = dap + r * s.n;
                      float* gb = dbp + r * s.n;
#pragma omp simd
                      for (int64_t k = 0; k < s.n; ++k) {
                        const double x = u[k], z = v[k];
                        ga[k] = static_cast<float>(z * c - x * ka);
                        gb[k] = static_cast<float>(x * c - z * kb);
                      }
                    }
                  });
  if (s.inner != 1) {
    out.da = axis_back(out.da, s, a.shape());
    out.db = axis_back(out.db, s, b.shape());
  }
  return out;
}

}  // namespace cmdr::ops
