// Convolutions on oneDNN: conv1d, conv2d, conv_transpose1d, conv_transpose2d, forward and
// backward (backward_data, backward_weights primitives). Primitive descriptors are created
// with format `any` so oneDNN picks its fastest (blocked) layouts; our plain PyTorch-layout
// tensors are reordered in and out. One cache entry per (op, shapes, stride, pad, bias).
//
// Weight layouts: PyTorch conv weight is [Cout, Cin, k...] = oneDNN's oi(h)w directly.
// PyTorch transposed-conv weight is [Cin, Cout, k...]; oneDNN's deconvolution weights are
// [Cout, Cin, k...] (o = output channels of the deconvolution), with the same (unflipped)
// kernel orientation as PyTorch — so we only swap the first two dimensions, by describing
// the user tensor with permuted strides (no copy; the reorder into oneDNN's layout does it).
#include <algorithm>
#include <memory>
#include <string>

#include "engine/error.hpp"
#include "engine/precision.hpp"
#include "engine/profiler.hpp"
#include "ops/dnnl_common.hpp"
#include "ops/gemm.hpp"
#include "ops/ops.hpp"

namespace cmdr::ops {
namespace {
namespace du = dnnl_util;
using dnnl::memory;

template <bool Transposed>
struct Family;
template <>
struct Family<false> {
  using Fwd = dnnl::convolution_forward;
  using BwdData = dnnl::convolution_backward_data;
  using BwdWeights = dnnl::convolution_backward_weights;
  static constexpr dnnl::algorithm kAlg = dnnl::algorithm::convolution_direct;
};
template <>
struct Family<true> {
  using Fwd = dnnl::deconvolution_forward;
  using BwdData = dnnl::deconvolution_backward_data;
  using BwdWeights = dnnl::deconvolution_backward_weights;
  static constexpr dnnl::algorithm kAlg = dnnl::algorithm::deconvolution_direct;
};

// Geometry of one call: user shapes plus oneDNN's logical weight dims [Cout, Cin, k...].
struct Geo {
  Op op;
  bool transposed = false;
  int64_t B = 0, Cin = 0, Cout = 0;
  Shape xs, ws, ys;  // x, weight (as PyTorch stores it), y
  Shape wdims;       // oneDNN logical weights [Cout, Cin, k...]
  int64_t stride = 1, pad = 0;
  int nsp = 1;  // spatial rank
  // Precision bf16: x, weight and dy enter the primitives as bfloat16 (reordered from the
  // float32 user tensors, round to nearest even); y, dx, dW, db stay float32.
  bool bf16 = precision() == Precision::BF16;

  // Descriptor with format `any` for a GEMM operand (bf16 under precision bf16).
  memory::desc op_md(const Shape& s) const {
    return memory::desc(du::dims_of(s), bf16 ? memory::data_type::bf16 : memory::data_type::f32,
                        memory::format_tag::any);
  }

  memory::dims strides() const { return memory::dims(nsp, stride); }
  memory::dims pads() const { return memory::dims(nsp, pad); }
  // The user's weight tensor described in oneDNN's [Cout, Cin, k...] order.
  memory::desc w_user_md() const {
    Shape cs = contiguous_strides(ws);
    if (transposed) std::swap(cs[0], cs[1]);  // [Cin, Cout, k] storage viewed as [Cout, Cin, k]
    return du::strided_md(du::dims_of(wdims), du::dims_of(cs));
  }
  std::string key(const char* what, bool bias) const {
    return du::key(what, int(op), shape_str(xs), shape_str(ws), stride, pad, bias,
                   bf16 ? "bf16" : "f32");
  }
  double flops() const {
    // 2 · (multiply-adds): every (input pixel, output channel, tap) pair for transposed,
    // every (output pixel, input channel, tap) pair for direct convolution.
    double k = 1;
    for (std::size_t i = 2; i < ws.size(); ++i) k *= static_cast<double>(ws[i]);
    const double sp_in = static_cast<double>(shape_numel(xs) / (B * Cin));
    const double sp_out = static_cast<double>(shape_numel(ys) / (B * Cout));
    return transposed ? 2.0 * B * Cin * sp_in * Cout * k : 2.0 * B * Cout * sp_out * Cin * k;
  }
  double bytes() const {
    return 4.0 * static_cast<double>(shape_numel(xs) + shape_numel(ws) + shape_numel(ys));
  }
};

Geo make_geo(Op op, bool transposed, int nsp, const Tensor& x, const Tensor& w, int64_t stride,
             int64_t pad) {
  const char* name = op_name(op);
  CMDR_CHECK(x.defined() && w.defined(), name, ": x and weight must be defined");
  const int64_t rank = nsp + 2;
  CMDR_CHECK(x.dim() == rank, name, ": x ", x.str(), " must have rank ", rank,
             nsp == 1 ? " [B, C, L]" : " [B, C, H, W]");
  CMDR_CHECK(w.dim() == rank, name, ": weight ", w.str(), " must have rank ", rank,
             transposed ? " [Cin, Cout, k...]" : " [Cout, Cin, k...]");
  CMDR_CHECK(stride >= 1, name, ": stride ", stride, " must be >= 1");
  CMDR_CHECK(pad >= 0, name, ": pad ", pad, " must be >= 0");
  Geo g;
  g.op = op;
  g.transposed = transposed;
  g.nsp = nsp;
  g.stride = stride;
  g.pad = pad;
  g.B = x.size(0);
  g.Cin = x.size(1);
  g.xs = x.shape();
  g.ws = w.shape();
  const int64_t wcin = transposed ? w.size(0) : w.size(1);
  CMDR_CHECK(wcin == g.Cin, name, ": x ", x.str(), " vs weight ", w.str(),
             ": input channels differ (", g.Cin, " vs ", wcin, ")");
  g.Cout = transposed ? w.size(1) : w.size(0);
  CMDR_CHECK(g.B > 0 && g.Cin > 0 && g.Cout > 0, name, ": empty batch or channels: x ", x.str(),
             ", weight ", w.str());
  g.ys = {g.B, g.Cout};
  g.wdims = {g.Cout, g.Cin};
  for (int i = 0; i < nsp; ++i) {
    const int64_t in = x.size(2 + i), k = w.size(2 + i);
    CMDR_CHECK(k >= 1, name, ": weight ", w.str(), ": empty kernel");
    const int64_t out =
        transposed ? (in - 1) * stride - 2 * pad + k : (in + 2 * pad - k) / stride + 1;
    CMDR_CHECK(in >= 1 && out >= 1 && (transposed || in + 2 * pad >= k), name, ": x ", x.str(),
               ", weight ", w.str(), ", stride ", stride, ", pad ", pad, ": output size would be ",
               out);
    CMDR_CHECK(transposed || pad < k, name, ": pad ", pad, " must be smaller than the kernel ", k);
    g.ys.push_back(out);
    g.wdims.push_back(k);
  }
  return g;
}

void check_bias(const Geo& g, const Tensor& bias) {
  if (!bias.defined()) return;
  CMDR_CHECK(bias.dim() == 1 && bias.size(0) == g.Cout, op_name(g.op), ": bias ", bias.str(),
             " must be [", g.Cout, "] (output channels)");
}

void check_dy(const Geo& g, const Tensor& dy) {
  CMDR_CHECK(dy.defined() && dy.shape() == g.ys, op_name(g.op), " backward: dy ",
             dy.defined() ? dy.str() : std::string("undefined"), " vs expected ", shape_str(g.ys),
             " (x ", shape_str(g.xs), ", weight ", shape_str(g.ws), ")");
}

template <bool T>
struct FwdPrim {
  typename Family<T>::Fwd::primitive_desc pd;
  typename Family<T>::Fwd prim;
};
template <bool T>
struct BwdDataPrim {
  typename Family<T>::BwdData::primitive_desc pd;
  typename Family<T>::BwdData prim;
};
template <bool T>
struct BwdWeightsPrim {
  typename Family<T>::BwdWeights::primitive_desc pd;
  typename Family<T>::BwdWeights prim;
};

template <bool T>
std::shared_ptr<FwdPrim<T>> fwd_prim(const Geo& g, bool bias) {
  return du::cached<FwdPrim<T>>(g.key("fwd", bias), [&] {
    using F = typename Family<T>::Fwd;
    const memory::desc xmd = g.op_md(g.xs), wmd = g.op_md(g.wdims), ymd = du::any_md(g.ys);
    auto d = bias ? typename F::desc(dnnl::prop_kind::forward_training, Family<T>::kAlg, xmd, wmd,
                                     du::plain_md({g.Cout}), ymd, g.strides(), g.pads(), g.pads())
                  : typename F::desc(dnnl::prop_kind::forward_training, Family<T>::kAlg, xmd, wmd,
                                     ymd, g.strides(), g.pads(), g.pads());
    typename F::primitive_desc pd(d, du::engine());
    return std::make_shared<FwdPrim<T>>(FwdPrim<T>{pd, F(pd)});
  });
}

template <bool T>
std::shared_ptr<BwdDataPrim<T>> bwd_data_prim(const Geo& g) {
  return du::cached<BwdDataPrim<T>>(g.key("bwd_data", false), [&] {
    using F = typename Family<T>::BwdData;
    auto hint = fwd_prim<T>(g, false);
    typename F::desc d(Family<T>::kAlg, du::any_md(g.xs), g.op_md(g.wdims), g.op_md(g.ys),
                       g.strides(), g.pads(), g.pads());
    typename F::primitive_desc pd(d, du::engine(), hint->pd);
    return std::make_shared<BwdDataPrim<T>>(BwdDataPrim<T>{pd, F(pd)});
  });
}

template <bool T>
std::shared_ptr<BwdWeightsPrim<T>> bwd_weights_prim(const Geo& g, bool bias) {
  return du::cached<BwdWeightsPrim<T>>(g.key("bwd_weights", bias), [&] {
    using F = typename Family<T>::BwdWeights;
    auto hint = fwd_prim<T>(g, bias);
    const memory::desc xmd = g.op_md(g.xs), wmd = du::any_md(g.wdims), ymd = g.op_md(g.ys);
    auto d =
        bias ? typename F::desc(Family<T>::kAlg, xmd, wmd, du::plain_md({g.Cout}), ymd, g.strides(),
                                g.pads(), g.pads())
             : typename F::desc(Family<T>::kAlg, xmd, wmd, ymd, g.strides(), g.pads(), g.pads());
    typename F::primitive_desc pd(d, du::engine(), hint->pd);
    return std::make_shared<BwdWeightsPrim<T>>(BwdWeightsPrim<T>{pd, F(pd)});
  });
}

// Output memory: the user's buffer when oneDNN's chosen layout is plain, else a scratch
// buffer reordered into the user's buffer after execution (see finish()).
struct Out {
  memory user, exec;
  bool direct() const { return user.get_desc() == exec.get_desc(); }
};
Out out_mem(const memory::desc& user_md, float* p, const memory::desc& want) {
  memory u = du::make_mem(user_md, p);
  return Out{u, u.get_desc() == want ? u : memory(want, du::engine())};
}
void finish(Out& o) {
  if (!o.direct()) du::reorder(o.exec, o.user);
}

// ConvTranspose1d with kernel 4, stride 2, pad 1 (Decoder3D's five layers, SPEC 5.3) as one
// GEMM per output parity (polyphase), with W_t = weight[:, :, t] ([Cin, Cout]):
//   y[:, 2m]     = W_3ᵀ·x[:, m−1] + W_1ᵀ·x[:, m]
//   y[:, 2m + 1] = W_2ᵀ·x[:, m]   + W_0ᵀ·x[:, m+1]      (x[:, −1] = x[:, L] = 0)
// i.e. P[r] = A[r]·X[r·Cin : r·Cin + 2Cin] with A[0] = [W_3ᵀ | W_1ᵀ], A[1] = [W_2ᵀ | W_0ᵀ] and
// X = [x shifted right; x; x shifted left] ([3·Cin, L]), then y[:, 2m + r] = P[r][:, m] + b.
// Why: oneDNN 2.6's stride-2 deconvolution runs its last layer (128 → 1152, L 25088 → 50176 at
// S = 224) at ~50 GFLOP/s (ONEDNN_VERBOSE, issue 8) and the others at ~180; the GEMM runs at
// the matmul rate. Same products and sums (2·Cin terms per output), in another order.
bool g_polyphase = true;  // set_conv_transpose1d_polyphase
bool polyphase_k4s2p1(const Geo& g) {
  return g_polyphase && g.transposed && g.nsp == 1 && g.stride == 2 && g.pad == 1 && g.ws[2] == 4;
}
Tensor conv_transpose1d_polyphase(const Geo& g, const Tensor& x, const Tensor& w,
                                  const Tensor& bias) {
  const int64_t B = g.B, C = g.Cin, O = g.Cout, L = g.xs[2];
  Tensor xc = x.contiguous(), wc = w.contiguous();
  Tensor a = Tensor::empty({2, O, 2 * C});  // the phase weights A[r] [Cout, 2·Cin]
  const int64_t tap[2][2] = {{3, 1}, {2, 0}};
  {
    const float* wp = wc.data();
    float* ap = a.data();
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t r = 0; r < 2; ++r)
      for (int64_t o = 0; o < O; ++o)
        for (int64_t h = 0; h < 2; ++h)
          for (int64_t c = 0; c < C; ++c)
            ap[(r * O + o) * 2 * C + h * C + c] = wp[(c * O + o) * 4 + tap[r][h]];
  }
  Tensor xs = Tensor::empty({3 * C, L});  // [x shifted right; x; x shifted left]
  constexpr int64_t kChunk = 4096;
  Tensor ph = Tensor::empty({2, O, std::min(kChunk, L)});  // P[r] for one column block
  Tensor y = Tensor::empty(g.ys);
  const Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  const float* bp = bc.defined() ? bc.data() : nullptr;
  for (int64_t b = 0; b < B; ++b) {
    const float* xb = xc.data() + b * C * L;
    float* xsp = xs.data();
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      const float* src = xb + c * L;
      float* right = xsp + c * L;
      float* mid = xsp + (C + c) * L;
      float* left = xsp + (2 * C + c) * L;
      for (int64_t m = 0; m < L; ++m) {
        right[m] = m > 0 ? src[m - 1] : 0.0f;
        mid[m] = src[m];
        left[m] = m + 1 < L ? src[m + 1] : 0.0f;
      }
    }
    // Column blocks of kChunk positions bound the phase buffer (2·Cout·kChunk floats, 38 MB at
    // Cout = 1152) instead of a second copy of y (231 MB at S = 224).
    for (int64_t m0 = 0; m0 < L; m0 += kChunk) {
      const int64_t n = std::min(kChunk, L - m0);
      for (int64_t r = 0; r < 2; ++r) {  // phase r reads rows [r·Cin, r·Cin + 2Cin) of X
        // (two GEMMs, not one batched: the phases' X blocks overlap, which oneDNN refuses)
        detail::Mat am{a.data() + r * O * 2 * C, {}, {}, O, 2 * C, 2 * C, 1};
        detail::Mat xm{xs.data() + r * C * L + m0, {}, {}, 2 * C, n, L, 1};
        detail::gemm(am, xm, ph.data() + r * O * n, {}, n);
      }
      const float* pp = ph.data();
      float* yb = y.data() + b * O * 2 * L;
#pragma omp parallel for schedule(static)
      for (int64_t o = 0; o < O; ++o) {
        const float* ev = pp + o * n;
        const float* od = pp + (O + o) * n;
        const float bo = bp ? bp[o] : 0.0f;
        float* yo = yb + o * 2 * L + 2 * m0;
        for (int64_t m = 0; m < n; ++m) {
          yo[2 * m] = ev[m] + bo;
          yo[2 * m + 1] = od[m] + bo;
        }
      }
    }
  }
  return y;
}

template <bool T>
Tensor conv_forward_impl(const Geo& g, const Tensor& x, const Tensor& w, const Tensor& bias) {
  check_bias(g, bias);
  ProfileScope ps(op_name(g.op), g.flops(), g.bytes());
  if (polyphase_k4s2p1(g)) return conv_transpose1d_polyphase(g, x, w, bias);
  auto p = fwd_prim<T>(g, bias.defined());
  Tensor xc = x.contiguous(), wc = w.contiguous();
  Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  memory xm = du::to_layout(du::make_mem(du::plain_md(g.xs), xc.data()), p->pd.src_desc());
  memory wm = du::to_layout(du::make_mem(g.w_user_md(), wc.data()), p->pd.weights_desc());
  Tensor y = Tensor::empty(g.ys);
  Out ym = out_mem(du::plain_md(g.ys), y.data(), p->pd.dst_desc());
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym.exec}};
  if (bc.defined()) args.emplace(DNNL_ARG_BIAS, du::make_mem(du::plain_md({g.Cout}), bc.data()));
  p->prim.execute(du::stream(), args);
  du::stream().wait();
  finish(ym);
  return y;
}

// db[c] = Σ_{b, spatial} dy[b, c, ...], accumulated in double in a fixed order.
Tensor bias_grad(const Tensor& dyc, int64_t B, int64_t C) {
  const int64_t S = dyc.numel() / (B * C);
  Tensor db = Tensor::empty({C});
  const float* d = dyc.data();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < S; ++i) s += d[(b * C + c) * S + i];
    db.data()[c] = static_cast<float>(s);
  }
  return db;
}

template <bool T>
ConvGrads conv_backward_impl(const Geo& g, const Tensor& dy, const Tensor& x, const Tensor& w,
                             bool need_dx, bool need_dw, bool need_db) {
  check_dy(g, dy);
  ProfileScope ps(op_name(g.op), g.flops() * (int(need_dx) + int(need_dw)), g.bytes());
  ConvGrads out;
  Tensor dyc = dy.contiguous();
  const memory dy_user = du::make_mem(du::plain_md(g.ys), dyc.data());
  if (need_dx) {
    auto p = bwd_data_prim<T>(g);
    Tensor wc = w.contiguous();
    memory wm = du::to_layout(du::make_mem(g.w_user_md(), wc.data()), p->pd.weights_desc());
    memory dym = du::to_layout(dy_user, p->pd.diff_dst_desc());
    out.dx = Tensor::empty(g.xs);
    Out dxm = out_mem(du::plain_md(g.xs), out.dx.data(), p->pd.diff_src_desc());
    p->prim.execute(
        du::stream(),
        {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm.exec}});
    du::stream().wait();
    finish(dxm);
  }
  // Under bf16 the primitive would sum the bf16-rounded dy for db: db stays float32 instead.
  const bool fused_db = need_dw && need_db && !g.bf16;
  if (need_dw) {
    auto p = bwd_weights_prim<T>(g, fused_db);
    Tensor xc = x.contiguous();
    memory xm = du::to_layout(du::make_mem(du::plain_md(g.xs), xc.data()), p->pd.src_desc());
    memory dym = du::to_layout(dy_user, p->pd.diff_dst_desc());
    out.dweight = Tensor::empty(g.ws);
    Out dwm = out_mem(g.w_user_md(), out.dweight.data(), p->pd.diff_weights_desc());
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dwm.exec}};
    if (fused_db) {
      out.dbias = Tensor::empty({g.Cout});
      args.emplace(DNNL_ARG_DIFF_BIAS, du::make_mem(du::plain_md({g.Cout}), out.dbias.data()));
    }
    p->prim.execute(du::stream(), args);
    du::stream().wait();
    finish(dwm);
  }
  if (need_db && !fused_db) out.dbias = bias_grad(dyc, g.B, g.Cout);
  return out;
}

}  // namespace

// conv1d: x [B, Cin, L], weight [Cout, Cin, k], bias [Cout] -> [B, Cout, (L + 2p − k)/s + 1]
Tensor conv1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t pad) {
  return conv_forward_impl<false>(make_geo(Op::Conv1d, false, 1, x, weight, stride, pad), x, weight,
                                  bias);
}
ConvGrads conv1d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, int64_t stride,
                          int64_t pad, bool need_dx, bool need_dweight, bool need_dbias) {
  return conv_backward_impl<false>(make_geo(Op::Conv1d, false, 1, x, weight, stride, pad), dy, x,
                                   weight, need_dx, need_dweight, need_dbias);
}
// conv2d: x [B, Cin, H, W], weight [Cout, Cin, kh, kw] -> [B, Cout, Hout, Wout]
Tensor conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
                      int64_t pad) {
  return conv_forward_impl<false>(make_geo(Op::Conv2d, false, 2, x, weight, stride, pad), x, weight,
                                  bias);
}
ConvGrads conv2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, int64_t stride,
                          int64_t pad, bool need_dx, bool need_dweight, bool need_dbias) {
  return conv_backward_impl<false>(make_geo(Op::Conv2d, false, 2, x, weight, stride, pad), dy, x,
                                   weight, need_dx, need_dweight, need_dbias);
}
// conv_transpose1d: x [B, Cin, L], weight [Cin, Cout, k] -> [B, Cout, (L − 1)s − 2p + k]
Tensor conv_transpose1d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                int64_t stride, int64_t pad) {
  return conv_forward_impl<true>(make_geo(Op::ConvTranspose1d, true, 1, x, weight, stride, pad), x,
                                 weight, bias);
}
ConvGrads conv_transpose1d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    int64_t stride, int64_t pad, bool need_dx, bool need_dweight,
                                    bool need_dbias) {
  return conv_backward_impl<true>(make_geo(Op::ConvTranspose1d, true, 1, x, weight, stride, pad),
                                  dy, x, weight, need_dx, need_dweight, need_dbias);
}
void set_conv_transpose1d_polyphase(bool on) {
  g_polyphase = on;
}
// conv_transpose2d: x [B, Cin, H, W], weight [Cin, Cout, kh, kw] -> [B, Cout, Hout, Wout]
Tensor conv_transpose2d_forward(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                int64_t stride, int64_t pad) {
  return conv_forward_impl<true>(make_geo(Op::ConvTranspose2d, true, 2, x, weight, stride, pad), x,
                                 weight, bias);
}
ConvGrads conv_transpose2d_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                    int64_t stride, int64_t pad, bool need_dx, bool need_dweight,
                                    bool need_dbias) {
  return conv_backward_impl<true>(make_geo(Op::ConvTranspose2d, true, 2, x, weight, stride, pad),
                                  dy, x, weight, need_dx, need_dweight, need_dbias);
}

}  // namespace cmdr::ops
