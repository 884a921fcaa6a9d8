// Multi-head attention (full or windowed, SPEC 5.2) on oneDNN matmul + softmax primitives.
//
// Layout of AttentionSaved::probs (and drop_mask, same shape):
//   window == 0: [B, H, T, T]
//   window  > 0: [B, H, nw, W, W] with nw = ceil(T / W); the last window holds only
//                rem = T − (nw − 1)·W tokens: its probabilities fill the top-left rem×rem
//                block of its W×W slot and the rest is zero (padded keys get no attention,
//                padded queries do not exist).
// Dropout (issue 8): one key per call from the Rng; the entry at flat offset i of that layout
// is kept iff counter_keep(key, i, ·) and scaled by 1/(1 − p) (inverted dropout). Forward and
// backward regenerate it where used, so no mask tensor exists (with one, 205 MB at S = 224).
// An explicit drop_mask (torch's, from fixtures) replaces it when given to the backward.
//
// All (b, h, window) blocks run as one batched oneDNN product (operands addressed with their
// real strides — q/k/v may be views of a packed qkv tensor); the short last window of every
// (b, h) as a second one. One softmax primitive call covers all rows.
//
// Inference (no `saved` requested and no dropout): a fused kernel instead, one task per
// (b, h, window) — scores of that window in a per-thread buffer, softmax, ·v — so no
// probability tensor exists (205 MB for Decoder2D at S = 224: 8 heads × 392 windows × 128²).
// GCC 12 reports false "maybe-uninitialized" warnings inside Eigen's AVX-512 packet code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

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
  CMDR_CHECK(g.B > 0 && g.H > 0 && g.T > 0 && g.d > 0, "attention", what, ": q ", q.str(),
             ": empty dimension");
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

// Operand views over all (b, h) at once: the full windows of X [B, H, T, d] as a batch
// [B, H, nf] of [W, d] matrices, the short last window as a batch [B, H] of [rem, d].
Mat full_windows(const Tensor& x, const AttnGeo& g) {
  return Mat{x.data(),
             {g.B, g.H, g.nf},
             {x.stride(0), x.stride(1), g.W * x.stride(2)},
             g.W,
             g.d,
             x.stride(2),
             1};
}
Mat tail_window(const Tensor& x, const AttnGeo& g) {
  return Mat{x.data() + g.nf * g.W * x.stride(2),
             {g.B, g.H},
             {x.stride(0), x.stride(1)},
             g.rem,
             g.d,
             x.stride(2),
             1};
}
// Probability-like buffers [B, H, nw, W, W]: full windows, and the tail's rem×rem block
// (row stride W) at the start of the last slot.
Shape full_pbs(const AttnGeo& g) {
  return {g.H * g.slot(), g.slot(), g.W * g.W};
}
Shape tail_pbs(const AttnGeo& g) {
  return {g.H * g.slot(), g.slot()};
}
Mat full_probs(const float* p, const AttnGeo& g) {
  return Mat{p, {g.B, g.H, g.nf}, full_pbs(g), g.W, g.W, g.W, 1};
}
float* tail_ptr(float* p, const AttnGeo& g) {
  return p + g.nf * g.W * g.W;
}
Mat tail_probs(const float* p, const AttnGeo& g) {
  return Mat{p + g.nf * g.W * g.W, {g.B, g.H}, tail_pbs(g), g.rem, g.rem, g.W, 1};
}
// Outputs [B, H, T, d] (contiguous): batch strides of the full windows / the tail.
Shape full_obs(const AttnGeo& g) {
  return {g.H * g.T * g.d, g.T * g.d, g.W * g.d};
}
Shape tail_obs(const AttnGeo& g) {
  return {g.H * g.T * g.d, g.T * g.d};
}

// out = probs ⊙ mask(drop) (the keyed mask, 0 or 1/(1 − p)), in parallel.
Tensor times_keyed(const Tensor& probs, const DropoutMask& drop) {
  Tensor out = Tensor::empty(probs.shape());
  const float* x = probs.data();
  float* o = out.data();
  const int64_t n = probs.numel();
  const uint64_t key = drop.key, thr = keep_threshold(1.0 - static_cast<double>(drop.p));
  const float ks = 1.0f / (1.0f - drop.p);
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i)
    o[i] = x[i] * (counter_keep(key, static_cast<uint64_t>(i), thr) ? ks : 0.0f);
  return out;
}

// out = a ⊙ b elementwise (n floats), in parallel.
Tensor times(const Tensor& a, const Tensor& b) {
  Tensor out = Tensor::empty(a.shape());
  const float *x = a.data(), *y = b.data();
  float* o = out.data();
  const int64_t n = a.numel();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) o[i] = x[i] * y[i];
  return out;
}

// Zeroes the last (short) window's W×W slot of every (b, h).
void zero_tail_slots(float* p, const AttnGeo& g) {
  for (int64_t bh = 0; bh < g.B * g.H; ++bh)
    std::fill_n(tail_ptr(p + bh * g.slot(), g), g.W * g.W, 0.0f);
}

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CStrided = Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>;
using Strided = Eigen::Map<RowMat, 0, Eigen::OuterStride<>>;

// Fused inference attention: out [B, H, T, d] (contiguous). Tasks (b, h, w) are independent
// and each is computed by one thread with single-threaded Eigen products (Eigen does not
// nest inside an OpenMP region), so the static schedule cannot change any value.
//   S = q_w·k_wᵀ [n, n] (n = W, or rem for the last window: padded keys do not exist);
//   P = softmax(scale·S) row-wise (max-subtracted, float normaliser);  out_w = P·v_w.
Tensor attention_fused(const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                       const AttnGeo& g) {
  Tensor out = Tensor::empty({g.B, g.H, g.T, g.d});
  const int64_t tasks = g.B * g.H * g.nw;
  float* op = out.data();
#pragma omp parallel
  {
    RowMat sbuf(g.W, g.W);  // this thread's scores/probabilities of one window
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t b = t / (g.H * g.nw), h = (t / g.nw) % g.H, w = t % g.nw;
      const int64_t n = w < g.nf ? g.W : g.rem, t0 = w * g.W;
      auto at = [&](const Tensor& x) {
        return CStrided(x.data() + b * x.stride(0) + h * x.stride(1) + t0 * x.stride(2), n, g.d,
                        Eigen::OuterStride<>(x.stride(2)));
      };
      Strided s(sbuf.data(), n, n, Eigen::OuterStride<>(g.W));
      s.noalias() = at(q) * at(k).transpose();
      for (int64_t i = 0; i < n; ++i) {
        auto row = s.row(i).array();
        row *= scale;
        row = (row - row.maxCoeff()).exp();
        row *= 1.0f / row.sum();
      }
      Strided o(op + ((b * g.H + h) * g.T + t0) * g.d, n, g.d, Eigen::OuterStride<>(g.d));
      o.noalias() = s * at(v);
    }
  }
  return out;
}

}  // namespace

// q, k, v [B, H, T, d] -> out [B, H, T, d]; per window: out = dropout(softmax(q·kᵀ·scale))·v
Tensor attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, float scale,
                         int64_t window, float p_drop, bool training, Rng* rng,
                         AttentionSaved* saved) {
  const AttnGeo g = attn_geo("", q_in, k_in, v_in, window, p_drop);
  const bool drop = training && p_drop > 0.0f;
  CMDR_CHECK(!drop || rng != nullptr, "attention: dropout p ", p_drop, " in training needs an rng");
  const Tensor q = unit_last(q_in), k = unit_last(k_in), v = unit_last(v_in);
  if (saved == nullptr && !drop) {  // nothing to save for a backward: no probability tensor
    ProfileScope ps(op_name(Op::Attention), 4.0 * g.pairs() * g.d, 4.0 * 4 * q_in.numel());
    return attention_fused(q, k, v, scale, g);
  }
  ProfileScope ps(op_name(Op::Attention), 4.0 * g.pairs() * g.d,
                  4.0 * (4 * q_in.numel() + 2 * g.B * g.H * g.slot()));
  const Shape ps_shape = g.probs_shape(window);
  Tensor probs = Tensor::empty(ps_shape);
  float* pb = probs.data();
  // scores = scale · q·kᵀ, softmax along keys. One softmax call covers every row of every
  // slot (tail slots are zero then, harmless); the tail is then recomputed on its own.
  if (g.rem > 0) zero_tail_slots(pb, g);
  if (g.nf > 0)
    detail::gemm(full_windows(q, g), full_windows(k, g).t(), pb, full_pbs(g), g.W, nullptr, scale);
  softmax_rows(pb, g.B * g.H * g.nw * g.W, g.W);
  if (g.rem > 0) {
    zero_tail_slots(pb, g);
    detail::gemm(tail_window(q, g), tail_window(k, g).t(), tail_ptr(pb, g), tail_pbs(g), g.W,
                 nullptr, scale);
    const int64_t bhn = g.B * g.H;
#pragma omp parallel for schedule(static)
    for (int64_t bh = 0; bh < bhn; ++bh)
      softmax_rows_ref(tail_ptr(pb + bh * g.slot(), g), g.rem, g.rem, g.W);
  }
  const DropoutMask dm = drop ? DropoutMask{rng->next_u64(), p_drop, probs.numel()} : DropoutMask{};
  const Tensor pv = drop ? times_keyed(probs, dm) : probs;
  Tensor out = Tensor::empty({g.B, g.H, g.T, g.d});
  if (g.nf > 0)
    detail::gemm(full_probs(pv.data(), g), full_windows(v, g), out.data(), full_obs(g), g.d);
  if (g.rem > 0)
    detail::gemm(tail_probs(pv.data(), g), tail_window(v, g), out.data() + g.nf * g.W * g.d,
                 tail_obs(g), g.d);
  if (saved) {
    saved->probs = probs;
    saved->drop = dm;
    saved->drop_mask = Tensor();
  }
  return out;
}

Tensor attention_dropout_mask(const Shape& q_shape, int64_t window, const DropoutMask& drop) {
  if (!drop.defined()) return Tensor();
  const Tensor q = Tensor::empty(q_shape);  // geometry only
  const AttnGeo g = attn_geo(" dropout mask", q, q, q, window, drop.p);
  Tensor m = Tensor::zeros(g.probs_shape(window));
  CMDR_CHECK(m.numel() == drop.n, "attention dropout mask: ", drop.n, " keyed entries for ",
             m.str());
  float* mp = m.data();
  const uint64_t thr = keep_threshold(1.0 - static_cast<double>(drop.p));
  const float ks = 1.0f / (1.0f - drop.p);
  for (int64_t bh = 0; bh < g.B * g.H; ++bh)
    for (int64_t w = 0; w < g.nw; ++w) {
      const int64_t n = w < g.nf ? g.W : g.rem;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t row = bh * g.slot() + (w * g.W + i) * g.W;
        for (int64_t j = 0; j < n; ++j)
          mp[row + j] = counter_keep(drop.key, static_cast<uint64_t>(row + j), thr) ? ks : 0.0f;
      }
    }
  return m;
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
  const bool explicit_mask = saved.drop_mask.defined();
  const bool keyed = !explicit_mask && saved.drop.defined();
  const bool drop = explicit_mask || keyed;
  if (explicit_mask)
    CMDR_CHECK(saved.drop_mask.shape() == ps_shape && saved.drop_mask.is_contiguous(),
               "attention backward: drop_mask ", saved.drop_mask.str(), " must be contiguous ",
               shape_str(ps_shape));
  if (keyed)
    CMDR_CHECK(saved.drop.n == saved.probs.numel() && saved.drop.p == p_drop,
               "attention backward: saved dropout (", saved.drop.n, " entries, p ", saved.drop.p,
               ") does not match probs ", saved.probs.str(), " and p_drop ", p_drop);
  ProfileScope ps(op_name(Op::Attention), 8.0 * g.pairs() * g.d,
                  4.0 * (7 * q_in.numel() + 3 * g.B * g.H * g.slot()));
  const Tensor q = unit_last(q_in), k = unit_last(k_in), v = unit_last(v_in);
  const Tensor dy = unit_last(dy_in);
  AttentionGrads r;
  r.dq = Tensor::empty(q.shape());
  r.dk = Tensor::empty(q.shape());
  r.dv = Tensor::empty(q.shape());
  const float* pb = saved.probs.data();
  const float* mb = explicit_mask ? saved.drop_mask.data() : nullptr;
  Tensor pv = explicit_mask ? times(saved.probs, saved.drop_mask)
              : keyed       ? times_keyed(saved.probs, saved.drop)
                            : saved.probs;
  const uint64_t dkey = saved.drop.key;
  const uint64_t dthr = keyed ? keep_threshold(1.0 - static_cast<double>(saved.drop.p)) : 0;
  const float dks = keyed ? 1.0f / (1.0f - saved.drop.p) : 0.0f;
  const int64_t tail_off = g.nf * g.W * g.d;
  // dV = P'ᵀ·dO
  if (g.nf > 0)
    detail::gemm(full_probs(pv.data(), g).t(), full_windows(dy, g), r.dv.data(), full_obs(g), g.d);
  if (g.rem > 0)
    detail::gemm(tail_probs(pv.data(), g).t(), tail_window(dy, g), r.dv.data() + tail_off,
                 tail_obs(g), g.d);
  // P' is dead now: with dropout it is our own temporary, so it becomes the dP/dS buffer
  // (one probability-sized tensor less at the backward's peak); without, saved.probs stays.
  Tensor gbuf = drop ? std::move(pv) : Tensor::empty(ps_shape);  // dP, then dS
  pv = Tensor();
  float* gb = gbuf.data();
  // dP' = dO·Vᵀ
  if (g.nf > 0) detail::gemm(full_windows(dy, g), full_windows(v, g).t(), gb, full_pbs(g), g.W);
  if (g.rem > 0)
    detail::gemm(tail_window(dy, g), tail_window(v, g).t(), tail_ptr(gb, g), tail_pbs(g), g.W);
  // dS = P ⊙ (dP·M − Σ_j P·dP·M) · scale, row by row (rows are independent: parallel).
  const int64_t rows_bh = g.nf * g.W + g.rem, nrows = g.B * g.H * rows_bh;
#pragma omp parallel for schedule(static)
  for (int64_t rr = 0; rr < nrows; ++rr) {
    const int64_t bh = rr / rows_bh, r_ = rr % rows_bh;
    const int64_t n = r_ < g.nf * g.W ? g.W : g.rem;
    // tail rows continue at stride W inside the last slot
    const int64_t off = bh * g.slot() + r_ * g.W;
    const float* p = pb + off;
    float* gr = gb + off;
    if (mb)
      for (int64_t j = 0; j < n; ++j) gr[j] *= mb[off + j];
    if (keyed)
      for (int64_t j = 0; j < n; ++j)
        gr[j] *= counter_keep(dkey, static_cast<uint64_t>(off + j), dthr) ? dks : 0.0f;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += static_cast<double>(p[j]) * gr[j];
    const float sf = static_cast<float>(s);
    for (int64_t j = 0; j < n; ++j) gr[j] = p[j] * (gr[j] - sf) * scale;
  }
  // dQ = dS·K ; dK = dSᵀ·Q
  if (g.nf > 0) {
    detail::gemm(full_probs(gb, g), full_windows(k, g), r.dq.data(), full_obs(g), g.d);
    detail::gemm(full_probs(gb, g).t(), full_windows(q, g), r.dk.data(), full_obs(g), g.d);
  }
  if (g.rem > 0) {
    detail::gemm(tail_probs(gb, g), tail_window(k, g), r.dq.data() + tail_off, tail_obs(g), g.d);
    detail::gemm(tail_probs(gb, g).t(), tail_window(q, g), r.dk.data() + tail_off, tail_obs(g),
                 g.d);
  }
  return r;
}

}  // namespace cmdr::ops
