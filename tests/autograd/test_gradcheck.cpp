// Central finite differences of a composite graph (the tape's wiring: every input reached
// through several ops, Vars reused, views, broadcasting, normalisations).
// The engine is float32 only, so differences are taken in float32 with h = 3e-3 and a
// double-precision loss; the tolerance (5e-3 of the largest gradient entry, see
// test::compare_scaled; measured worst 9e-4) covers O(h²) truncation and the float
// rounding of the forward divided by 2h.
#include <doctest/doctest.h>

#include <functional>
#include <map>

#include "autograd/autograd.hpp"
#include "engine/threads.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
using namespace cmdr::ag;

namespace {
// The finite differences run hundreds of tiny forwards: one thread avoids OpenMP fork/join
// overhead (results do not depend on the thread count anyway).
class OneThread {
 public:
  OneThread() : prev_(num_threads()) { set_num_threads(1); }
  ~OneThread() { set_num_threads(prev_); }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int prev_;
};
}  // namespace

namespace {

// x [3, 5] → linear(W1 [6, 5], b1) → gelu → layer_norm → u = n·sigmoid(n) (n reused)
//   → reshape [3, 2, 3] → permute → slice / concat with tanh → softmax; a second branch
//   bn = batch_norm (training) of reshape(u) [3, 6, 1]; cosine similarity of the two.
Var graph(const std::map<std::string, Var>& v) {
  Var h = linear(v.at("x"), v.at("w1"), v.at("b1"));           // [3, 6]
  Var n = layer_norm(gelu(h), v.at("lw"), v.at("lb"), 1e-5f);  // [3, 6]
  Var u = mul(n, sigmoid(n));                                  // [3, 6]
  Var p = permute(reshape(u, {3, 2, 3}), {2, 0, 1});           // [3, 3, 2]
  Var s = slice(p, 0, 0, 2);                                   // [2, 3, 2]
  Var c = concat({s, tanh(s)}, 2);                             // [2, 3, 4]
  Var sm = softmax(div(c, add(v.at("temp"), v.at("one"))));    // [2, 3, 4], temp [4]
  Var bn = batch_norm(reshape(u, {3, 6, 1}), v.at("bw"), v.at("bb"), Tensor(), Tensor(),
                      /*training=*/true, 0.1f, 1e-5f);  // [3, 6, 1]
  Var a = reshape(sm, {6, 4});
  Var b = matmul(reshape(bn, {6, 3}), v.at("w2"));     // [6, 4]
  Var cs = cosine_similarity(a, sub(b, a), 1, 1e-8f);  // [6], a reused
  return add(cs, mean(mul(a, b), 1));                  // [6]
}

}  // namespace

TEST_CASE("gradcheck: composite graph vs central finite differences") {
  OneThread one;
  Rng rng(21);
  std::map<std::string, Tensor> init = {
      {"x", test::random({3, 5}, rng)}, {"w1", test::random({6, 5}, rng)},
      {"b1", test::random({6}, rng)},   {"lw", test::random({6}, rng, 0.5f, 1.5f)},
      {"lb", test::random({6}, rng)},   {"temp", test::random({4}, rng, 0.5f, 1.0f)},
      {"one", Tensor::ones({4})},       {"bw", test::random({6}, rng, 0.5f, 1.5f)},
      {"bb", test::random({6}, rng)},   {"w2", test::random({3, 4}, rng)}};
  const Tensor seed = test::random({6}, rng);

  std::map<std::string, Var> vars;
  for (auto& [k, t] : init) vars[k] = Var(t.clone(), k != "one");
  backward(graph(vars), seed);
  CHECK(!vars["one"].grad().defined());

  for (auto& [name, t0] : init) {
    if (name == "one") continue;
    CAPTURE(name);
    auto f = [&, name = name](const Tensor& probe) {
      NoGrad ng;
      std::map<std::string, Var> v;
      for (auto& [k, t] : init) v[k] = Var(k == name ? probe : t);
      return test::dot(graph(v).value(), seed);
    };
    Tensor num = test::fd_grad(f, t0, 1e-3);
    REQUIRE(vars[name].grad().defined());
    const test::CloseReport r = test::compare_scaled(vars[name].grad(), num, 5e-3);
    CHECK_MESSAGE(r.ok, r.msg);
  }
}

// Eval-mode batch norm has its own backward in autograd.cpp (constant running stats).
TEST_CASE("gradcheck: batch_norm in eval mode (running statistics are constants)") {
  OneThread one;
  Rng rng(22);
  const Tensor x0 = test::random({2, 3, 4, 5}, rng), w0 = test::random({3}, rng, 0.5f, 1.5f);
  const Tensor b0 = test::random({3}, rng), rm = test::random({3}, rng, -0.3f, 0.3f);
  const Tensor rv = test::random({3}, rng, 0.5f, 1.5f), seed = test::random({2, 3, 4, 5}, rng);
  Var x(x0.clone(), true), w(w0.clone(), true), b(b0.clone(), true);
  backward(batch_norm(x, w, b, rm.clone(), rv.clone(), /*training=*/false, 0.1f, 1e-5f), seed);
  auto loss = [&](const Tensor& xv, const Tensor& wv, const Tensor& bv) {
    NoGrad ng;
    return test::dot(
        batch_norm(Var(xv), Var(wv), Var(bv), rm.clone(), rv.clone(), false, 0.1f, 1e-5f).value(),
        seed);
  };
  const Tensor gx = test::fd_grad([&](const Tensor& t) { return loss(t, w0, b0); }, x0, 3e-3);
  const Tensor gw = test::fd_grad([&](const Tensor& t) { return loss(x0, t, b0); }, w0, 3e-3);
  const Tensor gb = test::fd_grad([&](const Tensor& t) { return loss(x0, w0, t); }, b0, 3e-3);
  test::CloseReport r = test::compare_scaled(x.grad(), gx, 5e-3);
  CHECK_MESSAGE(r.ok, "dx ", r.msg);
  r = test::compare_scaled(w.grad(), gw, 5e-3);
  CHECK_MESSAGE(r.ok, "dweight ", r.msg);
  r = test::compare_scaled(b.grad(), gb, 5e-3);
  CHECK_MESSAGE(r.ok, "dbias ", r.msg);
}

// Every remaining differentiable function, wired into one graph, so an argument-order or
// shape mistake in any wrapper shows up (same FD method and tolerance as above).
Var graph2(const std::map<std::string, Var>& v) {
  Var c = conv2d(v.at("img"), v.at("cw"), v.at("cb"), 1, 1);          // [1, 3, 6, 6]
  Var p = avg_pool2d(c, 3, 1);                                        // [1, 3, 6, 6]
  Var u = upsample_bilinear2d(p, 8, 8);                               // [1, 3, 8, 8]
  Var a = adaptive_avg_pool2d(u, 5, 5);                               // [1, 3, 5, 5]
  Var n = resize_nearest2d(a, 7, 7);                                  // [1, 3, 7, 7]
  Var t = conv_transpose2d(n, v.at("tw"), v.at("tb"), 2, 1);          // [1, 2, 13, 13]
  Var s = reshape(slice(slice(t, 2, 0, 12), 3, 0, 10), {1, 2, 120});  // [1, 2, 120]
  Var c1 = conv1d(s, v.at("c1w"), v.at("c1b"), 2, 1);                 // [1, 4, 60]
  Var ct = conv_transpose1d(c1, v.at("ctw"), Var(), 2, 1);            // [1, 3, 120]
  Var q = reshape(ct, {1, 3, 20, 6});                                 // [B, H, T, d]
  Var k = reshape(sqrt(add(mul(ct, ct), v.at("one"))), {1, 3, 20, 6});
  Var att = attention(q, k, scale(q, 0.5f), 0.4f, /*window=*/8, 0.0f, false, nullptr);
  Var m = bmm(reshape(att, {3, 20, 6}), v.at("bm"), false, true);  // [3, 20, 5]
  Var rows = index_select(reshape(m, {60, 5}), {3, 0, 3, 59, 7});  // [5, 5]
  Var sc = index_add(rows, {1, 1, 0, 2, 1}, 3);                    // [3, 5]
  Var l2 = l2_normalize(sc, 1, 1e-6f);                             // [3, 5]
  Var mx = max(matmul(l2, v.at("mm"), false, false), 1, true);     // [3, 1]
  Var sm = mean(mul(l2, relu(add(v.at("shift"), l2))), 0, false);  // [5]
  return add(sum(mx, 1), slice(reshape(sm, {5}), 0, 0, 3));        // [3]
}

TEST_CASE("gradcheck: every other differentiable function in one graph") {
  OneThread one;
  Rng rng(23);
  std::map<std::string, Tensor> init = {{"img", test::random({1, 2, 6, 6}, rng)},
                                        {"cw", test::random({3, 2, 3, 3}, rng)},
                                        {"cb", test::random({3}, rng)},
                                        {"tw", test::random({3, 2, 3, 3}, rng)},
                                        {"tb", test::random({2}, rng)},
                                        {"c1w", test::random({4, 2, 3}, rng)},
                                        {"c1b", test::random({4}, rng)},
                                        {"ctw", test::random({4, 3, 4}, rng)},
                                        {"one", Tensor::ones({1})},
                                        {"bm", test::random({3, 5, 6}, rng)},
                                        {"mm", test::random({5, 4}, rng)},
                                        {"shift", Tensor::full({5}, 2.0f)}};
  const Tensor seed = test::random({3}, rng);
  std::map<std::string, Var> vars;
  for (auto& [k, t] : init) vars[k] = Var(t.clone(), k != "one" && k != "shift");
  backward(graph2(vars), seed);
  for (auto& [name, t0] : init) {
    if (name == "one" || name == "shift") continue;
    CAPTURE(name);
    auto f = [&, name = name](const Tensor& probe) {
      NoGrad ng;
      std::map<std::string, Var> v;
      for (auto& [k, t] : init) v[k] = Var(k == name ? probe : t);
      return test::dot(graph2(v).value(), seed);
    };
    Tensor num = test::fd_grad(f, t0, 3e-3);
    REQUIRE(vars[name].grad().defined());
    const test::CloseReport r = test::compare_scaled(vars[name].grad(), num, 5e-3);
    CHECK_MESSAGE(r.ok, r.msg);
  }
}
