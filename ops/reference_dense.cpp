// Reference dense kernels: the definitions, written as directly as possible (plain loops,
// float64 accumulators). Shape validation reuses the optimised ops' error messages where a
// call would be ambiguous; otherwise each function checks what it indexes.
#include "ops/reference_dense.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "engine/error.hpp"

namespace cmdr::ops::ref {
namespace {

std::vector<double> zeros(int64_t n) {
  return std::vector<double>(static_cast<std::size_t>(n), 0.0);
}
Tensor to_tensor(const Shape& s, const std::vector<double>& v) {
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(v[i]);
  return t;
}
// Element (r, c) of op(m) for a 2-D contiguous m, op = transpose when t.
inline float el(const float* m, int64_t cols, bool t, int64_t r, int64_t c) {
  return t ? m[c * cols + r] : m[r * cols + c];
}

// C[b] = op(A[b])·op(B[b]); a, b contiguous [batch, ra, ca], [batch, rb, cb].
Tensor bmm_core(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  const int64_t Bt = a.size(0), ra = a.size(1), ca = a.size(2), rb = b.size(1), cb = b.size(2);
  const int64_t M = ta ? ca : ra, K = ta ? ra : ca, N = tb ? rb : cb;
  CMDR_CHECK(b.size(0) == Bt && (tb ? cb : rb) == K, "ref::matmul: a ", a.str(), " vs b ", b.str(),
             ": inner dimensions differ");
  std::vector<double> c = zeros(Bt * M * N);
  for (int64_t t = 0; t < Bt; ++t) {
    const float* A = a.data() + t * ra * ca;
    const float* Bm = b.data() + t * rb * cb;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t kk = 0; kk < K; ++kk)
          s += static_cast<double>(el(A, ca, ta, i, kk)) * el(Bm, cb, tb, kk, j);
        c[(t * M + i) * N + j] = s;
      }
  }
  return to_tensor({Bt, M, N}, c);
}
Tensor as3(const Tensor& t) {
  return t.contiguous().reshape({1, t.size(0), t.size(1)});
}

}  // namespace

// ---- linear / matmul / bmm --------------------------------------------------------------------
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  CMDR_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1), "ref::linear: x ",
             x.str(), " vs weight ", weight.str());
  const int64_t N = weight.size(0), K = weight.size(1), M = x.numel() / std::max<int64_t>(K, 1);
  Tensor xc = x.contiguous(), wc = weight.contiguous();
  std::vector<double> y = zeros(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = bias.defined() ? bias.at({j}) : 0.0;
      for (int64_t kk = 0; kk < K; ++kk)
        s += static_cast<double>(xc.data()[i * K + kk]) * wc.data()[j * K + kk];
      y[i * N + j] = s;
    }
  Shape out = x.shape();
  out.back() = N;
  return to_tensor(out, y);
}

// gelu(x·Wᵀ + b) with the product and the exact GELU (x·Φ(x), erf) in float64.
Tensor linear_gelu_forward(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  CMDR_CHECK(weight.dim() == 2 && x.dim() >= 1 && x.size(-1) == weight.size(1),
             "ref::linear_gelu: x ", x.str(), " vs weight ", weight.str());
  const int64_t N = weight.size(0), K = weight.size(1), M = x.numel() / std::max<int64_t>(K, 1);
  Tensor xc = x.contiguous(), wc = weight.contiguous();
  const float *X = std::as_const(xc).data(), *Wt = std::as_const(wc).data();
  std::vector<double> y = zeros(M * N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = bias.defined() ? bias.at({j}) : 0.0;
      for (int64_t kk = 0; kk < K; ++kk) s += static_cast<double>(X[i * K + kk]) * Wt[j * K + kk];
      y[i * N + j] = 0.5 * s * (1.0 + std::erf(s / std::sqrt(2.0)));
    }
  Shape out = x.shape();
  out.back() = N;
  return to_tensor(out, y);
}

LinearGrads linear_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, bool need_dx,
                            bool need_dweight, bool need_dbias) {
  const int64_t N = weight.size(0), K = weight.size(1), M = x.numel() / std::max<int64_t>(K, 1);
  CMDR_CHECK(dy.numel() == M * N && dy.size(-1) == N, "ref::linear backward: dy ", dy.str());
  Tensor d = dy.contiguous(), xc = x.contiguous(), wc = weight.contiguous();
  const float *D = d.data(), *X = xc.data(), *Wt = wc.data();
  LinearGrads g;
  if (need_dx) {
    std::vector<double> dx = zeros(M * K);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t kk = 0; kk < K; ++kk) {
        double s = 0;
        for (int64_t j = 0; j < N; ++j) s += static_cast<double>(D[i * N + j]) * Wt[j * K + kk];
        dx[i * K + kk] = s;
      }
    g.dx = to_tensor(x.shape(), dx);
  }
  if (need_dweight) {
    std::vector<double> dw = zeros(N * K);
    for (int64_t j = 0; j < N; ++j)
      for (int64_t kk = 0; kk < K; ++kk) {
        double s = 0;
        for (int64_t i = 0; i < M; ++i) s += static_cast<double>(D[i * N + j]) * X[i * K + kk];
        dw[j * K + kk] = s;
      }
    g.dweight = to_tensor(weight.shape(), dw);
  }
  if (need_dbias) {
    std::vector<double> db = zeros(N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) db[j] += D[i * N + j];
    g.dbias = to_tensor({N}, db);
  }
  return g;
}

Tensor matmul_forward(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  CMDR_CHECK(a.dim() == 2 && b.dim() == 2, "ref::matmul: a ", a.str(), ", b ", b.str());
  Tensor c = bmm_core(as3(a), as3(b), ta, tb);
  return c.reshape({c.size(1), c.size(2)});
}
MatmulGrads matmul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool ta, bool tb,
                            bool need_da, bool need_db) {
  MatmulGrads g3 = bmm_backward(as3(dy), as3(a), as3(b), ta, tb, need_da, need_db);
  MatmulGrads g;
  if (need_da) g.da = g3.da.reshape(a.shape());
  if (need_db) g.db = g3.db.reshape(b.shape());
  return g;
}
Tensor bmm_forward(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  CMDR_CHECK(a.dim() == 3 && b.dim() == 3, "ref::bmm: a ", a.str(), ", b ", b.str());
  return bmm_core(a.contiguous(), b.contiguous(), ta, tb);
}
MatmulGrads bmm_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool ta, bool tb,
                         bool need_da, bool need_db) {
  // With A = op(a), B = op(b): dA = dy·Bᵀ, dB = Aᵀ·dy; a transposed operand gets the transpose.
  const Tensor d = dy.contiguous(), ac = a.contiguous(), bc = b.contiguous();
  MatmulGrads g;
  if (need_da) g.da = ta ? bmm_core(bc, d, tb, true) : bmm_core(d, bc, false, !tb);
  if (need_db) g.db = tb ? bmm_core(d, ac, true, ta) : bmm_core(ac, d, !ta, false);
  return g;
}

// ---- convolutions (2-D core; 1-D is H = 1 with no padding along H) ----------------------------
namespace {
struct C2 {
  int64_t B, Ci, Co, H, W, kh, kw, OH, OW, sh, sw, ph, pw;
};
// Direct conv geometry. x [B, Ci, H, W], w [Co, Ci, kh, kw].
C2 conv_geo(const Shape& xs, const Shape& ws, int64_t s, int64_t p, bool one_d) {
  C2 g{};
  g.B = xs[0];
  g.Ci = xs[1];
  g.H = one_d ? 1 : xs[2];
  g.W = xs.back();
  g.Co = ws[0];
  g.kh = one_d ? 1 : ws[2];
  g.kw = ws.back();
  g.sh = one_d ? 1 : s;
  g.sw = s;
  g.ph = one_d ? 0 : p;
  g.pw = p;
  g.OH = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
  g.OW = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
  return g;
}
// Transposed conv geometry. x [B, Ci, H, W], w [Ci, Co, kh, kw].
C2 convT_geo(const Shape& xs, const Shape& ws, int64_t s, int64_t p, bool one_d) {
  C2 g{};
  g.B = xs[0];
  g.Ci = xs[1];
  g.H = one_d ? 1 : xs[2];
  g.W = xs.back();
  g.Co = ws[1];
  g.kh = one_d ? 1 : ws[2];
  g.kw = ws.back();
  g.sh = one_d ? 1 : s;
  g.sw = s;
  g.ph = one_d ? 0 : p;
  g.pw = p;
  g.OH = (g.H - 1) * g.sh - 2 * g.ph + g.kh;
  g.OW = (g.W - 1) * g.sw - 2 * g.pw + g.kw;
  return g;
}
Shape out_shape(const C2& g, bool one_d) {
  return one_d ? Shape{g.B, g.Co, g.OW} : Shape{g.B, g.Co, g.OH, g.OW};
}
void check_conv(const char* op, const Tensor& x, const Tensor& w, bool tr, bool one_d) {
  const int64_t r = one_d ? 3 : 4;
  CMDR_CHECK(x.dim() == r && w.dim() == r && (tr ? w.size(0) : w.size(1)) == x.size(1), "ref::", op,
             ": x ", x.str(), " vs weight ", w.str());
}

// Visits every (input pixel, output pixel, tap) connection of a direct convolution:
// f(x_index, y_index, w_index) with flat indices into x [B,Ci,H,W], y [B,Co,OH,OW],
// w [Co,Ci,kh,kw].
template <typename F>
void conv_links(const C2& g, F&& f) {
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t co = 0; co < g.Co; ++co)
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow)
          for (int64_t ci = 0; ci < g.Ci; ++ci)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t ih = oh * g.sh - g.ph + i, iw = ow * g.sw - g.pw + j;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                f(((b * g.Ci + ci) * g.H + ih) * g.W + iw,
                  ((b * g.Co + co) * g.OH + oh) * g.OW + ow,
                  ((co * g.Ci + ci) * g.kh + i) * g.kw + j);
              }
}
// Transposed: input pixel (ih, iw) feeds output (ih·s − p + i, iw·s − p + j) with
// w [Ci, Co, kh, kw].
template <typename F>
void convT_links(const C2& g, F&& f) {
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t ci = 0; ci < g.Ci; ++ci)
      for (int64_t ih = 0; ih < g.H; ++ih)
        for (int64_t iw = 0; iw < g.W; ++iw)
          for (int64_t co = 0; co < g.Co; ++co)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t oh = ih * g.sh - g.ph + i, ow = iw * g.sw - g.pw + j;
                if (oh < 0 || oh >= g.OH || ow < 0 || ow >= g.OW) continue;
                f(((b * g.Ci + ci) * g.H + ih) * g.W + iw,
                  ((b * g.Co + co) * g.OH + oh) * g.OW + ow,
                  ((ci * g.Co + co) * g.kh + i) * g.kw + j);
              }
}

template <bool Tr>
Tensor conv_fwd(const char* op, const Tensor& x, const Tensor& w, const Tensor& bias, int64_t s,
                int64_t p, bool one_d) {
  check_conv(op, x, w, Tr, one_d);
  const C2 g = Tr ? convT_geo(x.shape(), w.shape(), s, p, one_d)
                  : conv_geo(x.shape(), w.shape(), s, p, one_d);
  const Tensor xc = x.contiguous(), wc = w.contiguous();
  std::vector<double> y = zeros(g.B * g.Co * g.OH * g.OW);
  auto link = [&](int64_t xi, int64_t yi, int64_t wi) {
    y[yi] += static_cast<double>(xc.data()[xi]) * wc.data()[wi];
  };
  if constexpr (Tr)
    convT_links(g, link);
  else
    conv_links(g, link);
  if (bias.defined())
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t co = 0; co < g.Co; ++co)
        for (int64_t i = 0; i < g.OH * g.OW; ++i)
          y[(b * g.Co + co) * g.OH * g.OW + i] += bias.at({co});
  return to_tensor(out_shape(g, one_d), y);
}

template <bool Tr>
ConvGrads conv_bwd(const char* op, const Tensor& dy, const Tensor& x, const Tensor& w, int64_t s,
                   int64_t p, bool one_d, bool need_dx, bool need_dw, bool need_db) {
  check_conv(op, x, w, Tr, one_d);
  const C2 g = Tr ? convT_geo(x.shape(), w.shape(), s, p, one_d)
                  : conv_geo(x.shape(), w.shape(), s, p, one_d);
  CMDR_CHECK(dy.shape() == out_shape(g, one_d), "ref::", op, " backward: dy ", dy.str());
  const Tensor xc = x.contiguous(), wc = w.contiguous(), dc = dy.contiguous();
  std::vector<double> dx = zeros(x.numel()), dw = zeros(w.numel()), db = zeros(g.Co);
  auto link = [&](int64_t xi, int64_t yi, int64_t wi) {
    const double d = dc.data()[yi];
    dx[xi] += d * wc.data()[wi];
    dw[wi] += d * xc.data()[xi];
  };
  if constexpr (Tr)
    convT_links(g, link);
  else
    conv_links(g, link);
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t co = 0; co < g.Co; ++co)
      for (int64_t i = 0; i < g.OH * g.OW; ++i)
        db[co] += dc.data()[(b * g.Co + co) * g.OH * g.OW + i];
  ConvGrads r;
  if (need_dx) r.dx = to_tensor(x.shape(), dx);
  if (need_dw) r.dweight = to_tensor(w.shape(), dw);
  if (need_db) r.dbias = to_tensor({g.Co}, db);
  return r;
}
}  // namespace

Tensor conv1d_forward(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t p) {
  return conv_fwd<false>("conv1d", x, w, b, s, p, true);
}
ConvGrads conv1d_backward(const Tensor& dy, const Tensor& x, const Tensor& w, int64_t s, int64_t p,
                          bool ndx, bool ndw, bool ndb) {
  return conv_bwd<false>("conv1d", dy, x, w, s, p, true, ndx, ndw, ndb);
}
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t p) {
  return conv_fwd<false>("conv2d", x, w, b, s, p, false);
}
ConvGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w, int64_t s, int64_t p,
                          bool ndx, bool ndw, bool ndb) {
  return conv_bwd<false>("conv2d", dy, x, w, s, p, false, ndx, ndw, ndb);
}
Tensor conv_transpose1d_forward(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s,
                                int64_t p) {
  return conv_fwd<true>("conv_transpose1d", x, w, b, s, p, true);
}
ConvGrads conv_transpose1d_backward(const Tensor& dy, const Tensor& x, const Tensor& w, int64_t s,
                                    int64_t p, bool ndx, bool ndw, bool ndb) {
  return conv_bwd<true>("conv_transpose1d", dy, x, w, s, p, true, ndx, ndw, ndb);
}
Tensor conv_transpose2d_forward(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s,
                                int64_t p) {
  return conv_fwd<true>("conv_transpose2d", x, w, b, s, p, false);
}
ConvGrads conv_transpose2d_backward(const Tensor& dy, const Tensor& x, const Tensor& w, int64_t s,
                                    int64_t p, bool ndx, bool ndw, bool ndb) {
  return conv_bwd<true>("conv_transpose2d", dy, x, w, s, p, false, ndx, ndw, ndb);
}

// ---- attention ------------------------------------------------------------------------------
namespace {
struct AG {
  int64_t B, H, T, d, W, nf, rem, nw;
  int64_t len(int64_t w) const { return w < nf ? W : rem; }  // tokens in window w
  int64_t slot() const { return nw * W * W; }
};
AG ag(const Tensor& q, int64_t window) {
  CMDR_CHECK(q.dim() == 4, "ref::attention: q ", q.str());
  AG g{};
  g.B = q.size(0);
  g.H = q.size(1);
  g.T = q.size(2);
  g.d = q.size(3);
  g.W = window == 0 ? g.T : window;
  g.nf = g.T / g.W;
  g.rem = g.T % g.W;
  g.nw = g.nf + (g.rem > 0);
  return g;
}
}  // namespace

Tensor attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         int64_t window, float p_drop, bool training, Rng* rng,
                         AttentionSaved* saved) {
  const AG g = ag(q, window);
  CMDR_CHECK(k.shape() == q.shape() && v.shape() == q.shape(), "ref::attention: shapes");
  const bool drop = training && p_drop > 0.0f;
  CMDR_CHECK(!drop || rng, "ref::attention: dropout needs an rng");
  const Shape pshape = window == 0 ? Shape{g.B, g.H, g.T, g.T} : Shape{g.B, g.H, g.nw, g.W, g.W};
  Tensor probs = Tensor::zeros(pshape), mask = drop ? Tensor::zeros(pshape) : Tensor();
  std::vector<double> out = zeros(q.numel());
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
  const float keep = 1.0f / (1.0f - p_drop);
  // The optimised op's keyed mask (issue 8): counter = flat offset in the probs layout.
  const uint64_t key = drop ? rng->next_u64() : 0;
  const uint64_t thr = keep_threshold(1.0 - static_cast<double>(p_drop));
  for (int64_t bh = 0; bh < g.B * g.H; ++bh)
    for (int64_t w = 0; w < g.nw; ++w) {
      const int64_t n = g.len(w), t0 = w * g.W;
      for (int64_t i = 0; i < n; ++i) {
        const float* qi = qc.data() + (bh * g.T + t0 + i) * g.d;
        std::vector<double> s(static_cast<std::size_t>(n));
        double m = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          const float* kj = kc.data() + (bh * g.T + t0 + j) * g.d;
          double acc = 0;
          for (int64_t c = 0; c < g.d; ++c) acc += static_cast<double>(qi[c]) * kj[c];
          s[j] = acc * scale;
          m = std::max(m, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < n; ++j) z += (s[j] = std::exp(s[j] - m));
        float* prow = probs.data() + bh * g.slot() + (w * g.W + i) * g.W;
        float* mrow = drop ? mask.data() + bh * g.slot() + (w * g.W + i) * g.W : nullptr;
        for (int64_t j = 0; j < n; ++j) {
          prow[j] = static_cast<float>(s[j] / z);
          double pj = prow[j];
          if (drop) {
            const int64_t at = bh * g.slot() + (w * g.W + i) * g.W + j;
            mrow[j] = counter_keep(key, static_cast<uint64_t>(at), thr) ? keep : 0.0f;
            pj *= mrow[j];
          }
          const float* vj = vc.data() + (bh * g.T + t0 + j) * g.d;
          for (int64_t c = 0; c < g.d; ++c) out[(bh * g.T + t0 + i) * g.d + c] += pj * vj[c];
        }
      }
    }
  if (saved) {
    saved->probs = probs;
    saved->drop_mask = mask;
  }
  return to_tensor(q.shape(), out);
}

AttentionGrads attention_backward(const Tensor& dy, const Tensor& q, const Tensor& k,
                                  const Tensor& v, float scale, int64_t window, float /*p_drop*/,
                                  const AttentionSaved& saved) {
  const AG g = ag(q, window);
  const Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous(), dc = dy.contiguous();
  const Tensor P = saved.probs.contiguous();
  const Tensor M = saved.drop_mask.defined() ? saved.drop_mask.contiguous() : Tensor();
  std::vector<double> dq = zeros(q.numel()), dk = zeros(q.numel()), dv = zeros(q.numel());
  for (int64_t bh = 0; bh < g.B * g.H; ++bh)
    for (int64_t w = 0; w < g.nw; ++w) {
      const int64_t n = g.len(w), t0 = w * g.W;
      auto row = [&](int64_t t) { return (bh * g.T + t0 + t) * g.d; };
      for (int64_t i = 0; i < n; ++i) {
        const int64_t po = bh * g.slot() + (w * g.W + i) * g.W;
        std::vector<double> dp(static_cast<std::size_t>(n));
        double dot = 0;
        for (int64_t j = 0; j < n; ++j) {
          const double mij = M.defined() ? M.data()[po + j] : 1.0;
          const double pij = P.data()[po + j];
          double acc = 0;  // dO_i · V_j
          for (int64_t c = 0; c < g.d; ++c)
            acc += static_cast<double>(dc.data()[row(i) + c]) * vc.data()[row(j) + c];
          dp[j] = acc * mij;
          dot += pij * dp[j];
          for (int64_t c = 0; c < g.d; ++c) dv[row(j) + c] += pij * mij * dc.data()[row(i) + c];
        }
        for (int64_t j = 0; j < n; ++j) {
          const double ds = P.data()[po + j] * (dp[j] - dot) * scale;
          for (int64_t c = 0; c < g.d; ++c) {
            dq[row(i) + c] += ds * kc.data()[row(j) + c];
            dk[row(j) + c] += ds * qc.data()[row(i) + c];
          }
        }
      }
    }
  return AttentionGrads{to_tensor(q.shape(), dq), to_tensor(q.shape(), dk),
                        to_tensor(q.shape(), dv)};
}

}  // namespace cmdr::ops::ref
