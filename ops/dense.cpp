// Dense ops on oneDNN matmul: linear, matmul, bmm (forward + backward).
// Every product goes through detail::gemm, which describes the operands to oneDNN with
// their real strides (transposes and strided views cost no copy) and caches one
// primitive per (shapes, strides, bias) key.
#include <bit>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/precision.hpp"
#include "engine/profiler.hpp"
#include "ops/dnnl_common.hpp"
#include "ops/gemm.hpp"
#include "ops/ops.hpp"
#include "ops/weight_cache.hpp"

namespace cmdr::ops {
namespace detail {
namespace du = dnnl_util;

Mat mat2(const Tensor& t) {
  return Mat{t.data(), {}, {}, t.size(0), t.size(1), t.stride(0), t.stride(1)};
}
Mat mat3(const Tensor& t) {
  return Mat{t.data(), {t.size(0)}, {t.stride(0)}, t.size(1), t.size(2), t.stride(1), t.stride(2)};
}

namespace {

// Canonicalises strides of size-1 dimensions (they are never used to address memory) so
// that oneDNN recognises row-major (sc == 1, sr >= cols) or column-major (sr == 1,
// sc >= rows) layouts. Returns false when the matrix is neither.
bool canonical(Mat& m) {
  if (m.rows == 1 && m.cols == 1) {
    m.sr = m.sc = 1;
  } else if (m.rows == 1) {
    m.sr = m.sc == 1 ? m.cols : 1;
  } else if (m.cols == 1) {
    m.sc = m.sr == 1 ? m.rows : 1;
  }
  const bool row_major = m.sc == 1 && m.sr >= m.cols;
  const bool col_major = m.sr == 1 && m.sc >= m.rows;
  bool batch_ok = true;
  for (int64_t s : m.bs) batch_ok = batch_ok && s >= 0;
  return (row_major || col_major) && batch_ok;
}

// Contiguous copy [bd..., rows, cols] of a strided matrix (a view with no unit stride).
Mat pack(const Mat& m, Tensor& keep) {
  Shape s = m.bd;
  s.push_back(m.rows);
  s.push_back(m.cols);
  keep = Tensor::empty(s);
  float* d = keep.data();
  const int64_t rc = m.rows * m.cols;
  for_each_offset(m.bd, m.bs, 0, [&](int64_t i, int64_t off) {
    for (int64_t r = 0; r < m.rows; ++r)
      for (int64_t c = 0; c < m.cols; ++c)
        d[i * rc + r * m.cols + c] = m.p[off + r * m.sr + c * m.sc];
  });
  Shape cs = contiguous_strides(s);
  cs.resize(m.bd.size());
  return Mat{d, m.bd, cs, m.rows, m.cols, m.cols, 1};
}

dnnl::memory::desc md(const Shape& bd, const Shape& bs, int64_t rows, int64_t cols, int64_t sr,
                      int64_t sc, dnnl::memory::data_type dt = dnnl::memory::data_type::f32) {
  Shape d = bd, s = bs;
  d.push_back(rows);
  d.push_back(cols);
  s.push_back(sr);
  s.push_back(sc);
  return dnnl::memory::desc(du::dims_of(d), dt, du::dims_of(s));
}

// bf16 operand (precision bf16): a dense copy of a canonical matrix in the same orientation
// (row-major stays row-major, a transposed view stays column-major), every element rounded
// to nearest even (du::f32_to_bf16). Element-wise, so the OpenMP split changes no bit.
struct Bf16Mat {
  Tensor keep;  // owns the bf16 data (2 per float slot)
  const uint16_t* p = nullptr;
  Mat m;  // geometry with dense strides; m.p unused
};
Bf16Mat to_bf16(const Mat& m) {
  Bf16Mat r;
  const int64_t rc = m.rows * m.cols, n = m.batch() * rc;
  r.keep = Tensor::empty({(n + 1) / 2});
  uint16_t* d = reinterpret_cast<uint16_t*>(r.keep.data());
  std::vector<int64_t> boff(static_cast<std::size_t>(m.batch()));
  for_each_offset(m.bd, m.bs, 0, [&](int64_t i, int64_t off) { boff[i] = off; });
  const bool row_major = m.sc == 1;  // canonical(): else sr == 1 (column-major)
  const int64_t outer = row_major ? m.rows : m.cols, inner = row_major ? m.cols : m.rows;
  const int64_t so = row_major ? m.sr : m.sc;
  const int64_t lines = m.batch() * outer;
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t l = 0; l < lines; ++l) {
    const int64_t b = l / outer, o = l % outer;
    const float* src = m.p + boff[b] + o * so;
    uint16_t* dst = d + b * rc + o * inner;
    for (int64_t i = 0; i < inner; ++i) dst[i] = du::f32_to_bf16(src[i]);
  }
  r.p = d;
  r.m = m;
  Shape s = m.bd;
  s.push_back(m.rows);
  s.push_back(m.cols);
  Shape cs = contiguous_strides(s);
  cs.resize(m.bd.size());
  r.m.bs = cs;
  if (row_major) {
    r.m.sr = m.cols;
    r.m.sc = 1;
  } else {
    r.m.sr = 1;
    r.m.sc = m.rows;
  }
  return r;
}

struct MatmulPrim {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

// bf16: A and B in bfloat16, C (and bias) in float32; oneDNN accumulates in float32.
// w_any: B described as format_tag::any (the primitive chooses its preferred layout, e.g.
// brgemm's blocked BA16a64b; the weight cache supplies B in it). gelu: exact erf GELU
// applied after the bias as a post-op (one pass over C instead of a second op).
std::shared_ptr<MatmulPrim> get_prim(const Mat& a, const Mat& b, const Shape& c_bs, int64_t c_sr,
                                     bool bias, float alpha, bool bf16, bool w_any = false,
                                     bool gelu = false) {
  const std::string k =
      du::key("matmul", shape_str(a.bd), shape_str(a.bs), shape_str(b.bs), shape_str(c_bs), a.rows,
              a.cols, b.cols, a.sr, a.sc, b.sr, b.sc, c_sr, bias, std::bit_cast<uint32_t>(alpha),
              bf16 ? "bf16" : "f32", w_any ? "w_any" : "w_user", gelu ? "gelu" : "");
  return du::cached<MatmulPrim>(k, [&] {
    const auto it = bf16 ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
    auto amd = md(a.bd, a.bs, a.rows, a.cols, a.sr, a.sc, it);
    dnnl::memory::desc bmd;
    if (w_any) {
      Shape d = b.bd;
      d.push_back(b.rows);
      d.push_back(b.cols);
      bmd = dnnl::memory::desc(du::dims_of(d), it, dnnl::memory::format_tag::any);
    } else {
      bmd = md(b.bd, b.bs, b.rows, b.cols, b.sr, b.sc, it);
    }
    auto cmd = md(a.bd, c_bs, a.rows, b.cols, c_sr, 1);
    dnnl::memory::desc biasmd;
    if (bias) {
      const Shape ones(a.bd.size(), 1);
      biasmd = md(ones, Shape(a.bd.size(), b.cols), 1, b.cols, b.cols, 1);
    }
    dnnl::matmul::desc d =
        bias ? dnnl::matmul::desc(amd, bmd, biasmd, cmd) : dnnl::matmul::desc(amd, bmd, cmd);
    dnnl::primitive_attr attr;
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});  // fused into the GEMM
    if (gelu) {
      dnnl::post_ops po;
      po.append_eltwise(1.0f, dnnl::algorithm::eltwise_gelu_erf, 0.0f, 0.0f);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd(d, attr, du::engine());
    return std::make_shared<MatmulPrim>(MatmulPrim{pd, dnnl::matmul(pd)});
  });
}

// Drops batch dimensions of size 1 (from a, b and c alike): fewer, simpler descriptors.
void squeeze_batch(Mat& a, Mat& b, Shape& c_bs) {
  Shape bd, as, bs, cs;
  for (std::size_t i = 0; i < a.bd.size(); ++i)
    if (a.bd[i] != 1) {
      bd.push_back(a.bd[i]);
      as.push_back(a.bs[i]);
      bs.push_back(b.bs[i]);
      cs.push_back(c_bs[i]);
    }
  a.bd = b.bd = bd;
  a.bs = as;
  b.bs = bs;
  c_bs = cs;
}

}  // namespace

namespace {
// Exact GELU x·Φ(x) (the K == 0 path only; the GEMM path uses oneDNN's gelu_erf post-op).
float gelu_scalar(float v) {
  return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));
}

// gemm() and gemm_weight(): w is the tensor B is a view of when B is a reused weight
// (nullptr otherwise).
void gemm_core(const Mat& a_in, const Mat& b_in, float* c, const Shape& c_bs_in, int64_t c_sr,
               const float* bias, float alpha, bool exact, const Tensor* w, bool gelu) {
  CMDR_CHECK(a_in.bd == b_in.bd && a_in.cols == b_in.rows && a_in.bs.size() == a_in.bd.size() &&
                 b_in.bs.size() == b_in.bd.size() && c_bs_in.size() == a_in.bd.size(),
             "gemm: A ", shape_str(a_in.bd), "+[", a_in.rows, ", ", a_in.cols, "] vs B ",
             shape_str(b_in.bd), "+[", b_in.rows, ", ", b_in.cols, "]: dimensions differ");
  // (oneDNN's output scale would also scale the bias; no caller needs both.)
  CMDR_CHECK(bias == nullptr || alpha == 1.0f, "gemm: bias with alpha != 1 is not supported");
  const int64_t M = a_in.rows, N = b_in.cols, K = a_in.cols;
  if (M == 0 || N == 0 || a_in.batch() == 0) return;
  if (K == 0) {  // empty sum: C = bias (or 0)
    for_each_offset(a_in.bd, c_bs_in, 0, [&](int64_t, int64_t off) {
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          const float v = bias ? bias[j] : 0.0f;
          c[off + i * c_sr + j] = gelu ? gelu_scalar(v) : v;
        }
    });
    return;
  }
  Mat a = a_in, b = b_in;
  Shape c_bs = c_bs_in;
  squeeze_batch(a, b, c_bs);
  Tensor pa, pb;  // keep packed copies alive for the call
  if (!canonical(a)) {
    a = pack(a, pa);
    canonical(a);
  }
  // A weight the cache can prepare: canonical as it is (weights are contiguous; a strided
  // view would need a pack per call anyway, so it takes the plain path).
  const bool cached_b = w != nullptr && weight_cache::enabled() && canonical(b);
  if (!cached_b && !canonical(b)) {
    b = pack(b, pb);
    canonical(b);
  }
  if (M == 1) c_sr = N;
  const bool bf16 = !exact && precision() == Precision::BF16;
  Bf16Mat ha, hb;  // bf16 copies (precision bf16 only; B only when not cached)
  if (bf16) {
    ha = to_bf16(a);
    a = ha.m;
    if (!cached_b) {
      hb = to_bf16(b);
      b = hb.m;
    }
  }
  auto p = get_prim(a, b, c_bs, c_sr, bias != nullptr, alpha, bf16, cached_b, gelu);
  auto am = bf16 ? dnnl::memory(p->pd.src_desc(), du::engine(), const_cast<uint16_t*>(ha.p))
                 : du::make_mem(p->pd.src_desc(), a.p);
  dnnl::memory bm;
  if (cached_b) {
    // Issue 8: B prepared once per version of w: reordered to the primitive's layout and,
    // under bf16, rounded by the same to_bf16 as the uncached path first (the reorder
    // bf16 -> bf16 only moves elements, so cached and uncached operands hold equal bits).
    const auto want = p->pd.weights_desc();
    const auto user = md(b.bd, b.bs, b.rows, b.cols, b.sr, b.sc);
    if (!bf16 && want == user) {
      bm = du::make_mem(want, b.p);  // the primitive takes w as it is: nothing to prepare
    } else {
      const std::string tag = du::key("matmul_b", shape_str(b.bd), shape_str(b.bs), b.rows, b.cols,
                                      b.sr, b.sc, b.p - w->data());
      bm = weight_cache::get(*w, tag, want, [&](dnnl::memory& dst) {
        if (bf16) {
          Bf16Mat h = to_bf16(b);
          auto src = dnnl::memory(
              md(h.m.bd, h.m.bs, h.m.rows, h.m.cols, h.m.sr, h.m.sc, dnnl::memory::data_type::bf16),
              du::engine(), const_cast<uint16_t*>(h.p));
          du::reorder(src, dst);
        } else {
          du::reorder(du::make_mem(user, b.p), dst);
        }
      });
    }
  } else {
    bm = bf16 ? dnnl::memory(p->pd.weights_desc(), du::engine(), const_cast<uint16_t*>(hb.p))
              : du::make_mem(p->pd.weights_desc(), b.p);
  }
  auto cm = du::make_mem(p->pd.dst_desc(), c);
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
  if (bias) args.emplace(DNNL_ARG_BIAS, du::make_mem(p->pd.bias_desc(), bias));
  p->prim.execute(du::stream(), args);
  du::stream().wait();
}
}  // namespace

void gemm(const Mat& a, const Mat& b, float* c, const Shape& c_bs, int64_t c_sr, const float* bias,
          float alpha, bool exact) {
  gemm_core(a, b, c, c_bs, c_sr, bias, alpha, exact, nullptr, false);
}

namespace {
// The contiguous [batch..., a.rows, b.cols] result of a *_new GEMM and its batch strides.
Tensor gemm_result(const Mat& a, const Mat& b, Shape& batch_strides) {
  Shape s = a.bd;
  s.push_back(a.rows);
  s.push_back(b.cols);
  batch_strides = contiguous_strides(s);
  batch_strides.resize(a.bd.size());
  return Tensor::empty(s);
}
}  // namespace

Tensor gemm_weight_new(const Mat& a, const Mat& b, const Tensor& w, const float* bias, bool gelu) {
  Shape cs;
  Tensor c = gemm_result(a, b, cs);
  gemm_core(a, b, c.data(), cs, b.cols, bias, 1.0f, false, &w, gelu);
  return c;
}

Tensor gemm_new(const Mat& a, const Mat& b, const float* bias, bool exact) {
  Shape cs;
  Tensor c = gemm_result(a, b, cs);
  gemm(a, b, c.data(), cs, b.cols, bias, 1.0f, exact);
  return c;
}

std::string gemm_impl(const Mat& a_in, const Mat& b_in) {
  Mat a = a_in, b = b_in;
  Shape s = a.bd;
  s.push_back(a.rows);
  s.push_back(b.cols);
  Shape cs = contiguous_strides(s);
  cs.resize(a.bd.size());
  squeeze_batch(a, b, cs);
  CMDR_CHECK(canonical(a) && canonical(b), "gemm_impl: operands need packing");
  const bool bf16 = precision() == Precision::BF16;
  if (bf16) {
    a = to_bf16(a).m;
    b = to_bf16(b).m;
  }
  return du::impl_of(get_prim(a, b, cs, b.cols, false, 1.0f, bf16)->pd);
}

}  // namespace detail

using detail::Mat;

// ---- linear -----------------------------------------------------------------------------
namespace {
void check_linear(const char* what, const Tensor& x, const Tensor& weight) {
  CMDR_CHECK(x.defined() && weight.defined(), "linear", what, ": x and weight must be defined");
  CMDR_CHECK(weight.dim() == 2, "linear", what, ": weight ", weight.str(),
             " must be [out_features, in_features]");
  CMDR_CHECK(x.dim() >= 1, "linear", what, ": x ", x.str(), " must have rank >= 1");
  CMDR_CHECK(x.size(-1) == weight.size(1), "linear", what, ": x ", x.str(), " vs weight ",
             weight.str(), ": in_features differ");
}
// x [..., K] as a matrix [M, K] (a copy only when the leading dims cannot be merged).
Tensor as_rows(const Tensor& x) {
  const int64_t K = x.size(-1);
  if (x.dim() == 2) return x;
  const int64_t M = K == 0 ? 0 : x.numel() / K;
  if (x.numel() == 0) return Tensor::empty({M, K});
  return x.reshape({M, K});
}
}  // namespace

// y [..., N] = x [..., K] · weight[N, K]ᵀ + bias[N]
Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_linear("", x, weight);
  const int64_t N = weight.size(0), K = weight.size(1);
  if (bias.defined())
    CMDR_CHECK(bias.dim() == 1 && bias.size(0) == N, "linear: bias ", bias.str(), " vs weight ",
               weight.str(), ": bias must be [out_features]");
  Tensor x2 = as_rows(x);
  const int64_t M = x2.size(0);
  ProfileScope ps(op_name(Op::Linear), 2.0 * M * N * K, 4.0 * (M * K + N * K + M * N));
  Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  // The weight through the weight cache (issue 8): prepared once per weight version.
  Tensor y = detail::gemm_weight_new(detail::mat2(x2), detail::mat2(weight).t(), weight,
                                     bc.defined() ? bc.data() : nullptr);
  Shape out = x.shape();
  out.back() = N;
  return y.view(out);
}

// y [..., N] = gelu(x [..., K] · weight[N, K]ᵀ + bias[N])  (exact erf GELU, inference only:
// no backward; the GELU is a oneDNN post-op, so y is written once, issue 8)
Tensor linear_gelu_forward(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_linear("_gelu", x, weight);
  const int64_t N = weight.size(0), K = weight.size(1);
  if (bias.defined())
    CMDR_CHECK(bias.dim() == 1 && bias.size(0) == N, "linear_gelu: bias ", bias.str(),
               " vs weight ", weight.str(), ": bias must be [out_features]");
  Tensor x2 = as_rows(x);
  const int64_t M = x2.size(0);
  ProfileScope ps(op_name(Op::LinearGelu), 2.0 * M * N * K, 4.0 * (M * K + N * K + M * N));
  Tensor bc = bias.defined() ? bias.contiguous() : Tensor();
  Tensor y = detail::gemm_weight_new(detail::mat2(x2), detail::mat2(weight).t(), weight,
                                     bc.defined() ? bc.data() : nullptr, /*gelu=*/true);
  Shape out = x.shape();
  out.back() = N;
  return y.view(out);
}

// dx [..., K] = dy·W; dW [N, K] = dyᵀ·x; db [N] = Σ_rows dy  (all on oneDNN matmul)
LinearGrads linear_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, bool need_dx,
                            bool need_dweight, bool need_dbias) {
  check_linear(" backward", x, weight);
  const int64_t N = weight.size(0), K = weight.size(1);
  Shape ys = x.shape();
  ys.back() = N;
  CMDR_CHECK(dy.defined() && dy.shape() == ys, "linear backward: dy ",
             dy.defined() ? dy.str() : std::string("undefined"), " vs expected ", shape_str(ys),
             " (x ", x.str(), ", weight ", weight.str(), ")");
  Tensor x2 = as_rows(x), dy2 = as_rows(dy);
  const int64_t M = x2.size(0);
  ProfileScope ps(op_name(Op::Linear),
                  2.0 * M * N * K * (int(need_dx) + int(need_dweight)) + (need_dbias ? M * N : 0),
                  4.0 * (M * K + N * K + M * N));
  LinearGrads g;
  if (need_dx) g.dx = detail::gemm_new(detail::mat2(dy2), detail::mat2(weight)).view(x.shape());
  if (need_dweight) g.dweight = detail::gemm_new(detail::mat2(dy2).t(), detail::mat2(x2));
  if (need_dbias) {
    // ones[1, M] · dy [M, N]: a fixed-order reduction (deterministic), on the GEMM path.
    Tensor ones = Tensor::ones({1, M});
    // Always float32 (exact): a plain sum of dy, not a product with weights.
    g.dbias = detail::gemm_new(detail::mat2(ones), detail::mat2(dy2), nullptr, true).view({N});
  }
  return g;
}

// ---- matmul / bmm ---------------------------------------------------------------------------
namespace {
void check_mm(const char* op, const Tensor& a, const Tensor& b, bool ta, bool tb, int64_t rank) {
  CMDR_CHECK(a.defined() && b.defined(), op, ": a and b must be defined");
  CMDR_CHECK(a.dim() == rank && b.dim() == rank, op, ": a ", a.str(), " and b ", b.str(),
             " must have rank ", rank);
  if (rank == 3)
    CMDR_CHECK(a.size(0) == b.size(0), op, ": a ", a.str(), " vs b ", b.str(),
               ": batch sizes differ");
  const int64_t ka = ta ? a.size(-2) : a.size(-1);
  const int64_t kb = tb ? b.size(-1) : b.size(-2);
  CMDR_CHECK(ka == kb, op, ": a ", a.str(), (ta ? "ᵀ" : ""), " vs b ", b.str(), (tb ? "ᵀ" : ""),
             ": inner dimensions differ (", ka, " vs ", kb, ")");
}
Mat op_view(const Tensor& t, bool trans, bool batched) {
  Mat m = batched ? detail::mat3(t) : detail::mat2(t);
  return trans ? m.t() : m;
}

Tensor mm_forward(Op op, const Tensor& a, const Tensor& b, bool ta, bool tb, bool batched) {
  check_mm(op_name(op), a, b, ta, tb, batched ? 3 : 2);
  Mat A = op_view(a, ta, batched), B = op_view(b, tb, batched);
  ProfileScope ps(op_name(op), 2.0 * A.batch() * A.rows * A.cols * B.cols,
                  4.0 * (a.numel() + b.numel() + A.batch() * A.rows * B.cols));
  return detail::gemm_new(A, B);
}

MatmulGrads mm_backward(Op op, const Tensor& dy, const Tensor& a, const Tensor& b, bool ta, bool tb,
                        bool need_da, bool need_db, bool batched) {
  check_mm(op_name(op), a, b, ta, tb, batched ? 3 : 2);
  Mat A = op_view(a, ta, batched), B = op_view(b, tb, batched);  // op(a) [M,K], op(b) [K,N]
  Shape ys = batched ? Shape{A.batch(), A.rows, B.cols} : Shape{A.rows, B.cols};
  CMDR_CHECK(dy.defined() && dy.shape() == ys, op_name(op), " backward: dy ",
             dy.defined() ? dy.str() : std::string("undefined"), " vs expected ", shape_str(ys),
             " (a ", a.str(), ", b ", b.str(), ")");
  ProfileScope ps(op_name(op),
                  2.0 * A.batch() * A.rows * A.cols * B.cols * (int(need_da) + int(need_db)),
                  4.0 * (a.numel() + b.numel() + dy.numel()));
  Mat D = batched ? detail::mat3(dy) : detail::mat2(dy);
  MatmulGrads g;
  // d op(a) = dy·op(b)ᵀ ; d op(b) = op(a)ᵀ·dy ; a transposed operand gets the transpose.
  if (need_da) g.da = ta ? detail::gemm_new(B, D.t()) : detail::gemm_new(D, B.t());
  if (need_db) g.db = tb ? detail::gemm_new(D.t(), A) : detail::gemm_new(A.t(), D);
  return g;
}
}  // namespace

// matmul: op(a) [M, K] · op(b) [K, N] -> [M, N]
Tensor matmul_forward(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  return mm_forward(Op::Matmul, a, b, trans_a, trans_b, false);
}
MatmulGrads matmul_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool trans_a,
                            bool trans_b, bool need_da, bool need_db) {
  return mm_backward(Op::Matmul, dy, a, b, trans_a, trans_b, need_da, need_db, false);
}
// bmm: op(a) [B, M, K] · op(b) [B, K, N] -> [B, M, N]
Tensor bmm_forward(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  return mm_forward(Op::BatchedMatmul, a, b, trans_a, trans_b, true);
}
MatmulGrads bmm_backward(const Tensor& dy, const Tensor& a, const Tensor& b, bool trans_a,
                         bool trans_b, bool need_da, bool need_db) {
  return mm_backward(Op::BatchedMatmul, dy, a, b, trans_a, trans_b, need_da, need_db, true);
}

}  // namespace cmdr::ops
