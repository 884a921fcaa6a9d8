// Multi-head attention (full or windowed, SPEC 5.2) on oneDNN matmul + softmax primitives.
//
// Layout of AttentionSaved::probs (and drop_mask, same shape):
//   window == 0: [B, H, T, T]
//   window  > 0: [B, H, nw, W, W] with nw = ceil(T / W); the last window holds only
//                rem = T − (nw − 1)·W tokens: its probabilities fill the top-left rem×rem
//                block of its W×W slot and the rest is zero (padded keys get no attention,
//                padded queries do not exist).
// drop_mask entries are 0 or 1/(1 − p) (inverted dropout), drawn as Bernoulli(1 − p) from
// the Rng in row-major order over (b, h, window, query, key) of the real (unpadded) entries.
//
// Per (b, h) the full windows form one batched product (batch = number of full windows,
// operands addressed with their real strides — q/k/v may be views of a packed qkv tensor),
// the short last window a second one.
#include <cmath>
#include <string>

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "ops/dnnl_common.hpp"
#include "ops/gemm.hpp"
#include "ops/ops.hpp"

namespace cmdr::ops {
namespace {
namespace du = dnnl_util;
using detail::Mat;

struct AttnGeo {
  int64_t B = 0, H = 0, T = 0, d = 0;
  int64_t W = 0, nf = 0, rem = 0, nw = 0;  // window size, full windows, tail tokens, windows
  Shape probs_shape(int64_t window) const {
    return window == 0 ? Shape{B, H, T, T} : Shape{B, H, nw, W, W};
  }
  int64_t slot() const { return nw * W * W; }  // probs floats per (b, h)
  double pairs() const { return static_cast<double>(B * H) * (nf * W * W + rem * rem); }
};

AttnGeo attn_geo(const char* what, const Tensor& q, const Tensor& k, const Tensor& v,
                 int64_t window, float p_drop) {
  CMDR_CHECK(q.defined() && k.defined() && v.defined(), "attention", what,
             ": q, k, v must be defined");
  CMDR_CHECK(q.dim() == 4, "attention", what, ": q ", q.str(), " must be [B, H, T, d]");
  CMDR_CHECK(k.shape() == q.shape() && v.shape() == q.shape(), "attention", what, ": q ", q.str(),
             ", k ", k.str(), ", v ", v.str(), ": shapes differ");
  CMDR_CHECK(window >= 0, "attention", what, ": window ", window, " must be >= 0");
  CMDR_CHECK(p_drop >= 0.0f && p_drop < 1.0f, "attention", what, ": p_drop ", p_drop,
             " must be in [0, 1)");
  AttnGeo g;
  g.B = q.size(0);
  g.H = q.size(1);
  g.T = q.size(2);
  g.d = q.size(3);
  CMDR_CHECK(g.T > 0 && g.d > 0, "attention", what, ": q ", q.str(), ": empty T or d");
  g.W = window == 0 ? g.T : window;
  g.nf = g.T / g.W;
  g.rem = g.T % g.W;
  g.nw = g.nf + (g.rem > 0 ? 1 : 0);
  return g;
}

// Tensors whose last dimension is not unit-stride are copied (GEMM needs one unit stride).
Tensor unit_last(const Tensor& t) {
  return t.stride(3) == 1 ? t : t.contiguous();
}

// Row-wise softmax of `rows` rows of length n, row stride ld, in place (numerically stable,
// double accumulation of the normaliser).
void softmax_rows_ref(float* p, int64_t rows, int64_t n, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    float* x = p + r * ld;
    float m = x[0];
    for (int64_t j = 1; j < n; ++j) m = std::max(m, x[j]);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) {
      x[j] = std::exp(x[j] - m);
      s += x[j];
    }
    const float inv = static_cast<float>(1.0 / s);
    for (int64_t j = 0; j < n; ++j) x[j] *= inv;
  }
}

struct SoftmaxPrim {
  dnnl::softmax_forward::primitive_desc pd;
  dnnl::softmax_forward prim;
};
// oneDNN softmax (vectorised exp) over `rows` dense rows of length n, in place.
void softmax_rows(float* p, int64_t rows, int64_t n) {
  auto sp = du::cached<SoftmaxPrim>(du::key("softmax", rows, n), [&] {
    dnnl::softmax_forward::desc d(dnnl::prop_kind::forward_training, du::plain_md({rows, n}), 1);
    dnnl::softmax_forward::primitive_desc pd(d, du::engine());
    return std::make_shared<SoftmaxPrim>(SoftmaxPrim{pd, dnnl::softmax_forward(pd)});
  });
  dnnl::memory m = du::make_mem(sp->pd.src_desc(), p);
  sp->prim.execute(du::stream(), {{DNNL_ARG_SRC, m}, {DNNL_ARG_DST, m}});
  du::stream().wait();
}

// Per-(b,h) operand views. base: the (b, h) [T, d] matrix with row stride sT.
struct Head {
  const float* p;
  int64_t sT;
};
Head head(const Tensor& t, int64_t b, int64_t h) {
  return Head{t.data() + b * t.stride(0) + h * t.stride(1), t.stride(2)};
}
// Full windows as a batch [nf, W, d]; the tail as [1, rem, d].
Mat full_windows(const Head& x, const AttnGeo& g) {
  return Mat{x.p, g.nf, g.W, g.d, g.W * x.sT, x.sT, 1};
}
Mat tail_window(const Head& x, const AttnGeo& g) {
  return Mat{x.p + g.nf * g.W * x.sT, 1, g.rem, g.d, g.rem * x.sT, x.sT, 1};
}
// Probability-like buffers of one (b, h): [nw, W, W]; the tail's rem×rem block has row stride W.
Mat full_probs(const float* p, const AttnGeo& g) {
  return Mat{p, g.nf, g.W, g.W, g.W * g.W, g.W, 1};
}
Mat tail_probs(const float* p, const AttnGeo& g) {
  return Mat{p + g.nf * g.W * g.W, 1, g.rem, g.rem, g.W * g.W, g.W, 1};
}

Tensor make_drop_mask(const AttnGeo& g, const Shape& shape, float p, Rng& rng) {
  Tensor m = Tensor::zeros(shape);
  const float keep_scale = 1.0f / (1.0f - p);
  float* mp = m.data();
  for (int64_t bh = 0; bh < g.B * g.H; ++bh)
    for (int64_t w = 0; w < g.nw; ++w) {
      const int64_t n = w < g.nf ? g.W : g.rem;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          mp[bh * g.slot() + (w * g.W + i) * g.W + j] = rng.bernoulli(1.0 - p) ? keep_scale : 0.0f;
    }
  return m;
}

}  // namespace

// q, k, v [B, H, T, d] -> out [B, H, T, d]; per window: out = dropout(softmax(q·kᵀ·scale))·v
Tensor attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, float scale,
                         int64_t window, float p_drop, bool training, Rng* rng,
                         AttentionSaved* saved) {
  const AttnGeo g = attn_geo("", q_in, k_in, v_in, window, p_drop);
  const bool drop = training && p_drop > 0.0f;
  CMDR_CHECK(!drop || rng != nullptr, "attention: dropout p ", p_drop, " in training needs an rng");
  ProfileScope ps(op_name(Op::Attention), 4.0 * g.pairs() * g.d,
                  4.0 * (4 * q_in.numel() + 2 * g.B * g.H * g.slot()));
  const Tensor q = unit_last(q_in), k = unit_last(k_in), v = unit_last(v_in);
  const Shape ps_shape = g.probs_shape(window);
  Tensor probs = Tensor::zeros(ps_shape);
  Tensor mask = drop ? make_drop_mask(g, ps_shape, p_drop, *rng) : Tensor();
  Tensor dropped = drop ? Tensor::empty({g.slot()}) : Tensor();  // probs·mask of one (b, h)
  Tensor out = Tensor::empty({g.B, g.H, g.T, g.d});
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t h = 0; h < g.H; ++h) {
      const int64_t bh = b * g.H + h;
      const Head qh = head(q, b, h), kh = head(k, b, h), vh = head(v, b, h);
      float* pb = probs.data() + bh * g.slot();
      float* ob = out.data() + bh * g.T * g.d;
      // scores = scale · q·kᵀ, then softmax along keys
      if (g.nf > 0) {
        detail::gemm(full_windows(qh, g), full_windows(kh, g).t(), pb, g.W * g.W, g.W, nullptr,
                     scale);
        softmax_rows(pb, g.nf * g.W, g.W);
      }
      if (g.rem > 0) {
        float* tp = pb + g.nf * g.W * g.W;
        detail::gemm(tail_window(qh, g), tail_window(kh, g).t(), tp, g.W * g.W, g.W, nullptr,
                     scale);
        softmax_rows_ref(tp, g.rem, g.rem, g.W);
      }
      const float* pv = pb;
      if (drop) {
        const float* mb = mask.data() + bh * g.slot();
        float* db = dropped.data();
        for (int64_t i = 0; i < g.slot(); ++i) db[i] = pb[i] * mb[i];
        pv = db;
      }
      if (g.nf > 0) detail::gemm(full_probs(pv, g), full_windows(vh, g), ob, g.W * g.d, g.d);
      if (g.rem > 0)
        detail::gemm(tail_probs(pv, g), tail_window(vh, g), ob + g.nf * g.W * g.d, g.rem * g.d,
                     g.d);
    }
  if (saved) {
    saved->probs = probs;
    saved->drop_mask = mask;
  }
  return out;
}

// Given P (saved probs), M (mask), P' = P·M:
//   dV = P'ᵀ·dO;  dP = (dO·Vᵀ)·M;  dS = P ⊙ (dP − rowsum(P ⊙ dP)) · scale;
//   dQ = dS·K;  dK = dSᵀ·Q.
AttentionGrads attention_backward(const Tensor& dy_in, const Tensor& q_in, const Tensor& k_in,
                                  const Tensor& v_in, float scale, int64_t window, float p_drop,
                                  const AttentionSaved& saved) {
  const AttnGeo g = attn_geo(" backward", q_in, k_in, v_in, window, p_drop);
  CMDR_CHECK(dy_in.defined() && dy_in.shape() == q_in.shape(), "attention backward: dy ",
             dy_in.defined() ? dy_in.str() : std::string("undefined"), " vs q ", q_in.str());
  const Shape ps_shape = g.probs_shape(window);
  CMDR_CHECK(
      saved.probs.defined() && saved.probs.shape() == ps_shape && saved.probs.is_contiguous(),
      "attention backward: saved probs ",
      saved.probs.defined() ? saved.probs.str() : std::string("undefined"), " must be contiguous ",
      shape_str(ps_shape), " (window ", window, ")");
  const bool drop = saved.drop_mask.defined();
  if (drop)
    CMDR_CHECK(saved.drop_mask.shape() == ps_shape && saved.drop_mask.is_contiguous(),
               "attention backward: drop_mask ", saved.drop_mask.str(), " must be contiguous ",
               shape_str(ps_shape));
  ProfileScope ps(op_name(Op::Attention), 8.0 * g.pairs() * g.d,
                  4.0 * (7 * q_in.numel() + 3 * g.B * g.H * g.slot()));
  const Tensor q = unit_last(q_in), k = unit_last(k_in), v = unit_last(v_in);
  const Tensor dy = unit_last(dy_in);
  AttentionGrads r;
  r.dq = Tensor::empty(q.shape());
  r.dk = Tensor::empty(q.shape());
  r.dv = Tensor::empty(q.shape());
  Tensor dropped = drop ? Tensor::empty({g.slot()}) : Tensor();
  Tensor gbuf = Tensor::empty({g.slot()});  // dP, then dS, of one (b, h)
  const int64_t td = g.T * g.d;
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t h = 0; h < g.H; ++h) {
      const int64_t bh = b * g.H + h;
      const Head qh = head(q, b, h), kh = head(k, b, h), vh = head(v, b, h), oh = head(dy, b, h);
      const float* pb = saved.probs.data() + bh * g.slot();
      const float* mb = drop ? saved.drop_mask.data() + bh * g.slot() : nullptr;
      const float* pv = pb;
      if (drop) {
        float* db = dropped.data();
        for (int64_t i = 0; i < g.slot(); ++i) db[i] = pb[i] * mb[i];
        pv = db;
      }
      float* gb = gbuf.data();
      float* dqb = r.dq.data() + bh * td;
      float* dkb = r.dk.data() + bh * td;
      float* dvb = r.dv.data() + bh * td;
      const int64_t wd = g.W * g.d, tail_off = g.nf * g.W * g.d;
      // dV = P'ᵀ·dO ; dP' = dO·Vᵀ
      if (g.nf > 0) {
        detail::gemm(full_probs(pv, g).t(), full_windows(oh, g), dvb, wd, g.d);
        detail::gemm(full_windows(oh, g), full_windows(vh, g).t(), gb, g.W * g.W, g.W);
      }
      if (g.rem > 0) {
        detail::gemm(tail_probs(pv, g).t(), tail_window(oh, g), dvb + tail_off, g.rem * g.d, g.d);
        detail::gemm(tail_window(oh, g), tail_window(vh, g).t(), gb + g.nf * g.W * g.W, g.W * g.W,
                     g.W);
      }
      // dS = P ⊙ (dP − Σ_j P·dP) · scale, row by row (rows are independent: parallel).
      const int64_t nrows = g.nf * g.W + g.rem;
#pragma omp parallel for schedule(static)
      for (int64_t r_ = 0; r_ < nrows; ++r_) {
        const int64_t n = r_ < g.nf * g.W ? g.W : g.rem;
        const int64_t off = r_ * g.W;  // tail rows continue at stride W inside the last slot
        const float* p = pb + off;
        float* gr = gb + off;
        if (mb)
          for (int64_t j = 0; j < n; ++j) gr[j] *= mb[off + j];
        double s = 0;
        for (int64_t j = 0; j < n; ++j) s += static_cast<double>(p[j]) * gr[j];
        const float sf = static_cast<float>(s);
        for (int64_t j = 0; j < n; ++j) gr[j] = p[j] * (gr[j] - sf) * scale;
      }
      // dQ = dS·K ; dK = dSᵀ·Q
      if (g.nf > 0) {
        detail::gemm(full_probs(gb, g), full_windows(kh, g), dqb, wd, g.d);
        detail::gemm(full_probs(gb, g).t(), full_windows(qh, g), dkb, wd, g.d);
      }
      if (g.rem > 0) {
        detail::gemm(tail_probs(gb, g), tail_window(kh, g), dqb + tail_off, g.rem * g.d, g.d);
        detail::gemm(tail_probs(gb, g).t(), tail_window(qh, g), dkb + tail_off, g.rem * g.d, g.d);
      }
    }
  return r;
}

}  // namespace cmdr::ops
