// (b) Central finite-difference gradient checks for every dense op, driven by one table.
// loss(inputs) = Σ f(inputs) ⊙ w for a fixed random w, computed in double from the float32
// forward output; the analytic gradient is the op's backward with dy = w.
// Step h = 1e-2. matmul/linear/conv are linear in each input, so central differences have
// no truncation error and only float32 output rounding remains (≈ 1e-6·√n / h); attention's
// truncation error is O(h²) ≈ 1e-5. Tolerance: |fd − analytic| <= 2e-3·max|analytic|
// (+ 2e-3·|analytic| elementwise) — two orders above that noise, far below any real bug
// (a wrong transpose, a missing scale or a dropped term is an O(1) relative error).
#include <functional>
#include <string>
#include <vector>

#include "engine/threads.hpp"
#include "ops/ops.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
using Inputs = std::vector<Tensor>;

namespace {
struct GradCase {
  std::string name;
  std::vector<Shape> shapes;                                   // inputs
  std::function<Tensor(const Inputs&)> fwd;                    // forward
  std::function<Inputs(const Tensor& dy, const Inputs&)> bwd;  // grads, one per input
};

Inputs conv_grads(const ops::ConvGrads& g) {
  return {g.dx, g.dweight, g.dbias};
}

std::vector<GradCase> cases() {
  std::vector<GradCase> c;
  c.push_back({"linear",
               {{2, 3, 5}, {4, 5}, {4}},
               [](const Inputs& in) { return ops::linear_forward(in[0], in[1], in[2]); },
               [](const Tensor& dy, const Inputs& in) {
                 auto g = ops::linear_backward(dy, in[0], in[1]);
                 return Inputs{g.dx, g.dweight, g.dbias};
               }});
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const Shape a = ta ? Shape{4, 3} : Shape{3, 4}, b = tb ? Shape{5, 4} : Shape{4, 5};
      c.push_back({"matmul" + std::to_string(ta) + std::to_string(tb),
                   {a, b},
                   [=](const Inputs& in) { return ops::matmul_forward(in[0], in[1], ta, tb); },
                   [=](const Tensor& dy, const Inputs& in) {
                     auto g = ops::matmul_backward(dy, in[0], in[1], ta, tb);
                     return Inputs{g.da, g.db};
                   }});
      const Shape a3 = {2, a[0], a[1]}, b3 = {2, b[0], b[1]};
      c.push_back({"bmm" + std::to_string(ta) + std::to_string(tb),
                   {a3, b3},
                   [=](const Inputs& in) { return ops::bmm_forward(in[0], in[1], ta, tb); },
                   [=](const Tensor& dy, const Inputs& in) {
                     auto g = ops::bmm_backward(dy, in[0], in[1], ta, tb);
                     return Inputs{g.da, g.db};
                   }});
    }
  c.push_back({"conv1d s2 p1",
               {{2, 3, 7}, {4, 3, 3}, {4}},
               [](const Inputs& in) { return ops::conv1d_forward(in[0], in[1], in[2], 2, 1); },
               [](const Tensor& dy, const Inputs& in) {
                 return conv_grads(ops::conv1d_backward(dy, in[0], in[1], 2, 1));
               }});
  c.push_back({"conv2d s2 p1",
               {{1, 2, 5, 6}, {3, 2, 3, 3}, {3}},
               [](const Inputs& in) { return ops::conv2d_forward(in[0], in[1], in[2], 2, 1); },
               [](const Tensor& dy, const Inputs& in) {
                 return conv_grads(ops::conv2d_backward(dy, in[0], in[1], 2, 1));
               }});
  c.push_back(
      {"conv_transpose1d k4 s2 p1",
       {{2, 3, 5}, {3, 2, 4}, {2}},
       [](const Inputs& in) { return ops::conv_transpose1d_forward(in[0], in[1], in[2], 2, 1); },
       [](const Tensor& dy, const Inputs& in) {
         return conv_grads(ops::conv_transpose1d_backward(dy, in[0], in[1], 2, 1));
       }});
  c.push_back(
      {"conv_transpose2d k3 s1 p1",
       {{1, 3, 4, 5}, {3, 2, 3, 3}, {2}},
       [](const Inputs& in) { return ops::conv_transpose2d_forward(in[0], in[1], in[2], 1, 1); },
       [](const Tensor& dy, const Inputs& in) {
         return conv_grads(ops::conv_transpose2d_backward(dy, in[0], in[1], 1, 1));
       }});
  c.push_back(
      {"conv_transpose2d k3 s2 p0",
       {{1, 2, 3, 3}, {2, 3, 3, 3}, {3}},
       [](const Inputs& in) { return ops::conv_transpose2d_forward(in[0], in[1], in[2], 2, 0); },
       [](const Tensor& dy, const Inputs& in) {
         return conv_grads(ops::conv_transpose2d_backward(dy, in[0], in[1], 2, 0));
       }});
  // attention: windowed with a short last window (T = 5, window 2 -> 2, 2, 1) and full;
  // with dropout the mask is redrawn from the same seed on every call (fixed mask).
  struct A {
    const char* name;
    int64_t window;
    float p;
  };
  for (A a : {A{"attention full", 0, 0.0f}, A{"attention window 2", 2, 0.0f},
              A{"attention window 3 + dropout", 3, 0.3f}}) {
    const Shape s = {1, 2, 5, 3};
    const float scale = 0.7f;
    c.push_back(
        {a.name,
         {s, s, s},
         [=](const Inputs& in) {
           Rng rng(99);
           return ops::attention_forward(in[0], in[1], in[2], scale, a.window, a.p, true, &rng);
         },
         [=](const Tensor& dy, const Inputs& in) {
           Rng rng(99);
           ops::AttentionSaved sv;
           ops::attention_forward(in[0], in[1], in[2], scale, a.window, a.p, true, &rng, &sv);
           auto g = ops::attention_backward(dy, in[0], in[1], in[2], scale, a.window, a.p, sv);
           return Inputs{g.dq, g.dk, g.dv};
         }});
  }
  return c;
}
}  // namespace

TEST_CASE("dense ops: finite-difference gradient checks") {
  // Thousands of tiny calls: one thread avoids OpenMP barrier costs on a loaded machine.
  struct ThreadGuard {
    int prev = num_threads();
    ThreadGuard() { set_num_threads(1); }
    ~ThreadGuard() { set_num_threads(prev); }
  } guard;
  Rng rng(2024);
  for (const GradCase& gc : cases()) {
    CAPTURE(gc.name);
    Inputs in;
    for (const Shape& s : gc.shapes) in.push_back(test::random(s, rng));
    const Tensor y = gc.fwd(in);
    const Tensor w = test::random(y.shape(), rng);
    const Inputs analytic = gc.bwd(w, in);
    REQUIRE(analytic.size() == in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
      CAPTURE(i);
      auto loss = [&](const Tensor& xi) {
        Inputs p = in;
        p[i] = xi;
        return test::dot(gc.fwd(p), w);
      };
      const Tensor fd = test::fd_grad(loss, in[i], 1e-2);
      double m = 0;
      for (float v : analytic[i].to_vector()) m = std::max(m, static_cast<double>(std::abs(v)));
      CHECK(m > 1e-3);  // the check must be able to fail: gradients are not trivially zero
      CHECK_CLOSE(analytic[i], fd, 2e-3, 2e-3 * m);
    }
  }
}
