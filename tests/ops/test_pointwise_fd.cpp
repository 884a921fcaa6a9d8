// Central finite-difference gradient checks for every differentiable non-dense op, driven by
// one table (ggml style). Loss L = Σ y·w (w fixed random); the analytic gradient is the op's
// backward at dy = w. The ops are float32, so L is accumulated in double and the step is
// h = 1e-3 on O(1) inputs: float rounding of L gives ~1e-4 noise in the quotient and the
// truncation error is O(h²). Tolerance |fd − an| <= 2e-3 + 2e-3·|an|; a wrong gradient term
// is off by O(0.1–1). Kinks (relu at 0, max ties, nearest/floor) are avoided by the inputs.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "ops/ops.hpp"
#include "tests/ops/pointwise_util.hpp"

using namespace cmdr;
using namespace cmdr::ops;
using test_pw::randn;
using test_pw::randu;

namespace {
using Tensors = std::vector<Tensor>;
struct FdCase {
  std::string name;
  Tensors inputs;
  std::function<Tensor(const Tensors&)> fwd;
  std::function<Tensors(const Tensor& dy, const Tensors&)> bwd;
};

double loss(const Tensor& y, const Tensor& w) {
  const std::vector<float> a = y.to_vector(), b = w.to_vector();
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

void run_case(const FdCase& c, double& worst) {
  INFO(c.name);
  const Tensor y0 = c.fwd(c.inputs);
  const Tensor w = randn(y0.shape(), 99);
  const Tensors grads = c.bwd(w, c.inputs);
  REQUIRE(grads.size() == c.inputs.size());
  const float h = 1e-3f;
  for (std::size_t k = 0; k < c.inputs.size(); ++k) {
    REQUIRE(grads[k].defined());
    REQUIRE(grads[k].shape() == c.inputs[k].shape());
    const std::vector<float> an = grads[k].to_vector();
    for (int64_t e = 0; e < c.inputs[k].numel(); ++e) {
      Tensors in = c.inputs;
      in[k] = c.inputs[k].clone();
      const float v = in[k].data()[e];
      in[k].data()[e] = v + h;
      const double lp = loss(c.fwd(in), w);
      in[k].data()[e] = v - h;
      const double lm = loss(c.fwd(in), w);
      const double fd = (lp - lm) / (2.0 * static_cast<double>(h));
      const double err = std::fabs(fd - an[e]);
      worst = std::max(worst, err / (1.0 + std::fabs(an[e])));
      CHECK_MESSAGE(err <= 2e-3 + 2e-3 * std::fabs(an[e]), c.name, " input ", k, " element ", e,
                    ": finite difference ", fd, " vs backward ", an[e]);
    }
  }
}

// Values in ±[0.2, 1.2] (away from 0 for relu / sqrt / division).
Tensor away_from_zero(const Shape& s, uint64_t seed) {
  Tensor t = randu(s, seed, 0.2f, 1.2f);
  Rng r(seed + 1);
  for (int64_t i = 0; i < t.numel(); ++i)
    if (r.bernoulli(0.5)) t.data()[i] = -t.data()[i];
  return t;
}
// Distinct values spaced 0.05 apart (no max ties within ±h), shuffled.
Tensor distinct(const Shape& s, uint64_t seed) {
  Tensor t = Tensor::empty(s);
  std::vector<float> v(static_cast<std::size_t>(t.numel()));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = -1.0f + 0.05f * static_cast<float>(i);
  Rng r(seed);
  r.shuffle(v);
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

std::vector<FdCase> table() {
  std::vector<FdCase> T;
  auto un = [&](const std::string& name, Tensor x, Tensor (*f)(const Tensor&),
                Tensor (*b)(const Tensor&, const Tensor&), bool takes_y) {
    T.push_back({name,
                 {x},
                 [f](const Tensors& in) { return f(in[0]); },
                 [f, b, takes_y](const Tensor& dy, const Tensors& in) {
                   return Tensors{b(dy, takes_y ? f(in[0]) : in[0])};
                 }});
  };
  un("gelu", randn({3, 7}, 1, 1.5f), gelu_forward, gelu_backward, false);
  un("relu", away_from_zero({3, 7}, 2), relu_forward, relu_backward, false);
  un("sigmoid", randn({3, 7}, 3, 2.0f), sigmoid_forward, sigmoid_backward, true);
  un("tanh", randn({3, 7}, 4), tanh_forward, tanh_backward, true);
  un("exp", randn({3, 7}, 5, 0.5f), exp_forward, exp_backward, true);
  un("sqrt", randu({3, 7}, 6, 0.3f, 2.0f), sqrt_forward, sqrt_backward, true);
  un("softmax", randn({4, 9}, 7, 1.5f), softmax_forward, softmax_backward, true);
  T.push_back({"dropout p=0.3",
               {randn({5, 6}, 8)},
               [](const Tensors& in) {
                 Rng rng(42);  // same mask on every call
                 return dropout_forward(in[0], 0.3f, true, rng, nullptr);
               },
               [](const Tensor& dy, const Tensors& in) {
                 Rng rng(42);
                 DropoutMask mask;
                 dropout_forward(in[0], 0.3f, true, rng, &mask);
                 return Tensors{dropout_backward(dy, mask)};
               }});
  T.push_back({"scale",
               {randn({2, 5}, 9)},
               [](const Tensors& in) { return scale(in[0], -1.7f); },
               [](const Tensor& dy, const Tensors&) { return Tensors{scale(dy, -1.7f)}; }});
  // broadcasting binary ops
  const std::pair<Shape, Shape> shapes[] = {
      {{3, 1, 4}, {2, 1}}, {{2, 3}, {2, 3}}, {{4}, {2, 3, 4}}};
  for (const auto& [sa, sb] : shapes) {
    const std::string tag = shape_str(sa) + "x" + shape_str(sb);
    const Tensor a = randn(sa, 10), b = randn(sb, 11), bd = away_from_zero(sb, 12);
    T.push_back({"add " + tag,
                 {a, b},
                 [](const Tensors& in) { return add_forward(in[0], in[1]); },
                 [](const Tensor& dy, const Tensors& in) {
                   BinaryGrads g = add_backward(dy, in[0].shape(), in[1].shape());
                   return Tensors{g.da, g.db};
                 }});
    T.push_back({"sub " + tag,
                 {a, b},
                 [](const Tensors& in) { return sub_forward(in[0], in[1]); },
                 [](const Tensor& dy, const Tensors& in) {
                   BinaryGrads g = sub_backward(dy, in[0].shape(), in[1].shape());
                   return Tensors{g.da, g.db};
                 }});
    T.push_back({"mul " + tag,
                 {a, b},
                 [](const Tensors& in) { return mul_forward(in[0], in[1]); },
                 [](const Tensor& dy, const Tensors& in) {
                   BinaryGrads g = mul_backward(dy, in[0], in[1]);
                   return Tensors{g.da, g.db};
                 }});
    T.push_back({"div " + tag,
                 {a, bd},
                 [](const Tensors& in) { return div_forward(in[0], in[1]); },
                 [](const Tensor& dy, const Tensors& in) {
                   BinaryGrads g = div_backward(dy, in[0], in[1]);
                   return Tensors{g.da, g.db};
                 }});
  }
  // normalisation
  T.push_back({"batch_norm 1d",
               {randn({3, 4, 5}, 13), randu({4}, 14, 0.5f, 1.5f), randn({4}, 15)},
               [](const Tensors& in) {
                 return batch_norm_forward(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1f,
                                           1e-5f);
               },
               [](const Tensor& dy, const Tensors& in) {
                 BatchNormSaved s;
                 batch_norm_forward(in[0], in[1], in[2], Tensor(), Tensor(), true, 0.1f, 1e-5f, &s);
                 BatchNormGrads g = batch_norm_backward(dy, in[0], in[1], s);
                 return Tensors{g.dx, g.dweight, g.dbias};
               }});
  T.push_back({"batch_norm 2d",
               {randn({2, 3, 3, 4}, 16)},
               [](const Tensors& in) {
                 return batch_norm_forward(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true,
                                           0.1f, 1e-5f);
               },
               [](const Tensor& dy, const Tensors& in) {
                 BatchNormSaved s;
                 batch_norm_forward(in[0], Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1f,
                                    1e-5f, &s);
                 return Tensors{batch_norm_backward(dy, in[0], Tensor(), s).dx};
               }});
  T.push_back({"layer_norm",
               {randn({4, 9}, 17), randu({9}, 18, 0.5f, 1.5f), randn({9}, 19)},
               [](const Tensors& in) { return layer_norm_forward(in[0], in[1], in[2], 1e-5f); },
               [](const Tensor& dy, const Tensors& in) {
                 LayerNormSaved s;
                 layer_norm_forward(in[0], in[1], in[2], 1e-5f, &s);
                 LayerNormGrads g = layer_norm_backward(dy, in[0], in[1], s);
                 return Tensors{g.dx, g.dweight, g.dbias};
               }});
  // reductions along each axis
  for (int64_t axis : {0, 1, 2})
    for (bool keep : {false, true}) {
      const std::string tag = test_pw::cat(" axis ", axis, keep ? " keepdim" : "");
      T.push_back({"sum" + tag,
                   {randn({2, 3, 4}, 20)},
                   [axis, keep](const Tensors& in) { return sum_forward(in[0], axis, keep); },
                   [axis, keep](const Tensor& dy, const Tensors& in) {
                     return Tensors{sum_backward(dy, in[0].shape(), axis, keep)};
                   }});
      T.push_back({"mean" + tag,
                   {randn({2, 3, 4}, 21)},
                   [axis, keep](const Tensors& in) { return mean_forward(in[0], axis, keep); },
                   [axis, keep](const Tensor& dy, const Tensors& in) {
                     return Tensors{mean_backward(dy, in[0].shape(), axis, keep)};
                   }});
      T.push_back(
          {"max" + tag,
           {distinct({2, 3, 4}, 22)},
           [axis, keep](const Tensors& in) { return max_forward(in[0], axis, keep, nullptr); },
           [axis, keep](const Tensor& dy, const Tensors& in) {
             std::vector<int64_t> am;
             max_forward(in[0], axis, keep, &am);
             return Tensors{max_backward(dy, in[0].shape(), axis, keep, am)};
           }});
    }
  for (int64_t axis : {-1, 1}) {
    T.push_back({test_pw::cat("l2_normalize axis ", axis),
                 {randn({3, 4, 5}, 23)},
                 [axis](const Tensors& in) { return l2_normalize_forward(in[0], axis, 1e-6f); },
                 [axis](const Tensor& dy, const Tensors& in) {
                   return Tensors{l2_normalize_backward(dy, in[0], axis, 1e-6f)};
                 }});
    T.push_back(
        {test_pw::cat("cosine_similarity axis ", axis),
         {randn({3, 4, 5}, 24), randn({3, 4, 5}, 25)},
         [axis](const Tensors& in) { return cosine_similarity_forward(in[0], in[1], axis, 1e-6f); },
         [axis](const Tensor& dy, const Tensors& in) {
           BinaryGrads g = cosine_similarity_backward(dy, in[0], in[1], axis, 1e-6f);
           return Tensors{g.da, g.db};
         }});
  }
  // the eps clamp active (‖x‖ < eps): y = x/eps
  T.push_back({"l2_normalize clamp",
               {scale(randn({2, 3}, 26), 1e-3f)},
               [](const Tensors& in) { return l2_normalize_forward(in[0], -1, 0.5f); },
               [](const Tensor& dy, const Tensors& in) {
                 return Tensors{l2_normalize_backward(dy, in[0], -1, 0.5f)};
               }});
  // pooling / resampling
  for (auto [k, pad] : {std::pair<int64_t, int64_t>{3, 0}, {3, 1}, {4, 2}})
    T.push_back({test_pw::cat("avg_pool2d k", k, " pad", pad),
                 {randn({1, 2, 5, 6}, 27)},
                 [k, pad](const Tensors& in) { return avg_pool2d_forward(in[0], k, pad); },
                 [k, pad](const Tensor& dy, const Tensors& in) {
                   return Tensors{avg_pool2d_backward(dy, in[0].shape(), k, pad)};
                 }});
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{3, 4}, {7, 9}})
    T.push_back({test_pw::cat("adaptive_avg_pool2d ", oh, "x", ow),
                 {randn({1, 2, 5, 6}, 28)},
                 [oh, ow](const Tensors& in) { return adaptive_avg_pool2d_forward(in[0], oh, ow); },
                 [](const Tensor& dy, const Tensors& in) {
                   return Tensors{adaptive_avg_pool2d_backward(dy, in[0].shape())};
                 }});
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{9, 11}, {3, 2}}) {
    T.push_back({test_pw::cat("upsample_bilinear2d ", oh, "x", ow),
                 {randn({1, 2, 4, 5}, 29)},
                 [oh, ow](const Tensors& in) { return upsample_bilinear2d_forward(in[0], oh, ow); },
                 [](const Tensor& dy, const Tensors& in) {
                   return Tensors{upsample_bilinear2d_backward(dy, in[0].shape())};
                 }});
    T.push_back({test_pw::cat("resize_nearest2d ", oh, "x", ow),
                 {randn({1, 2, 4, 5}, 30)},
                 [oh, ow](const Tensors& in) { return resize_nearest2d_forward(in[0], oh, ow); },
                 [](const Tensor& dy, const Tensors& in) {
                   return Tensors{resize_nearest2d_backward(dy, in[0].shape())};
                 }});
  }
  const std::vector<int64_t> idx{3, 0, 3, 1};
  T.push_back({"index_select",
               {randn({5, 3}, 31)},
               [idx](const Tensors& in) { return index_select_forward(in[0], idx); },
               [idx](const Tensor& dy, const Tensors&) {
                 return Tensors{index_select_backward(dy, idx, 5)};
               }});
  T.push_back(
      {"index_add",
       {randn({4, 3}, 32)},
       [idx](const Tensors& in) { return index_add_forward(in[0], idx, 5); },
       [idx](const Tensor& dy, const Tensors&) { return Tensors{index_add_backward(dy, idx)}; }});
  return T;
}
}  // namespace

TEST_CASE("pointwise finite differences: every differentiable op") {
  double worst = 0.0;
  for (const FdCase& c : table()) run_case(c, worst);
  MESSAGE("worst |fd - backward| / (1 + |backward|) = ", worst);
}
