// Tape semantics: accumulation, reuse of a Var, NoGrad, retain_graph / retain_grad, errors,
// views with gradients, deep graphs.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <thread>

#include "autograd/autograd.hpp"
#include "engine/error.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
using namespace cmdr::ag;

namespace {

Var total(const Var& x) {
  return sum(reshape(x, {x.value().numel()}), 0);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("tape: a Var used twice accumulates both contributions") {
  Rng rng(11);
  Tensor xv = test::random({3, 5}, rng);
  Var x(xv, true);
  backward(total(mul(x, x)));  // d/dx Σ x² = 2x: both inputs of mul are x
  const std::vector<float> g = x.grad().to_vector(), v = xv.to_vector();
  for (std::size_t i = 0; i < g.size(); ++i)
    CHECK(g[i] == doctest::Approx(2.0f * v[i]).epsilon(1e-6));

  // Diamond: y = 3x + exp(x) through two branches joined by add.
  Var z(xv, true);
  backward(total(add(scale(z, 3.0f), exp(z))));
  const std::vector<float> gz = z.grad().to_vector();
  for (std::size_t i = 0; i < gz.size(); ++i)
    CHECK(gz[i] == doctest::Approx(3.0 + std::exp(static_cast<double>(v[i]))).epsilon(1e-6));
}

TEST_CASE("tape: gradients accumulate across backward calls until zero_grad") {
  Var x(Tensor::from_vector({3}, {1.0f, -2.0f, 0.5f}), true);
  backward(total(scale(x, 2.0f)));
  backward(total(scale(x, 5.0f)));  // a second, separate graph
  CHECK(x.grad().to_vector() == std::vector<float>{7.0f, 7.0f, 7.0f});
  x.zero_grad();
  CHECK(!x.grad().defined());
  backward(total(scale(x, 5.0f)));
  CHECK(x.grad().to_vector() == std::vector<float>{5.0f, 5.0f, 5.0f});
}

TEST_CASE("tape: inputs that do not require grad get none; results of constants are constants") {
  Var x(Tensor::from_vector({2}, {1.0f, 2.0f}), true);
  Var c(Tensor::from_vector({2}, {3.0f, 4.0f}), false);
  Var y = mul(x, c);
  CHECK(y.requires_grad());
  CHECK(!y.node()->is_leaf);
  CHECK(!mul(c, c).requires_grad());
  backward(total(y));
  CHECK(x.grad().to_vector() == std::vector<float>{3.0f, 4.0f});
  CHECK(!c.grad().defined());
}

TEST_CASE("tape: NoGrad records nothing, is scoped, nested and thread-local") {
  Var x(Tensor::from_vector({2}, {1.0f, 2.0f}), true);
  CHECK(grad_enabled());
  Var y;
  {
    NoGrad ng;
    CHECK(!grad_enabled());
    {
      NoGrad inner;
      CHECK(!grad_enabled());
    }
    CHECK(!grad_enabled());  // the inner scope restores the outer state, not "on"
    bool other_thread = false;
    std::thread t([&] { other_thread = grad_enabled(); });
    t.join();
    CHECK(other_thread);
    y = total(mul(x, x));
  }
  CHECK(grad_enabled());
  CHECK(!y.requires_grad());
  CHECK(y.node()->inputs.empty());
  const std::string msg = error_of([&] { backward(y); });
  CHECK_MESSAGE(contains(msg, "does not require grad"), msg);
  CHECK(!x.grad().defined());
}

TEST_CASE("tape: second backward without retain_graph throws naming the op") {
  Var x(Tensor::from_vector({3}, {1.0f, 2.0f, 3.0f}), true);
  Var loss = sum(mul(x, x), 0);
  backward(loss);
  const std::vector<float> first = x.grad().to_vector();
  const std::string msg = error_of([&] { backward(loss); });
  CHECK_MESSAGE(contains(msg, "second time"), msg);
  CHECK_MESSAGE(contains(msg, ops::op_name(ops::Op::Sum)), msg);
  CHECK(x.grad().to_vector() == first);  // a refused backward changes nothing
  CHECK(loss.node()->released);
  CHECK(!loss.node()->backward_fn);  // saved tensors are gone

  Var y(Tensor::from_vector({3}, {1.0f, 2.0f, 3.0f}), true);
  Var l2 = sum(mul(y, y), 0);
  backward(l2, /*retain_graph=*/true);
  backward(l2);  // allowed: the first one retained the graph
  CHECK(y.grad().to_vector() == std::vector<float>{4.0f, 8.0f, 12.0f});
  CHECK_THROWS_AS(backward(l2), Error);
}

TEST_CASE("tape: retain_grad keeps an interior gradient") {
  Var x(Tensor::from_vector({2}, {1.0f, -3.0f}), true);
  Var h = mul(x, x);
  Var k = scale(x, 2.0f);
  h.retain_grad();
  backward(sum(scale(add(h, k), 0.5f), 0));
  CHECK(h.grad().to_vector() == std::vector<float>{0.5f, 0.5f});
  CHECK(!k.grad().defined());                                      // interior, not retained
  CHECK(x.grad().to_vector() == std::vector<float>{2.0f, -2.0f});  // x + 1
}

TEST_CASE("tape: bad calls are errors with useful messages") {
  Var x(Tensor::from_vector({2}, {1.0f, 2.0f}), true);
  Var y = scale(x, 2.0f);
  std::string msg = error_of([&] { backward(y); });
  CHECK_MESSAGE(contains(msg, "[2]"), msg);  // non-scalar root without a seed
  msg = error_of([&] { backward(y, Tensor::ones({3})); });
  CHECK_MESSAGE(contains(msg, "seed"), msg);
  msg = error_of([&] { y.set_requires_grad(false); });
  CHECK_MESSAGE(contains(msg, "leaves"), msg);
  CHECK_THROWS_AS(backward(Var()), Error);
  CHECK_THROWS_AS(Var().value(), Error);
  backward(y, Tensor::from_vector({2}, {1.0f, -1.0f}));  // explicit seed
  CHECK(x.grad().to_vector() == std::vector<float>{2.0f, -2.0f});
}

// reshape / permute / slice / concat are linear selections: the exact gradient of
// <seed, f(x)> with respect to x_i is <seed, f(e_i)>, computed here by probing with e_i.
TEST_CASE("tape: view functions carry exact gradients") {
  Rng rng(5);
  Tensor xv = test::random({2, 3, 4}, rng);
  auto f = [](const Var& x) {
    Var p = permute(x, {2, 0, 1});            // [4, 2, 3]
    Var a = slice(p, 0, 1, 3);                // [2, 2, 3]
    Var b = slice(p, 0, 3, 4);                // [1, 2, 3]
    Var c = concat({a, b, a}, 0);             // [5, 2, 3], a used twice
    return reshape(slice(c, 2, 0, 2), {-1});  // [20]
  };
  Tensor seed = test::random({20}, rng);
  Var x(xv, true);
  backward(f(x), seed);
  Tensor want = Tensor::empty(xv.shape());
  for (int64_t i = 0; i < xv.numel(); ++i) {
    Tensor e = Tensor::zeros(xv.shape());
    e.data()[i] = 1.0f;
    NoGrad ng;
    want.data()[i] = static_cast<float>(test::dot(f(Var(e)).value(), seed));
  }
  CHECK(test::bit_identical(x.grad(), want));
}

TEST_CASE("tape: a very deep graph backpropagates and is freed without recursion") {
  constexpr int kDepth = 300000;  // a recursive ~Node overflows an 8 MB stack at ~150k (measured)
  for (bool retain : {false, true}) {
    CAPTURE(retain);
    Var x(Tensor::from_vector({1}, {2.0f}), true);
    Var h = x;
    std::weak_ptr<Node> early;
    for (int i = 0; i < kDepth; ++i) {
      h = reshape(h, i % 2 == 0 ? Shape{1, 1} : Shape{1});
      if (i == 10) early = h.node();
    }
    backward(sum(reshape(h, {1}), 0), retain);
    CHECK(x.grad().item() == 1.0f);
    // Without retain the backward itself unlinked and freed the chain; with retain, dropping
    // the last Var frees it (a recursive destructor would blow the stack either way).
    CHECK(early.expired() == !retain);
    h = Var();
    CHECK(early.expired());
  }
}

TEST_CASE("tape: a non-retained backward frees interior activations the caller does not hold") {
  Var x(Tensor::from_vector({3}, {1.0f, 2.0f, 3.0f}), true);
  Var loss;
  std::weak_ptr<Node> mid;
  {
    Var m = mul(x, x);
    mid = m.node();
    loss = sum(m, 0);
  }
  CHECK(!mid.expired());  // reachable from the loss
  backward(loss);
  CHECK(mid.expired());
  CHECK(loss.value().item() == 14.0f);  // the loss value itself stays
  CHECK(x.grad().to_vector() == std::vector<float>{2.0f, 4.0f, 6.0f});
  CHECK_THROWS_AS(backward(loss), Error);
}
