// Non-dense ops vs PyTorch (fixtures from tools/golden/ops_pointwise.py).
// Tolerances: forward rtol 1e-4 (SPEC 9) with a small atol for values near zero; backward
// rtol 1e-4, atol 1e-5 unless stated. Bilinear forward, avg_pool2d and adaptive_avg_pool2d
// (forward and backward), nearest resize, index_select and max are bit-identical to torch.
#include <doctest/doctest.h>

#include <string>

#include "ops/ops.hpp"
#include "tests/ops/pointwise_util.hpp"

using namespace cmdr;
using namespace cmdr::ops;
using cmdr::test_pw::allclose;
using cmdr::test_pw::fixture;

namespace {
constexpr double kFwdR = 1e-4, kFwdA = 1e-6;  // forward
constexpr double kBwdR = 1e-4, kBwdA = 1e-5;  // backward
}  // namespace

TEST_CASE("pointwise vs torch: batch_norm training, running stats, eval, backward") {
  st::File f(fixture("pointwise_norm.safetensors"));
  for (std::string c : {"bn1d", "bn2d", "bn2c"}) {
    const Tensor x = f.get(c + ".x"), w = f.get(c + ".w"), b = f.get(c + ".b");
    Tensor rm = f.get(c + ".rm0"), rv = f.get(c + ".rv0");
    BatchNormSaved saved;
    const Tensor y = batch_norm_forward(x, w, b, rm, rv, true, 0.1f, 1e-5f, &saved);
    allclose(y, f.get(c + ".y"), kFwdR, kFwdA, c + " y");
    allclose(rm, f.get(c + ".rm1"), 1e-6, 1e-7, c + " running_mean");
    allclose(rv, f.get(c + ".rv1"), 1e-6, 1e-7, c + " running_var (unbiased)");
    allclose(saved.mean, f.get(c + ".mean"), 1e-6, 1e-7, c + " saved mean");
    allclose(saved.invstd, f.get(c + ".invstd"), 1e-6, 0, c + " saved invstd");
    const BatchNormGrads g = batch_norm_backward(f.get(c + ".dy"), x, w, saved);
    allclose(g.dx, f.get(c + ".dx"), kBwdR, kBwdA, c + " dx");
    allclose(g.dweight, f.get(c + ".dw"), kBwdR, kBwdA, c + " dweight");
    allclose(g.dbias, f.get(c + ".db"), kBwdR, kBwdA, c + " dbias");
    const Tensor ye =
        batch_norm_forward(x, w, b, f.get(c + ".rm0"), f.get(c + ".rv0"), false, 0.1f, 1e-5f);
    allclose(ye, f.get(c + ".yeval"), kFwdR, kFwdA, c + " eval y");
  }
  // Variance ~1e-6 on a mean of 50: float64 statistics (reference computed in float64).
  const Tensor y = batch_norm_forward(f.get("bntiny.x"), Tensor(), Tensor(), Tensor(), Tensor(),
                                      true, 0.1f, 1e-5f);
  allclose(y, f.get("bntiny.y"), kFwdR, 1e-5, "bntiny y");
}

TEST_CASE("pointwise vs torch: layer_norm forward and backward (eps 1e-6, 1e-5)") {
  st::File f(fixture("pointwise_norm.safetensors"));
  for (auto [c, eps] : {std::pair<std::string, float>{"ln6", 1e-6f}, {"ln5", 1e-5f}}) {
    const Tensor x = f.get(c + ".x"), w = f.get(c + ".w"), b = f.get(c + ".b");
    LayerNormSaved saved;
    allclose(layer_norm_forward(x, w, b, eps, &saved), f.get(c + ".y"), kFwdR, kFwdA, c + " y");
    const LayerNormGrads g = layer_norm_backward(f.get(c + ".dy"), x, w, saved);
    allclose(g.dx, f.get(c + ".dx"), kBwdR, kBwdA, c + " dx");
    allclose(g.dweight, f.get(c + ".dw"), kBwdR, kBwdA, c + " dweight");
    allclose(g.dbias, f.get(c + ".db"), kBwdR, kBwdA, c + " dbias");
  }
}

TEST_CASE("pointwise vs torch: activations, exp, sqrt, softmax") {
  st::File f(fixture("pointwise_elementwise.safetensors"));
  struct Act {
    const char* name;
    Tensor (*fwd)(const Tensor&);
    Tensor (*bwd)(const Tensor&, const Tensor&);
    bool bwd_takes_y;
  };
  const Act acts[] = {{"gelu", gelu_forward, gelu_backward, false},
                      {"relu", relu_forward, relu_backward, false},
                      {"sigmoid", sigmoid_forward, sigmoid_backward, true},
                      {"tanh", tanh_forward, tanh_backward, true},
                      {"exp", exp_forward, exp_backward, true},
                      {"sqrt", sqrt_forward, sqrt_backward, true},
                      {"softmax", softmax_forward, softmax_backward, true},
                      {"softmax3", softmax_forward, softmax_backward, true}};
  for (const Act& a : acts) {
    const std::string c = a.name;
    const Tensor x = f.get(c + ".x");
    const Tensor y = a.fwd(x);
    allclose(y, f.get(c + ".y"), kFwdR, kFwdA, c + " y");
    const Tensor dx = a.bwd(f.get(c + ".dy"), a.bwd_takes_y ? y : x);
    allclose(dx, f.get(c + ".dx"), kBwdR, kBwdA, c + " dx");
  }
}

TEST_CASE("pointwise vs torch: broadcasting add/sub/mul/div and reduce_to_shape") {
  st::File f(fixture("pointwise_elementwise.safetensors"));
  for (std::string p : {"p0", "p1", "p2", "p3", "p4"}) {
    const Tensor a = f.get(p + ".a"), b = f.get(p + ".b"), bd = f.get(p + ".bdiv");
    {
      const std::string c = p + ".add";
      allclose(add_forward(a, b), f.get(c + ".y"), kFwdR, kFwdA, c);
      const BinaryGrads g = add_backward(f.get(c + ".dy"), a.shape(), b.shape());
      allclose(g.da, f.get(c + ".da"), kBwdR, kBwdA, c + " da");
      allclose(g.db, f.get(c + ".db"), kBwdR, kBwdA, c + " db");
    }
    {
      const std::string c = p + ".sub";
      allclose(sub_forward(a, b), f.get(c + ".y"), kFwdR, kFwdA, c);
      const BinaryGrads g = sub_backward(f.get(c + ".dy"), a.shape(), b.shape());
      allclose(g.da, f.get(c + ".da"), kBwdR, kBwdA, c + " da");
      allclose(g.db, f.get(c + ".db"), kBwdR, kBwdA, c + " db");
    }
    {
      const std::string c = p + ".mul";
      allclose(mul_forward(a, b), f.get(c + ".y"), kFwdR, kFwdA, c);
      const BinaryGrads g = mul_backward(f.get(c + ".dy"), a, b);
      allclose(g.da, f.get(c + ".da"), kBwdR, kBwdA, c + " da");
      allclose(g.db, f.get(c + ".db"), kBwdR, kBwdA, c + " db");
    }
    {
      const std::string c = p + ".div";
      allclose(div_forward(a, bd), f.get(c + ".y"), kFwdR, kFwdA, c);
      const BinaryGrads g = div_backward(f.get(c + ".dy"), a, bd);
      allclose(g.da, f.get(c + ".da"), kBwdR, kBwdA, c + " da");
      allclose(g.db, f.get(c + ".db"), kBwdR, kBwdA, c + " db");
    }
  }
}

TEST_CASE("pointwise vs torch: sum/mean/max along every axis, keepdim") {
  st::File f(fixture("pointwise_reduce.safetensors"));
  const Tensor x = f.get("red.x");
  for (int64_t axis = 0; axis < 3; ++axis)
    for (bool keep : {false, true}) {
      const std::string sfx = test_pw::cat(".", axis, ".", int(keep));
      {
        const std::string c = "red.sum" + sfx;
        allclose(sum_forward(x, axis, keep), f.get(c + ".y"), kFwdR, kFwdA, c);
        allclose(sum_backward(f.get(c + ".dy"), x.shape(), axis, keep), f.get(c + ".dx"), kBwdR,
                 kBwdA, c + " dx");
      }
      {
        const std::string c = "red.mean" + sfx;
        allclose(mean_forward(x, axis, keep), f.get(c + ".y"), kFwdR, kFwdA, c);
        allclose(mean_backward(f.get(c + ".dy"), x.shape(), axis, keep), f.get(c + ".dx"), kBwdR,
                 kBwdA, c + " dx");
      }
      {
        const std::string c = "red.max" + sfx;
        std::vector<int64_t> am;
        allclose(max_forward(x, axis, keep, &am), f.get(c + ".y"), 0, 0, c);
        CHECK(am == f.get_i64(c + ".idx"));
        allclose(max_backward(f.get(c + ".dy"), x.shape(), axis, keep, am), f.get(c + ".dx"), 0, 0,
                 c + " dx");
      }
    }
  // negative axis is the last one
  allclose(sum_forward(x, -1, false), f.get("red.sum.2.0.y"), kFwdR, kFwdA, "sum axis -1");
}

TEST_CASE("pointwise vs torch: l2_normalize and cosine similarity (SPEC 6), incl. eps clamp") {
  st::File f(fixture("pointwise_reduce.safetensors"));
  for (auto [c, axis, eps] :
       {std::tuple<std::string, int64_t, float>{"l2a", -1, 1e-6f}, {"l2b", 1, 1e-12f}}) {
    const Tensor x = f.get(c + ".x");
    allclose(l2_normalize_forward(x, axis, eps), f.get(c + ".y"), kFwdR, kFwdA, c + " y");
    allclose(l2_normalize_backward(f.get(c + ".dy"), x, axis, eps), f.get(c + ".dx"), kBwdR, kBwdA,
             c + " dx");
  }
  for (auto [c, axis] : {std::pair<std::string, int64_t>{"cosa", -1}, {"cosb", 1}}) {
    const Tensor a = f.get(c + ".a"), b = f.get(c + ".b");
    allclose(cosine_similarity_forward(a, b, axis, 1e-6f), f.get(c + ".y"), kFwdR, kFwdA, c + " y");
    const BinaryGrads g = cosine_similarity_backward(f.get(c + ".dy"), a, b, axis, 1e-6f);
    allclose(g.da, f.get(c + ".da"), kBwdR, kBwdA, c + " da");
    allclose(g.db, f.get(c + ".db"), kBwdR, kBwdA, c + " db");
  }
}

TEST_CASE("pointwise vs torch: index_select / index_add") {
  st::File f(fixture("pointwise_reduce.safetensors"));
  const std::vector<int64_t> idx = f.get_i64("isel.idx");
  const Tensor x = f.get("isel.x");
  allclose(index_select_forward(x, idx), f.get("isel.y"), 0, 0, "index_select");
  allclose(index_select_backward(f.get("isel.dy"), idx, 7), f.get("isel.dx"), kBwdR, kBwdA,
           "index_select dx");
  allclose(index_add_forward(f.get("iadd.src"), idx, 7), f.get("iadd.y"), kFwdR, kFwdA,
           "index_add");
  allclose(index_add_backward(f.get("iadd.dy"), idx), f.get("iadd.dsrc"), 0, 0, "index_add dsrc");
}

TEST_CASE("pointwise vs torch: avg_pool2d and adaptive_avg_pool2d") {
  st::File f(fixture("pointwise_resample.safetensors"));
  const Tensor x = f.get("pool.x");
  for (auto [k, pad] : {std::pair<int64_t, int64_t>{3, 0}, {3, 1}, {5, 2}, {7, 3}, {4, 1}}) {
    const std::string c = test_pw::cat("avg.", k, ".", pad);
    // PyTorch's float summation order and divisions reproduced: bit-identical.
    allclose(avg_pool2d_forward(x, k, pad), f.get(c + ".y"), 0, 0, c);
    allclose(avg_pool2d_backward(f.get(c + ".dy"), x.shape(), k, pad), f.get(c + ".dx"), 0, 0,
             c + " dx");
  }
  const Tensor xa = f.get("ada.x");
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{5, 7}, {13, 17}, {9, 4}}) {
    const std::string c = test_pw::cat("ada.", oh, "x", ow);
    allclose(adaptive_avg_pool2d_forward(xa, oh, ow), f.get(c + ".y"), 0, 0, c);
    allclose(adaptive_avg_pool2d_backward(f.get(c + ".dy"), xa.shape()), f.get(c + ".dx"), 0, 0,
             c + " dx");
  }
  // SPEC 4.3: 222 -> 224 (non-divisible bins), pattern input and dy.
  const Tensor xs = test_pw::pattern({1, 1, 222, 222});
  allclose(adaptive_avg_pool2d_forward(xs, 224, 224), f.get("ada222.y"), 0, 0, "ada222");
  allclose(
      adaptive_avg_pool2d_backward(test_pw::pattern({1, 1, 224, 224}, 104729, 997), xs.shape()),
      f.get("ada222.dx"), 0, 0, "ada222 dx");
}

TEST_CASE("pointwise vs torch: bilinear upsample (align_corners=false) incl. 28->56, 28->224") {
  st::File f(fixture("pointwise_resample.safetensors"));
  const Tensor xb = f.get("bil.x");
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{9, 4}, {11, 15}, {5, 7}, {3, 2}}) {
    const std::string c = test_pw::cat("bil.", oh, "x", ow);
    // Same weights and arithmetic as PyTorch's CPU kernel: bit-identical.
    allclose(upsample_bilinear2d_forward(xb, oh, ow), f.get(c + ".y"), 0, 0, c);
    allclose(upsample_bilinear2d_backward(f.get(c + ".dy"), xb.shape()), f.get(c + ".dx"), kBwdR,
             kBwdA, c + " dx");
  }
  const Tensor x28 = f.get("bil28.x");
  allclose(upsample_bilinear2d_forward(x28, 56, 56), f.get("bil28.y"), 0, 0, "bil28");
  allclose(upsample_bilinear2d_backward(f.get("bil28.dy"), x28.shape()), f.get("bil28.dx"), kBwdR,
           kBwdA, "bil28 dx");
  for (auto [c, oh, ow] :
       {std::tuple<std::string, int64_t, int64_t>{"bilc1", 9, 4}, {"bilhw1", 4, 5}}) {
    const Tensor xc = f.get(c + ".x");
    allclose(upsample_bilinear2d_forward(xc, oh, ow), f.get(c + ".y"), 0, 0, c);
    allclose(upsample_bilinear2d_backward(f.get(c + ".dy"), xc.shape()), f.get(c + ".dx"), kBwdR,
             kBwdA, c + " dx");
  }
  const Tensor xs = test_pw::pattern({1, 1, 28, 28});
  allclose(upsample_bilinear2d_forward(xs, 224, 224), f.get("bil224.y"), 0, 0, "bil224");
  allclose(
      upsample_bilinear2d_backward(test_pw::pattern({1, 1, 224, 224}, 104729, 997), xs.shape()),
      f.get("bil224.dx"), kBwdR, 1e-4, "bil224 dx (sums of 64 terms)");
}

TEST_CASE("pointwise vs torch: nearest resize (SPEC 3.2 float32 index) incl. 800->224, 400->224") {
  st::File f(fixture("pointwise_resample.safetensors"));
  const Tensor xn = f.get("near.x");
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{5, 13}, {14, 10}, {3, 2}}) {
    const std::string c = test_pw::cat("near.", oh, "x", ow);
    allclose(resize_nearest2d_forward(xn, oh, ow), f.get(c + ".y"), 0, 0, c);
    allclose(resize_nearest2d_backward(f.get(c + ".dy"), xn.shape()), f.get(c + ".dx"), kBwdR,
             kBwdA, c + " dx");
  }
  Tensor xs = Tensor::empty({1, 1, 800, 400});
  for (int64_t h = 0; h < 800; ++h)
    for (int64_t w = 0; w < 400; ++w) xs.data()[h * 400 + w] = static_cast<float>(h * 1000 + w);
  allclose(resize_nearest2d_forward(xs, 224, 224), f.get("near800.y"), 0, 0, "near 800x400");
  Tensor xs2 = Tensor::empty({1, 1, 600, 7});
  for (int64_t h = 0; h < 600; ++h)
    for (int64_t w = 0; w < 7; ++w) xs2.data()[h * 7 + w] = static_cast<float>(h * 1000 + w);
  allclose(resize_nearest2d_forward(xs2, 224, 3), f.get("near600.y"), 0, 0, "near 600x7");
}
