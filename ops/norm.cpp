// Optimised batch_norm and layer_norm (OpenMP over channels / rows, vectorised inner loops).
// Every statistic is reduced by one thread in a fixed order (double accumulators), so the
// results are bit-identical for any thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/profiler.hpp"
#include "ops/ops.hpp"
#include "ops/pointwise_detail.hpp"

namespace cmdr::ops {
using namespace detail;

namespace {
void check_param(const char* op, const char* arg, const Tensor& t, int64_t n) {
  if (!t.defined()) return;
  CMDR_CHECK(t.dim() == 1 && t.size(0) == n, op, ": ", arg, " ", t.str(), " must be [", n, "]");
}
// Contiguous float pointer of an optional [n] parameter (nullptr when undefined).
const float* param_ptr(const Tensor& t, Tensor& keep) {
  if (!t.defined()) return nullptr;
  keep = t.contiguous();
  return keep.data();
}

// Σ p[0..n) and Σ (p − m)² in double; `#pragma omp simd` fixes the (vector-width) order.
inline double sum_d(const float* p, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(p[i]);
  return s;
}
inline double sqdev_d(const float* p, int64_t n, double m) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - m;
    s += d * d;
  }
  return s;
}
}  // namespace

// ---- batch_norm -------------------------------------------------------------------------------
// x [B, C, S...] (S = product of the trailing dims, 1 for [B, C]); weight/bias [C].
// training: mean_c, biased var_c over B·S values in double (two passes, SPEC 4.2);
// y = (x − mean)·invstd·w + b evaluated in double; running stats updated in place with the
// unbiased variance var·N/(N−1). eval: mean/var from the running stats.
Tensor batch_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                          Tensor running_mean, Tensor running_var, bool training, float momentum,
                          float eps, BatchNormSaved* saved) {
  const char* op = op_name(Op::BatchNorm);
  check_defined(op, "x", x);
  CMDR_CHECK(x.dim() >= 2, op, ": x must be [B, C, *], got ", x.str());
  const int64_t B = x.size(0), C = x.size(1), S = x.numel() / std::max<int64_t>(B * C, 1);
  check_param(op, "weight", weight, C);
  check_param(op, "bias", bias, C);
  check_param(op, "running_mean", running_mean, C);
  check_param(op, "running_var", running_var, C);
  ProfileScope prof(op, 4.0 * static_cast<double>(x.numel()), 12.0 * x.numel());
  const Tensor xc = x.contiguous();
  const float* xp = xc.data();
  Tensor wk, bk;
  const float* w = param_ptr(weight, wk);
  const float* b = param_ptr(bias, bk);
  Tensor mean_t = Tensor::empty({C}), invstd_t = Tensor::empty({C});
  float* mean = mean_t.data();
  float* invstd = invstd_t.data();
  std::vector<double> m(C), is(C);  // statistics kept in double for the normalisation
  if (training) {
    const int64_t N = B * S;
    CMDR_CHECK(N > 1, op, ": training needs more than one value per channel, x ", x.str());
    std::vector<double> var(C);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (int64_t i = 0; i < B; ++i) s += sum_d(xp + (i * C + c) * S, S);
      const double mc = s / static_cast<double>(N);
      double v = 0.0;
      for (int64_t i = 0; i < B; ++i) v += sqdev_d(xp + (i * C + c) * S, S, mc);
      m[c] = mc;
      var[c] = v / static_cast<double>(N);
      is[c] = 1.0 / std::sqrt(var[c] + static_cast<double>(eps));
    }
    const double mom = momentum;
    const double unbias = static_cast<double>(N) / static_cast<double>(N - 1);
    if (running_mean.defined()) {
      float* r = running_mean.data();
      const int64_t st = running_mean.stride(0);
      for (int64_t c = 0; c < C; ++c)
        r[c * st] = static_cast<float>((1.0 - mom) * r[c * st] + mom * m[c]);
    }
    if (running_var.defined()) {
      float* r = running_var.data();
      const int64_t st = running_var.stride(0);
      for (int64_t c = 0; c < C; ++c)
        r[c * st] = static_cast<float>((1.0 - mom) * r[c * st] + mom * var[c] * unbias);
    }
  } else {
    CMDR_CHECK(running_mean.defined() && running_var.defined(), op,
               ": eval mode needs running_mean and running_var");
    for (int64_t c = 0; c < C; ++c) {
      m[c] = running_mean.data()[c * running_mean.stride(0)];
      const double rv = running_var.data()[c * running_var.stride(0)];
      is[c] = 1.0 / std::sqrt(rv + static_cast<double>(eps));
    }
  }
  // y = (x − mean)·α + b in double, α = invstd·w: with a variance far below the mean's
  // magnitude (SPEC 4.2) the float form x·α + (b − mean·α) would cancel catastrophically.
  std::vector<double> alpha(C), beta(C);
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = static_cast<float>(m[c]);
    invstd[c] = static_cast<float>(is[c]);
    alpha[c] = is[c] * (w ? static_cast<double>(w[c]) : 1.0);
    beta[c] = b ? static_cast<double>(b[c]) : 0.0;
  }
  Tensor y = Tensor::empty(x.shape());
  float* yp = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < B * C; ++bc) {
    const double a = alpha[bc % C], be = beta[bc % C], mc = m[bc % C];
    const float* src = xp + bc * S;
    float* dst = yp + bc * S;
#pragma omp simd
    for (int64_t k = 0; k < S; ++k)
      dst[k] = static_cast<float>((static_cast<double>(src[k]) - mc) * a + be);
  }
  if (saved) {
    saved->mean = mean_t;
    saved->invstd = invstd_t;
  }
  return y;
}

// Backward of the training-mode forward. Per channel: Σdy and Σ(x−mean)·dy in double;
// dx = (dy − Σdy/N − (x−mean)·invstd²·Σ(x−mean)dy/N)·invstd·w; dweight = invstd·Σ(x−mean)dy;
// dbias = Σdy.
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
  ProfileScope prof(op_name(Op::BatchNorm), 8.0 * static_cast<double>(x.numel()), 16.0 * x.numel());
  const Tensor xc = x.contiguous(), gc = dy.contiguous();
  const float* xp = xc.data();
  const float* gp = gc.data();
  Tensor wk, mk, ik;
  const float* w = param_ptr(weight, wk);
  const float* mean = param_ptr(saved.mean, mk);
  const float* invstd = param_ptr(saved.invstd, ik);
  BatchNormGrads out;
  out.dx = Tensor::empty(x.shape());
  out.dweight = Tensor::empty({C});
  out.dbias = Tensor::empty({C});
  float* dxp = out.dx.data();
  const double N = static_cast<double>(B * S);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    const double mc = mean[c];
    double sum = 0.0, dot = 0.0;
    for (int64_t i = 0; i < B; ++i) {
      const float* xr = xp + (i * C + c) * S;
      const float* gr = gp + (i * C + c) * S;
      double s = 0.0, d = 0.0;
#pragma omp simd reduction(+ : s, d)
      for (int64_t k = 0; k < S; ++k) {
        s += static_cast<double>(gr[k]);
        d += (static_cast<double>(xr[k]) - mc) * static_cast<double>(gr[k]);
      }
      sum += s;
      dot += d;
    }
    const double is = invstd[c], wc = w ? w[c] : 1.0;
    // dx = dy·a − (x − mean)·k − c0 with a = invstd·w, k = Σ(x−mean)dy·invstd³·w/N,
    // c0 = Σdy/N·a ((x − mean) in float is exact-ish; no cancellation against mean·k).
    const float fa = static_cast<float>(is * wc);
    const float fk = static_cast<float>(dot * is * is * is * wc / N);
    const float f0 = static_cast<float>(sum / N * is * wc);
    const float fm = static_cast<float>(mc);
    for (int64_t i = 0; i < B; ++i) {
      const float* xr = xp + (i * C + c) * S;
      const float* gr = gp + (i * C + c) * S;
      float* dr = dxp + (i * C + c) * S;
#pragma omp simd
      for (int64_t k = 0; k < S; ++k) dr[k] = gr[k] * fa - (xr[k] - fm) * fk - f0;
    }
    out.dweight.data()[c] = static_cast<float>(dot * is);
    out.dbias.data()[c] = static_cast<float>(sum);
  }
  return out;
}

// ---- layer_norm -------------------------------------------------------------------------------
// x [R, D] (all leading dims flattened): per row mean and biased var in double (two
// passes); rstd = 1/sqrt(var + eps); y = (x − mean)·rstd·w + b.
Tensor layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps,
                          LayerNormSaved* saved) {
  const char* op = op_name(Op::LayerNorm);
  check_defined(op, "x", x);
  CMDR_CHECK(x.dim() >= 1, op, ": x must have at least one dimension, got ", x.str());
  const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
  check_param(op, "weight", weight, D);
  check_param(op, "bias", bias, D);
  ProfileScope prof(op, 6.0 * static_cast<double>(x.numel()), 8.0 * x.numel());
  const Tensor xc = x.contiguous();
  const float* xp = xc.data();
  Tensor wk, bk;
  const float* w = param_ptr(weight, wk);
  const float* b = param_ptr(bias, bk);
  Shape rs(x.shape().begin(), x.shape().end() - 1);
  Tensor mean_t = Tensor::empty(rs), rstd_t = Tensor::empty(rs);
  float* mean = mean_t.data();
  float* rstd = rstd_t.data();
  Tensor y = Tensor::empty(x.shape());
  float* yp = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const float* xr = xp + r * D;
    float* yr = yp + r * D;
    const double m = sum_d(xr, D) / static_cast<double>(D);
    const double v = sqdev_d(xr, D, m) / static_cast<double>(D);
    const float fm = static_cast<float>(m);
    const float fr = static_cast<float>(1.0 / std::sqrt(v + static_cast<double>(eps)));
    mean[r] = fm;
    rstd[r] = fr;
    if (w && b) {
#pragma omp simd
      for (int64_t j = 0; j < D; ++j) yr[j] = (xr[j] - fm) * fr * w[j] + b[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < D; ++j)
        yr[j] = (xr[j] - fm) * fr * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
    }
  }
  if (saved) {
    saved->mean = mean_t;
    saved->rstd = rstd_t;
  }
  return y;
}

// Per row: g = dy·w, a = Σg, c = Σg·x̂ (double); dx = rstd·(g − a/D − x̂·c/D).
// dweight = Σ_rows dy·x̂ and dbias = Σ_rows dy: rows are cut into fixed blocks of kRowBlock,
// each block sums its rows in order (double), and blocks are added in block order, so the
// result does not depend on the thread count.
LayerNormGrads layer_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                   const LayerNormSaved& saved) {
  const char* op = "layer_norm_backward";
  check_same_shape(op, "dy", dy, "x", x);
  CMDR_CHECK(x.dim() >= 1, op, ": x must have at least one dimension, got ", x.str());
  const int64_t D = x.size(-1), R = x.numel() / std::max<int64_t>(D, 1);
  check_param(op, "weight", weight, D);
  check_defined(op, "saved.mean", saved.mean);
  check_defined(op, "saved.rstd", saved.rstd);
  CMDR_CHECK(saved.mean.numel() == R && saved.rstd.numel() == R, op, ": saved mean ",
             saved.mean.str(), " / rstd ", saved.rstd.str(), " must have ", R, " rows for x ",
             x.str());
  ProfileScope prof(op_name(Op::LayerNorm), 10.0 * static_cast<double>(x.numel()),
                    12.0 * x.numel());
  const Tensor xc = x.contiguous(), gc = dy.contiguous();
  const float* xp = xc.data();
  const float* gp = gc.data();
  Tensor wk, mk, rk;
  const float* w = param_ptr(weight, wk);
  const float* mean = param_ptr(saved.mean, mk);
  const float* rstd = param_ptr(saved.rstd, rk);
  LayerNormGrads out;
  out.dx = Tensor::empty(x.shape());
  float* dxp = out.dx.data();
  constexpr int64_t kRowBlock = 256;
  const int64_t nblocks = (R + kRowBlock - 1) / kRowBlock;
  std::vector<double> pw(static_cast<std::size_t>(nblocks * D)), pb(pw.size());
#pragma omp parallel
  {
    std::vector<float> xh(static_cast<std::size_t>(D)), gw(static_cast<std::size_t>(D));
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      double* bw = &pw[static_cast<std::size_t>(blk * D)];
      double* bb = &pb[static_cast<std::size_t>(blk * D)];
      std::fill(bw, bw + D, 0.0);
      std::fill(bb, bb + D, 0.0);
      const int64_t r1 = std::min(R, (blk + 1) * kRowBlock);
      for (int64_t r = blk * kRowBlock; r < r1; ++r) {
        const float* xr = xp + r * D;
        const float* gr = gp + r * D;
        float* dr = dxp + r * D;
        const float fm = mean[r], fr = rstd[r];
        double a = 0.0, c = 0.0;
#pragma omp simd reduction(+ : a, c)
        for (int64_t j = 0; j < D; ++j) {
          const float h = (xr[j] - fm) * fr;
          const float g = gr[j] * (w ? w[j] : 1.0f);
          xh[j] = h;
          gw[j] = g;
          a += static_cast<double>(g);
          c += static_cast<double>(g) * static_cast<double>(h);
          bw[j] += static_cast<double>(gr[j]) * static_cast<double>(h);
          bb[j] += static_cast<double>(gr[j]);
        }
        const float fa = static_cast<float>(a / static_cast<double>(D));
        const float fc = static_cast<float>(c / static_cast<double>(D));
#pragma omp simd
        for (int64_t j = 0; j < D; ++j) dr[j] = fr * (gw[j] - fa - xh[j] * fc);
      }
    }
  }
  out.dweight = Tensor::empty({D});
  out.dbias = Tensor::empty({D});
  float* dw = out.dweight.data();
  float* db = out.dbias.data();
  for (int64_t j = 0; j < D; ++j) {
    double sw = 0.0, sb = 0.0;
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      sw += pw[static_cast<std::size_t>(blk * D + j)];
      sb += pb[static_cast<std::size_t>(blk * D + j)];
    }
    dw[j] = static_cast<float>(sw);
    db[j] = static_cast<float>(sb);
  }
  return out;
}

}  // namespace cmdr::ops
