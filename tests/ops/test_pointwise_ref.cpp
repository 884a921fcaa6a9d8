// (c) reference kernels (cmdr::ops::ref) vs optimised kernels on odd shapes (1, 7, 129...),
// including non-contiguous inputs; (e) determinism: the optimised kernels give bit-identical
// results on repeated runs and for 1 vs 2 threads (all of them promise this: every reduction
// is done by one thread in a fixed order, chunking does not depend on the thread count);
// bad input errors name the op, the argument and the shapes.
// Tolerance ref vs opt: rtol 1e-5, atol 1e-6 (different summation order / double vs float
// accumulators, Eigen's vectorised erf/exp/tanh vs libm); exact (0, 0) where both compute
// PyTorch's float operations in PyTorch's order: relu, max, binary ops, nearest, bilinear
// forward, avg_pool2d, adaptive_avg_pool2d, index_select, dropout.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/threads.hpp"
#include "ops/ops.hpp"
#include "ops/reference.hpp"
#include "tests/ops/pointwise_util.hpp"

using namespace cmdr;
using test_pw::allclose;
using test_pw::bit_equal;
using test_pw::cat;
using test_pw::randn;
using test_pw::randu;
namespace O = cmdr::ops;
namespace R = cmdr::ops::ref;

namespace {
constexpr double kR = 1e-5, kA = 1e-6;
const int64_t kOdd[] = {1, 7, 129};
}  // namespace

TEST_CASE("pointwise ref vs opt: norms on odd shapes") {
  for (int64_t n : kOdd) {
    const Tensor x = randn({3, n, 5}, 1 + n, 2.0f, 0.3f);
    const Tensor w = randu({n}, 2, 0.5f, 1.5f), b = randn({n}, 3);
    Tensor rm1 = randn({n}, 4), rv1 = randu({n}, 5, 0.5f, 1.5f);
    Tensor rm2 = rm1.clone(), rv2 = rv1.clone();
    O::BatchNormSaved so, sr;
    allclose(O::batch_norm_forward(x, w, b, rm1, rv1, true, 0.1f, 1e-5f, &so),
             R::batch_norm_forward(x, w, b, rm2, rv2, true, 0.1f, 1e-5f, &sr), kR, kA,
             cat("bn y C=", n));
    allclose(rm1, rm2, kR, kA, "bn running_mean");
    allclose(rv1, rv2, kR, kA, "bn running_var");
    const Tensor dy = randn(x.shape(), 6);
    const O::BatchNormGrads go = O::batch_norm_backward(dy, x, w, so);
    const O::BatchNormGrads gr = R::batch_norm_backward(dy, x, w, sr);
    allclose(go.dx, gr.dx, kR, 1e-5, "bn dx");
    allclose(go.dweight, gr.dweight, kR, kA, "bn dweight");
    allclose(go.dbias, gr.dbias, kR, kA, "bn dbias");
    allclose(O::batch_norm_forward(x, w, b, rm1, rv1, false, 0.1f, 1e-5f),
             R::batch_norm_forward(x, w, b, rm1, rv1, false, 0.1f, 1e-5f), kR, kA, "bn eval");
    // layer norm over D = n, rows 7; non-contiguous input (transposed view)
    const Tensor xl = randn({n, 7}, 7, 1.5f).transpose(0, 1);
    const Tensor wl = randu({n}, 8, 0.5f, 1.5f), bl = randn({n}, 9);
    O::LayerNormSaved lo, lr;
    allclose(O::layer_norm_forward(xl, wl, bl, 1e-6f, &lo),
             R::layer_norm_forward(xl, wl, bl, 1e-6f, &lr), kR, kA, cat("ln y D=", n));
    const Tensor dyl = randn({7, n}, 10);
    const O::LayerNormGrads lgo = O::layer_norm_backward(dyl, xl, wl, lo);
    const O::LayerNormGrads lgr = R::layer_norm_backward(dyl, xl, wl, lr);
    allclose(lgo.dx, lgr.dx, kR, 1e-5, "ln dx");
    allclose(lgo.dweight, lgr.dweight, kR, kA, "ln dweight");
    allclose(lgo.dbias, lgr.dbias, kR, kA, "ln dbias");
    // undefined weight / bias
    allclose(O::layer_norm_forward(xl, Tensor(), Tensor(), 1e-5f),
             R::layer_norm_forward(xl, Tensor(), Tensor(), 1e-5f), kR, kA, "ln no affine");
  }
}

TEST_CASE("pointwise ref vs opt: elementwise, softmax, dropout on odd shapes") {
  using Un = Tensor (*)(const Tensor&);
  using Bw = Tensor (*)(const Tensor&, const Tensor&);
  struct U {
    const char* name;
    Un of, rf;
    Bw ob, rb;
    bool takes_y, positive;
  };
  const U us[] = {
      {"gelu", O::gelu_forward, R::gelu_forward, O::gelu_backward, R::gelu_backward, false, false},
      {"relu", O::relu_forward, R::relu_forward, O::relu_backward, R::relu_backward, false, false},
      {"sigmoid", O::sigmoid_forward, R::sigmoid_forward, O::sigmoid_backward, R::sigmoid_backward,
       true, false},
      {"tanh", O::tanh_forward, R::tanh_forward, O::tanh_backward, R::tanh_backward, true, false},
      {"exp", O::exp_forward, R::exp_forward, O::exp_backward, R::exp_backward, true, false},
      {"sqrt", O::sqrt_forward, R::sqrt_forward, O::sqrt_backward, R::sqrt_backward, true, true},
      {"softmax", O::softmax_forward, R::softmax_forward, O::softmax_backward, R::softmax_backward,
       true, false}};
  for (int64_t n : kOdd)
    for (const U& u : us) {
      // 2 x (n x 129) -> also crosses the 16384-element parallel chunks for n = 129
      const Tensor x =
          u.positive ? randu({2, n, 129}, 11, 0.01f, 5.0f) : randn({2, n, 129}, 12, 3.0f);
      const Tensor yo = u.of(x), yr = u.rf(x);
      allclose(yo, yr, kR, kA, cat(u.name, " y n=", n));
      const Tensor dy = randn(x.shape(), 13);
      // Same saved tensor for both backward kernels (1 − y² etc. amplify y's last bit).
      allclose(u.ob(dy, u.takes_y ? yr : x), u.rb(dy, u.takes_y ? yr : x), kR, kA,
               cat(u.name, " dx n=", n));
      // non-contiguous input
      const Tensor xt = x.transpose(1, 2);
      allclose(u.of(xt), u.rf(xt), kR, kA, cat(u.name, " transposed n=", n));
    }
  for (int64_t n : kOdd) {
    const Tensor x = randn({n, 33}, 14);
    Rng r1(7), r2(7);
    ops::DropoutMask m1;
    Tensor m2;
    const Tensor y1 = O::dropout_forward(x, 0.25f, true, r1, &m1);
    const Tensor y2 = R::dropout_forward(x, 0.25f, true, r2, &m2);
    CHECK(bit_equal(O::dropout_mask_values(m1, x.shape()), m2));
    allclose(y1, y2, 0, 0, "dropout y");
    const Tensor dy = randn(x.shape(), 15);
    // backward: the regenerated mask, and the explicit-mask path, vs the reference
    allclose(O::dropout_backward(dy, m1), R::dropout_backward(dy, m2, 0.25f), 0, 0, "dropout dx");
    allclose(O::dropout_backward(dy, m2, 0.25f), R::dropout_backward(dy, m2, 0.25f), 0, 0,
             "dropout dx (explicit mask)");
    // a transposed (non-contiguous) input: the mask follows row-major order of the view
    const Tensor xt = x.transpose(0, 1);
    Rng r3(8), r4(8);
    allclose(O::dropout_forward(xt, 0.25f, true, r3),
             R::dropout_forward(xt, 0.25f, true, r4, nullptr), 0, 0, "dropout y transposed");
  }
}

TEST_CASE("pointwise ref vs opt: broadcasting binary ops and reduce_to_shape") {
  const std::pair<Shape, Shape> shapes[] = {
      {{7, 1, 129}, {5, 1}},     {{1, 7}, {129, 1}}, {{129}, {3, 1, 129}}, {{7, 5, 3}, {}},
      {{2, 7, 4, 5}, {7, 1, 1}}, {{1}, {1}},         {{300, 129}, {129}}};
  for (const auto& [sa, sb] : shapes) {
    const std::string tag = shape_str(sa) + " & " + shape_str(sb);
    const Tensor a = randn(sa, 20), b = randn(sb, 21), bd = randu(sb, 22, 0.5f, 2.0f);
    allclose(O::add_forward(a, b), R::add_forward(a, b), 0, 0, "add " + tag);
    allclose(O::sub_forward(a, b), R::sub_forward(a, b), 0, 0, "sub " + tag);
    allclose(O::mul_forward(a, b), R::mul_forward(a, b), 0, 0, "mul " + tag);
    allclose(O::div_forward(a, bd), R::div_forward(a, bd), 0, 0, "div " + tag);
    const Tensor y = O::add_forward(a, b);
    const Tensor dy = randn(y.shape(), 23);
    O::BinaryGrads go = O::mul_backward(dy, a, b), gr = R::mul_backward(dy, a, b);
    allclose(go.da, gr.da, kR, kA, "mul da " + tag);
    allclose(go.db, gr.db, kR, kA, "mul db " + tag);
    go = O::div_backward(dy, a, bd);
    gr = R::div_backward(dy, a, bd);
    allclose(go.da, gr.da, kR, kA, "div da " + tag);
    allclose(go.db, gr.db, kR, kA, "div db " + tag);
    go = O::sub_backward(dy, sa, sb);
    gr = R::sub_backward(dy, sa, sb);
    allclose(go.da, gr.da, kR, kA, "sub da " + tag);
    allclose(go.db, gr.db, kR, kA, "sub db " + tag);
  }
  // non-contiguous operands
  const Tensor a = randn({129, 7}, 24).transpose(0, 1), b = randn({7, 1}, 25);
  allclose(O::add_forward(a, b), R::add_forward(a, b), 0, 0, "add transposed");
  allclose(O::scale(a, 0.3f), R::scale(a, 0.3f), 0, 0, "scale");
  const Tensor t = randn({3, 7, 1, 129}, 26);
  for (const Shape& s : {Shape{7, 1, 129}, Shape{1, 1}, Shape{}, Shape{3, 1, 1, 1}, Shape{129}})
    allclose(O::reduce_to_shape(t, s), R::reduce_to_shape(t, s), kR, kA,
             "reduce_to_shape " + shape_str(s));
}

TEST_CASE("pointwise ref vs opt: reductions, l2_normalize, cosine, index ops") {
  for (int64_t n : kOdd) {
    const Tensor x = randn({5, n, 7}, 30 + n);
    for (int64_t axis : {0, 1, 2, -1})
      for (bool keep : {false, true}) {
        const std::string tag = cat(" n=", n, " axis ", axis, keep ? " keepdim" : "");
        allclose(O::sum_forward(x, axis, keep), R::sum_forward(x, axis, keep), kR, kA, "sum" + tag);
        allclose(O::mean_forward(x, axis, keep), R::mean_forward(x, axis, keep), kR, kA,
                 "mean" + tag);
        std::vector<int64_t> ao, ar;
        const Tensor mo = O::max_forward(x, axis, keep, &ao);
        allclose(mo, R::max_forward(x, axis, keep, &ar), 0, 0, "max" + tag);
        CHECK(ao == ar);
        const Tensor dy = randn(mo.shape(), 31);
        allclose(O::sum_backward(dy, x.shape(), axis, keep),
                 R::sum_backward(dy, x.shape(), axis, keep), 0, 0, "sum dx" + tag);
        allclose(O::mean_backward(dy, x.shape(), axis, keep),
                 R::mean_backward(dy, x.shape(), axis, keep), kR, kA, "mean dx" + tag);
        allclose(O::max_backward(dy, x.shape(), axis, keep, ao),
                 R::max_backward(dy, x.shape(), axis, keep, ar), 0, 0, "max dx" + tag);
        allclose(O::l2_normalize_forward(x, axis, 1e-6f), R::l2_normalize_forward(x, axis, 1e-6f),
                 kR, kA, "l2" + tag);
        const Tensor dx = randn(x.shape(), 32);
        allclose(O::l2_normalize_backward(dx, x, axis, 1e-6f),
                 R::l2_normalize_backward(dx, x, axis, 1e-6f), kR, kA, "l2 dx" + tag);
        const Tensor b = randn(x.shape(), 33);
        const Tensor co = O::cosine_similarity_forward(x, b, axis, 1e-6f);
        allclose(co, R::cosine_similarity_forward(x, b, axis, 1e-6f), kR, kA, "cos" + tag);
        const Tensor dc = randn(co.shape(), 34);
        const O::BinaryGrads go = O::cosine_similarity_backward(dc, x, b, axis, 1e-6f);
        const O::BinaryGrads gr = R::cosine_similarity_backward(dc, x, b, axis, 1e-6f);
        allclose(go.da, gr.da, kR, kA, "cos da" + tag);
        allclose(go.db, gr.db, kR, kA, "cos db" + tag);
      }
    const Tensor xi = randn({n, 3, 129}, 35);
    std::vector<int64_t> idx;
    Rng r(36);
    for (int64_t i = 0; i < 2 * n + 1; ++i) idx.push_back(r.below(n));
    const Tensor so = O::index_select_forward(xi, idx);
    allclose(so, R::index_select_forward(xi, idx), 0, 0, cat("index_select n=", n));
    const Tensor src = randn(so.shape(), 37);
    allclose(O::index_add_forward(src, idx, n), R::index_add_forward(src, idx, n), kR, kA,
             cat("index_add n=", n));
  }
}

TEST_CASE("pointwise ref vs opt: pooling and resampling on odd sizes") {
  const std::pair<int64_t, int64_t> sizes[] = {{1, 1}, {7, 5}, {129, 7}, {13, 31}};
  for (const auto& [H, W] : sizes) {
    const Tensor x = randn({2, 3, H, W}, 40 + H);
    for (auto [k, pad] : {std::pair<int64_t, int64_t>{1, 0}, {3, 1}, {5, 2}, {7, 3}, {2, 1}}) {
      if (H + 2 * pad < k || W + 2 * pad < k) continue;
      const std::string tag = cat(" ", H, "x", W, " k", k, " pad", pad);
      const Tensor yo = O::avg_pool2d_forward(x, k, pad);
      allclose(yo, R::avg_pool2d_forward(x, k, pad), 0, 0, "avg_pool2d" + tag);
      const Tensor dy = randn(yo.shape(), 41);
      allclose(O::avg_pool2d_backward(dy, x.shape(), k, pad),
               R::avg_pool2d_backward(dy, x.shape(), k, pad), 0, 0, "avg_pool2d dx" + tag);
    }
    for (auto [oh, ow] : {std::pair<int64_t, int64_t>{1, 1}, {7, 3}, {H + 2, W + 2}, {129, 9}}) {
      const std::string tag = cat(" ", H, "x", W, " -> ", oh, "x", ow);
      const Tensor dy = randn({2, 3, oh, ow}, 42);
      allclose(O::adaptive_avg_pool2d_forward(x, oh, ow), R::adaptive_avg_pool2d_forward(x, oh, ow),
               0, 0, "adaptive" + tag);
      allclose(O::adaptive_avg_pool2d_backward(dy, x.shape()),
               R::adaptive_avg_pool2d_backward(dy, x.shape()), 0, 0, "adaptive dx" + tag);
      allclose(O::upsample_bilinear2d_forward(x, oh, ow), R::upsample_bilinear2d_forward(x, oh, ow),
               0, 0, "bilinear (same float ops)" + tag);
      allclose(O::upsample_bilinear2d_backward(dy, x.shape()),
               R::upsample_bilinear2d_backward(dy, x.shape()), kR, kA, "bilinear dx" + tag);
      allclose(O::resize_nearest2d_forward(x, oh, ow), R::resize_nearest2d_forward(x, oh, ow), 0, 0,
               "nearest" + tag);
      allclose(O::resize_nearest2d_backward(dy, x.shape()),
               R::resize_nearest2d_backward(dy, x.shape()), kR, kA, "nearest dx" + tag);
    }
  }
}

TEST_CASE("pointwise determinism: repeated runs and 1 vs 2 threads are bit-identical") {
  const int saved_threads = num_threads();
  // Big enough that every kernel actually splits work across threads.
  const Tensor x = randn({64, 3, 40, 48}, 50, 2.0f, 0.5f);
  const Tensor rows = x.reshape({-1, 960});
  const Tensor w = randu({3}, 51, 0.5f, 1.5f), b = randn({3}, 52);
  const Tensor wl = randu({960}, 53, 0.5f, 1.5f), bl = randn({960}, 54);
  const Tensor dy = randn(x.shape(), 55);
  const Tensor other = randn(rows.shape(), 56);
  auto run = [&]() {
    std::vector<Tensor> out;
    O::BatchNormSaved bs;
    out.push_back(O::batch_norm_forward(x, w, b, Tensor(), Tensor(), true, 0.1f, 1e-5f, &bs));
    const O::BatchNormGrads bg = O::batch_norm_backward(dy, x, w, bs);
    out.insert(out.end(), {bg.dx, bg.dweight, bg.dbias});
    O::LayerNormSaved ls;
    out.push_back(O::layer_norm_forward(rows, wl, bl, 1e-6f, &ls));
    const O::LayerNormGrads lg = O::layer_norm_backward(other, rows, wl, ls);
    out.insert(out.end(), {lg.dx, lg.dweight, lg.dbias});
    out.push_back(O::gelu_forward(x));
    out.push_back(O::gelu_backward(dy, x));
    out.push_back(O::softmax_forward(rows));
    out.push_back(O::sum_forward(rows, 0));
    out.push_back(O::mean_forward(x, 2, true));
    out.push_back(O::reduce_to_shape(dy, {3, 1, 48}));
    out.push_back(O::add_backward(dy, x.shape(), {3, 1, 1}).db);
    out.push_back(O::l2_normalize_forward(rows, -1, 1e-12f));
    out.push_back(O::l2_normalize_backward(other, rows, 0, 1e-12f));
    out.push_back(O::cosine_similarity_forward(rows, other, -1, 1e-6f));
    out.push_back(O::cosine_similarity_backward(O::sum_forward(rows, 1), rows, other, 1, 1e-6f).da);
    out.push_back(O::avg_pool2d_forward(x, 3, 1));
    out.push_back(O::avg_pool2d_backward(dy, x.shape(), 1, 0));
    out.push_back(O::adaptive_avg_pool2d_forward(x, 41, 49));
    out.push_back(O::upsample_bilinear2d_forward(x, 56, 70));
    out.push_back(O::upsample_bilinear2d_backward(dy, {64, 3, 23, 31}));
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < rows.size(0); ++i) idx.push_back((i * 7) % 50);
    out.push_back(O::index_add_forward(rows, idx, 50));
    return out;
  };
  set_num_threads(2);
  const std::vector<Tensor> a = run(), a2 = run();
  set_num_threads(1);
  const std::vector<Tensor> c = run();
  set_num_threads(saved_threads);
  REQUIRE(a.size() == c.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK_MESSAGE(bit_equal(a[i], a2[i]), "output ", i, " differs between two runs");
    CHECK_MESSAGE(bit_equal(a[i], c[i]), "output ", i, " differs between 1 and 2 threads");
  }
}

TEST_CASE("pointwise bad input: errors name the op, the argument and the shapes") {
  const Tensor x = Tensor::zeros({2, 3, 4});
  CHECK_THROWS_WITH_AS(O::add_forward(x, Tensor::zeros({5})),
                       doctest::Contains("add: a [2, 3, 4] and b [5] cannot be broadcast"), Error);
  CHECK_THROWS_WITH_AS(O::layer_norm_forward(x, Tensor::ones({3}), Tensor(), 1e-5f),
                       doctest::Contains("layer_norm: weight [3] must be [4]"), Error);
  CHECK_THROWS_WITH_AS(
      O::batch_norm_forward(x, Tensor::ones({4}), Tensor(), Tensor(), Tensor(), true, 0.1f, 1e-5f),
      doctest::Contains("batch_norm: weight [4] must be [3]"), Error);
  CHECK_THROWS_WITH_AS(
      O::batch_norm_forward(x, Tensor(), Tensor(), Tensor(), Tensor(), false, 0.1f, 1e-5f),
      doctest::Contains("running_mean"), Error);
  CHECK_THROWS_WITH_AS(O::sum_forward(x, 3),
                       doctest::Contains("sum: axis 3 out of range for shape [2, 3, 4]"), Error);
  CHECK_THROWS_WITH_AS(O::gelu_backward(Tensor::zeros({2, 3}), x),
                       doctest::Contains("gelu_backward: dy [2, 3] vs x [2, 3, 4]"), Error);
  CHECK_THROWS_WITH_AS(O::cosine_similarity_forward(x, Tensor::zeros({2, 3, 5}), -1, 1e-6f),
                       doctest::Contains("cosine_similarity: a [2, 3, 4] vs b [2, 3, 5]"), Error);
  CHECK_THROWS_WITH_AS(O::avg_pool2d_forward(x, 3, 1),
                       doctest::Contains("avg_pool2d: x must be [B, C, H, W], got [2, 3, 4]"),
                       Error);
  CHECK_THROWS_WITH_AS(O::avg_pool2d_forward(Tensor::zeros({1, 1, 4, 4}), 3, 2),
                       doctest::Contains("avg_pool2d: kernel 3 and padding 2 invalid"), Error);
  CHECK_THROWS_WITH_AS(O::upsample_bilinear2d_forward(Tensor::zeros({1, 1, 4, 4}), 0, 3),
                       doctest::Contains("upsample_bilinear2d: output size 0x3"), Error);
  CHECK_THROWS_WITH_AS(O::index_select_forward(x, {0, 2}),
                       doctest::Contains("index_select: idx[1] = 2 out of range [0, 2)"), Error);
  CHECK_THROWS_WITH_AS(O::index_add_forward(x, {0}, 3),
                       doctest::Contains("index_add: src [2, 3, 4] must have one row per index"),
                       Error);
  CHECK_THROWS_WITH_AS(
      O::reduce_to_shape(x, {3, 3}),
      doctest::Contains("reduce_to_shape: [3, 3] does not broadcast to t [2, 3, 4]"), Error);
  CHECK_THROWS_WITH_AS(O::mul_backward(Tensor::zeros({2, 3, 5}), x, Tensor::zeros({4})),
                       doctest::Contains("mul_backward: dy [2, 3, 5]"), Error);
  Rng rng(1);
  CHECK_THROWS_WITH_AS(O::dropout_forward(x, 1.5f, true, rng, nullptr),
                       doctest::Contains("dropout: p must be in [0, 1], got 1.5"), Error);
  CHECK_THROWS_WITH_AS(O::max_backward(Tensor::zeros({2, 3}), x.shape(), 2, false, {0}),
                       doctest::Contains("max_backward: argmax has 1 entries for dy [2, 3]"),
                       Error);
}

TEST_CASE("pointwise dropout: inverted scaling, keep rate, eval identity") {
  const Tensor x = Tensor::ones({200, 100});
  Rng rng(3);
  ops::DropoutMask dm;
  const Tensor y = O::dropout_forward(x, 0.1f, true, rng, &dm);
  const Tensor mask = O::dropout_mask_values(dm, x.shape());
  CHECK(dm.n == x.numel());
  double kept = 0.0;
  for (int64_t i = 0; i < y.numel(); ++i) {
    const float m = mask.data()[i];
    CHECK((m == 0.0f || m == 1.0f));
    CHECK(y.data()[i] == m * (1.0f / 0.9f));
    kept += m;
  }
  // 20000 Bernoulli(0.9) draws: std of the mean 0.0021; 5 sigma.
  CHECK(std::fabs(kept / 20000.0 - 0.9) < 0.011);
  Rng r2(3);
  CHECK(bit_equal(O::dropout_forward(x, 0.1f, true, r2, nullptr), y));  // same seed, same mask
  // one key per call: the next call draws a different mask
  CHECK(!bit_equal(O::dropout_forward(x, 0.1f, true, r2, nullptr), y));
  // backward = regenerated mask · dy / (1 − p)
  const Tensor dy = randn(x.shape(), 16);
  const Tensor dx = O::dropout_backward(dy, dm);
  bool bw = true;
  for (int64_t i = 0; i < dx.numel(); ++i)
    bw &= dx.data()[i] == dy.data()[i] * mask.data()[i] * (1.0f / 0.9f);
  CHECK(bw);
  CHECK_THROWS_WITH_AS(O::dropout_backward(Tensor::zeros({3}), dm),
                       doctest::Contains("dropout_backward: dy [3] has 3 elements"), Error);
  // eval: x itself, no copy, no mask
  ops::DropoutMask m2;
  const Tensor ye = O::dropout_forward(x, 0.1f, false, rng, &m2);
  CHECK(bit_equal(ye, x));
  CHECK(ye.shares_storage(x));
  CHECK(!m2.defined());
  CHECK(bit_equal(O::dropout_backward(x, m2), x));
  ops::DropoutMask m3;
  CHECK(bit_equal(O::dropout_forward(x, 1.0f, true, rng, &m3), Tensor::zeros(x.shape())));
}

TEST_CASE("pointwise dropout: masks independent of the thread count, keep rate in bound") {
  const Tensor x = randn({1000, 333}, 21);  // 333000 elements: several parallel chunks
  Tensor y[2], dx[2];
  const Tensor dy = randn(x.shape(), 22);
  const int saved_threads = num_threads();
  for (int t : {1, 2}) {
    set_num_threads(t);
    Rng rng(5);
    ops::DropoutMask m;
    y[t - 1] = O::dropout_forward(x, 0.3f, true, rng, &m);
    dx[t - 1] = O::dropout_backward(dy, m);
  }
  set_num_threads(saved_threads);
  CHECK(bit_equal(y[0], y[1]));
  CHECK(bit_equal(dx[0], dx[1]));
  // and both equal the serial reference kernel (same key, element by element)
  Rng rr(5);
  Tensor rm;
  CHECK(bit_equal(y[0], R::dropout_forward(x, 0.3f, true, rr, &rm)));
  CHECK(bit_equal(dx[0], R::dropout_backward(dy, rm, 0.3f)));
  // keep fraction: 333000 Bernoulli(0.7) draws, std of the mean 0.00079; 5 sigma.
  Rng rng(6);
  ops::DropoutMask m;
  O::dropout_forward(x, 0.3f, true, rng, &m);
  double kept = 0.0;
  for (float v : O::dropout_mask_values(m, x.shape()).to_vector()) kept += v;
  CHECK(std::fabs(kept / 333000.0 - 0.7) < 0.004);
}
