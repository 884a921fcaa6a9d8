// Precision bf16 (engine/precision.hpp): linear / matmul / bmm / conv / deconv with bfloat16
// operands, float32 accumulation and float32 results, forward and backward.
//
// Tolerances, and why they are what they are:
//  (1) Against the float64 reference on the bf16-ROUNDED operands: only float32
//      accumulation differs, so the fp32 tolerance of test_dense_ref.cpp applies
//      (|got − ref| <= 1e-4·|ref| + 1e-5·max(1, max|ref|)). This pins the semantics: the
//      operands are rounded to nearest even, nothing else (a bf16 accumulator would miss by
//      ~2^-9 relative and fail).
//  (2) Against the float64 reference on the float32 operands: each product a·b picks up a
//      relative error of at most (1 + 2^-9)² − 1 < 2^-8 + 2^-18 from rounding both factors
//      (bf16 unit roundoff 2^-9), so |got − ref| <= (2^-8 + 2^-18 + K·2^-23)·Σ_k |a_k·b_k|
//      (the last term bounds float32 accumulation). Rigorous, so it cannot fail spuriously;
//      for random signs the typical error is ~2^-9·sqrt(K)·rms(a·b), which we also check
//      is what we see (not zero: bf16 really is in effect).
#include <cmath>
#include <string>

#include "engine/precision.hpp"
#include "engine/threads.hpp"
#include "ops/dnnl_common.hpp"
#include "ops/gemm.hpp"
#include "ops/ops.hpp"
#include "ops/reference_dense.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;

namespace {
Tensor rnd(const Shape& s, Rng& rng) {
  return test::random(s, rng);
}
// Copy with every element rounded to bfloat16 (and back to float32).
Tensor round_bf16(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  for (float& f : v)
    f = std::bit_cast<float>(static_cast<uint32_t>(ops::dnnl_util::f32_to_bf16(f)) << 16);
  return Tensor::from_vector(t.shape(), v);
}
Tensor absval(const Tensor& t) {
  std::vector<float> v = t.to_vector();
  for (float& f : v) f = std::abs(f);
  return Tensor::from_vector(t.shape(), v);
}
void check_fp32_tol(const Tensor& got, const Tensor& ref, const char* what) {
  double m = 1;
  for (float v : ref.to_vector()) m = std::max(m, static_cast<double>(std::abs(v)));
  const auto r = test::compare(got, ref, 1e-4, 1e-5 * m);
  CHECK_MESSAGE(r.ok, what, ": ", r.msg);
}
// (2): |got − ref| <= (2^-8 + 2^-18 + K·2^-23)·absref, absref = Σ|a||b| per element.
// Also returns the largest error relative to absref (to check bf16 is in effect).
double check_bf16_bound(const Tensor& got, const Tensor& ref, const Tensor& absref, int64_t K,
                        const char* what) {
  const double tol = std::ldexp(1.0, -8) + std::ldexp(1.0, -18) + K * std::ldexp(1.0, -23);
  auto g = got.to_vector(), r = ref.to_vector(), a = absref.to_vector();
  REQUIRE(g.size() == r.size());
  double worst = 0, seen = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double e = std::abs(double(g[i]) - double(r[i]));
    worst = std::max(worst, e - tol * a[i] - 1e-30);
    if (a[i] > 0) seen = std::max(seen, e / a[i]);
  }
  CHECK_MESSAGE(worst <= 0, what, ": bf16 error exceeds the bound by ", worst);
  return seen;
}
}  // namespace

TEST_CASE("precision: setting, names, refusal without AVX512_BF16") {
  CHECK(precision() == Precision::FP32);  // the default is the parity reference
  CHECK(std::string(precision_name(Precision::BF16)) == "bf16");
  CHECK(parse_precision("bf16", "--precision") == Precision::BF16);
  CHECK_THROWS_WITH_AS(parse_precision("fp16", "--precision"),
                       doctest::Contains("--precision: precision 'fp16' is not one of fp32, bf16"),
                       Error);
  CHECK_THROWS_WITH_AS(check_precision_supported(Precision::BF16, false),
                       doctest::Contains("needs a CPU with AVX512_BF16"), Error);
  CHECK_NOTHROW(check_precision_supported(Precision::FP32, false));
  if (!cpu_has_avx512_bf16()) {
    CHECK_THROWS_AS(set_precision(Precision::BF16), Error);
    CHECK(precision() == Precision::FP32);
  }
}

TEST_CASE("precision bf16: linear and bmm forward/backward vs references") {
  if (!cpu_has_avx512_bf16()) return;  // refused on this CPU (previous test)
  Rng rng(11);
  const int64_t M = 37, K = 300, N = 19;
  Tensor x = rnd({M, K}, rng), w = rnd({N, K}, rng), b = rnd({N}, rng), dy = rnd({M, N}, rng);
  Tensor y, yb;
  ops::LinearGrads g, gb;
  {
    y = ops::linear_forward(x, w, b);
    g = ops::linear_backward(dy, x, w);
  }
  {
    PrecisionScope ps(Precision::BF16);
    yb = ops::linear_forward(x, w, b);
    gb = ops::linear_backward(dy, x, w);
    CHECK(ops::detail::gemm_impl(ops::detail::mat2(x), ops::detail::mat2(w).t()).find("bf16") !=
          std::string::npos);
  }
  // fp32 unchanged: after a bf16 phase the fp32 results are bit for bit the same
  CHECK(test::bit_identical(ops::linear_forward(x, w, b), y));
  CHECK(test::bit_identical(ops::linear_backward(dy, x, w).dweight, g.dweight));
  // (1) exactly "round the operands, float32 accumulation"
  Tensor xr = round_bf16(x), wr = round_bf16(w), dyr = round_bf16(dy);
  check_fp32_tol(yb, ops::ref::linear_forward(xr, wr, b), "y vs ref(bf16 operands)");
  auto rr = ops::ref::linear_backward(dyr, xr, wr);
  check_fp32_tol(gb.dx, rr.dx, "dx vs ref(bf16 operands)");
  check_fp32_tol(gb.dweight, rr.dweight, "dW vs ref(bf16 operands)");
  // db is a plain float32 sum of dy (no bf16 rounding)
  check_fp32_tol(gb.dbias, ops::ref::linear_backward(dy, x, w).dbias, "db fp32");
  // (2) bound against fp32 operands
  auto r = ops::ref::linear_backward(dy, x, w);
  auto ra = ops::ref::linear_backward(absval(dy), absval(x), absval(w));
  const double e1 =
      check_bf16_bound(yb, ops::ref::linear_forward(x, w, b),
                       ops::ref::linear_forward(absval(x), absval(w), Tensor()), K, "y");
  check_bf16_bound(gb.dx, r.dx, ra.dx, N, "dx");
  check_bf16_bound(gb.dweight, r.dweight, ra.dweight, M, "dW");
  CHECK(e1 > std::ldexp(1.0, -16));  // bf16 really is in effect
  CHECK(e1 < std::ldexp(1.0, -8));

  // bmm with transposed operands (the attention products)
  Tensor qa = rnd({3, 40, 24}, rng), kb = rnd({3, 33, 24}, rng), bdy = rnd({3, 40, 33}, rng);
  Tensor by;
  ops::MatmulGrads bg;
  {
    PrecisionScope ps(Precision::BF16);
    by = ops::bmm_forward(qa, kb, false, true);
    bg = ops::bmm_backward(bdy, qa, kb, false, true);
  }
  Tensor qr = round_bf16(qa), kr = round_bf16(kb), bdr = round_bf16(bdy);
  check_fp32_tol(by, ops::ref::bmm_forward(qr, kr, false, true), "bmm y");
  auto br = ops::ref::bmm_backward(bdr, qr, kr, false, true, true, true);
  check_fp32_tol(bg.da, br.da, "bmm da");
  check_fp32_tol(bg.db, br.db, "bmm db");
}

TEST_CASE("precision bf16: conv / conv_transpose forward/backward vs references") {
  if (!cpu_has_avx512_bf16()) return;
  Rng rng(12);
  // conv_transpose2d [1, 24, 9, 10] with [24, 16, 3, 3], s1 p1 (the decoder's op)
  Tensor x = rnd({2, 24, 9, 10}, rng), w = rnd({24, 16, 3, 3}, rng), b = rnd({16}, rng);
  Tensor dy = rnd({2, 16, 9, 10}, rng);
  Tensor y;
  ops::ConvGrads g;
  {
    PrecisionScope ps(Precision::BF16);
    y = ops::conv_transpose2d_forward(x, w, b, 1, 1);
    g = ops::conv_transpose2d_backward(dy, x, w, 1, 1);
  }
  Tensor xr = round_bf16(x), wr = round_bf16(w), dyr = round_bf16(dy);
  check_fp32_tol(y, ops::ref::conv_transpose2d_forward(xr, wr, b, 1, 1), "convT2d y");
  auto r = ops::ref::conv_transpose2d_backward(dyr, xr, wr, 1, 1);
  check_fp32_tol(g.dx, r.dx, "convT2d dx");
  check_fp32_tol(g.dweight, r.dweight, "convT2d dW");
  check_fp32_tol(g.dbias, ops::ref::conv_transpose2d_backward(dy, x, w, 1, 1).dbias,
                 "convT2d db fp32");
  auto r32 = ops::ref::conv_transpose2d_backward(dy, x, w, 1, 1);
  auto ra = ops::ref::conv_transpose2d_backward(absval(dy), absval(x), absval(w), 1, 1);
  const double e = check_bf16_bound(
      y, ops::ref::conv_transpose2d_forward(x, w, b, 1, 1),
      ops::ref::conv_transpose2d_forward(absval(x), absval(w), Tensor(), 1, 1), 24 * 9, "y");
  check_bf16_bound(g.dx, r32.dx, ra.dx, 16 * 9, "dx");
  check_bf16_bound(g.dweight, r32.dweight, ra.dweight, 2 * 90, "dW");
  CHECK(e > std::ldexp(1.0, -16));
  // conv1d k1 (Point-MAE) and conv_transpose1d k4 s2 (3D decoder)
  Tensor x1 = rnd({2, 12, 30}, rng), w1 = rnd({20, 12, 1}, rng), dy1 = rnd({2, 20, 30}, rng);
  Tensor t1 = rnd({1, 16, 25}, rng), tw = rnd({16, 8, 4}, rng), tdy = rnd({1, 8, 50}, rng);
  Tensor y1, yt;
  ops::ConvGrads g1, gt;
  {
    PrecisionScope ps(Precision::BF16);
    y1 = ops::conv1d_forward(x1, w1, Tensor(), 1, 0);
    g1 = ops::conv1d_backward(dy1, x1, w1, 1, 0);
    yt = ops::conv_transpose1d_forward(t1, tw, Tensor(), 2, 1);
    gt = ops::conv_transpose1d_backward(tdy, t1, tw, 2, 1);
  }
  check_fp32_tol(y1, ops::ref::conv1d_forward(round_bf16(x1), round_bf16(w1), Tensor(), 1, 0),
                 "conv1d y");
  auto r1 = ops::ref::conv1d_backward(round_bf16(dy1), round_bf16(x1), round_bf16(w1), 1, 0);
  check_fp32_tol(g1.dx, r1.dx, "conv1d dx");
  check_fp32_tol(g1.dweight, r1.dweight, "conv1d dW");
  check_fp32_tol(yt,
                 ops::ref::conv_transpose1d_forward(round_bf16(t1), round_bf16(tw), Tensor(), 2, 1),
                 "convT1d y");
  auto rt =
      ops::ref::conv_transpose1d_backward(round_bf16(tdy), round_bf16(t1), round_bf16(tw), 2, 1);
  check_fp32_tol(gt.dx, rt.dx, "convT1d dx");
  check_fp32_tol(gt.dweight, rt.dweight, "convT1d dW");
}

TEST_CASE("precision bf16: deterministic (two runs bit-identical)") {
  if (!cpu_has_avx512_bf16()) return;
  set_num_threads(2);
  PrecisionScope ps(Precision::BF16);
  Rng rng(13);
  Tensor x = rnd({300, 200}, rng), w = rnd({150, 200}, rng), bias = rnd({150}, rng);
  Tensor dy = rnd({300, 150}, rng);
  Tensor cx = rnd({1, 16, 20, 20}, rng), cw = rnd({16, 8, 3, 3}, rng), cb = rnd({8}, rng);
  Tensor cdy = rnd({1, 8, 20, 20}, rng);
  auto run = [&] {
    auto g = ops::linear_backward(dy, x, w);
    auto c = ops::conv_transpose2d_backward(cdy, cx, cw, 1, 1);
    return std::vector<Tensor>{ops::linear_forward(x, w, bias),
                               g.dx,
                               g.dweight,
                               g.dbias,
                               ops::conv_transpose2d_forward(cx, cw, cb, 1, 1),
                               c.dx,
                               c.dweight,
                               c.dbias};
  };
  auto a = run(), b = run();
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(test::bit_identical(a[i], b[i]));
}
