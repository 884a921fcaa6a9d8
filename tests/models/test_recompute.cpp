// Recomputation in the backward (ag::checkpoint; Decoder2DConfig::recompute, issue 8):
// values and gradients bit-identical to the direct computation with dropout on, the dropout
// stream after a step unchanged, and fewer bytes held between forward and backward.
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "autograd/autograd.hpp"
#include "cmdr_fixture.hpp"
#include "engine/storage.hpp"
#include "models/decoder2d.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;

namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  return std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

ag::Var total(const ag::Var& x) {
  return ag::sum(ag::reshape(x, {x.value().numel()}), 0);
}

// A weighted sum, so every output element gets a distinct incoming gradient.
ag::Var weighted_total(const ag::Var& y, const Tensor& w) {
  return total(ag::mul(y, ag::Var(w)));
}

}  // namespace

TEST_CASE("checkpoint: values, gradients and the dropout stream equal the direct computation") {
  Rng init(3);
  const Tensor xv = test::random({64, 24}, init), wv = test::random({48, 24}, init),
               bv = test::random({48}, init), ow = test::random({64, 48}, init);
  struct Run {
    Tensor y, dx, dw, db;
    uint64_t next;  // the generator's next draw after the step
    int64_t held;   // bytes held by tensors between forward and backward
  };
  auto run = [&](bool recompute) {
    ag::Var x(xv, true), w(wv, true), b(bv, true);
    Rng drop(99);
    auto f = [&](const ag::Var& v) {
      ag::Var h = ag::gelu(ag::linear(v, w, b));  // [64, 48]
      h = ag::dropout(h, 0.3f, true, drop);
      return ag::gelu(ag::dropout(h, 0.2f, true, drop));
    };
    const int64_t before = memory_stats().current_bytes;
    ag::Var y = recompute ? ag::checkpoint(f, x, &drop) : f(x);
    ag::Var loss = weighted_total(y, ow);
    Run r;
    r.held = memory_stats().current_bytes - before;
    ag::backward(loss);
    r.y = y.value().clone();
    r.dx = x.grad().clone();
    r.dw = w.grad().clone();
    r.db = b.grad().clone();
    r.next = drop.next_u64();
    return r;
  };
  const Run direct = run(false), rec = run(true);
  CHECK(same_bits(rec.y, direct.y));
  CHECK(same_bits(rec.dx, direct.dx));
  CHECK(same_bits(rec.dw, direct.dw));
  CHECK(same_bits(rec.db, direct.db));
  CHECK(rec.next == direct.next);  // the recomputation's draws were put back
  // Direct keeps gelu/dropout inputs and masks (several [64,48] tensors); the checkpoint
  // keeps its output and the input it shares with the caller.
  CHECK(rec.held < direct.held);
  MESSAGE("bytes held between forward and backward: direct ", direct.held, ", checkpoint ",
          rec.held);

  // Without grad mode it is f itself; the rng advances as f's draws do.
  ag::NoGrad ng;
  Rng d1(5), d2(5);
  auto g1 = [&](const ag::Var& v) { return ag::dropout(v, 0.5f, true, d1); };
  auto g2 = [&](const ag::Var& v) { return ag::dropout(v, 0.5f, true, d2); };
  CHECK(same_bits(ag::checkpoint(g1, ag::Var(xv), &d1).value(), g2(ag::Var(xv)).value()));
  CHECK(d1.next_u64() == d2.next_u64());
}

TEST_CASE("checkpoint: an exception in the recomputation leaves the generator as it was") {
  Rng init(4);
  const Tensor xv = test::random({8, 4}, init);
  ag::Var x(xv, true);
  Rng drop(7);
  int calls = 0;
  auto f = [&](const ag::Var& v) {
    if (++calls == 2) throw Error("recompute failed");
    return ag::dropout(v, 0.5f, true, drop);
  };
  ag::Var y = ag::checkpoint(f, x, &drop);
  Rng copy = drop;
  CHECK_THROWS_WITH_AS(ag::backward(total(y)), doctest::Contains("recompute failed"), Error);
  CHECK(drop.next_u64() == copy.next_u64());
}

TEST_CASE(
    "Decoder2D recompute: outputs and every gradient bit-identical over two steps, less held") {
  const models::CmdrConfig base = test::small_config(16);
  Rng data_rng(21);
  const Tensor xv = test::random({16 * 16, base.dec2d.dim}, data_rng);
  const Tensor ow = test::random({16 * 16, base.dec2d.dim}, data_rng);
  struct Step {
    Tensor y;
    std::map<std::string, Tensor> grads;
    int64_t held = 0;
  };
  auto run = [&](bool recompute) {
    models::Decoder2DConfig cfg = base.dec2d;
    cfg.recompute = recompute;
    Rng init(11);
    models::Decoder2D dec(cfg, init, /*dropout_seed=*/1234);
    dec.train();
    std::vector<Step> steps;
    for (int s = 0; s < 2; ++s) {  // step 2 checks the dropout stream continued identically
      Step st;
      const int64_t before = memory_stats().current_bytes;
      ag::Var y = dec.forward(ag::Var(xv));
      ag::Var loss = weighted_total(y, ow);
      st.held = memory_stats().current_bytes - before;
      ag::backward(loss);
      st.y = y.value().clone();
      for (auto& [k, p] : dec.named_parameters()) {
        if (p->grad().defined()) st.grads[k] = p->grad().clone();
      }
      dec.zero_grad();
      steps.push_back(std::move(st));
    }
    return steps;
  };
  const std::vector<Step> direct = run(false), rec = run(true);
  for (int s = 0; s < 2; ++s) {
    CAPTURE(s);
    CHECK(same_bits(rec[s].y, direct[s].y));
    REQUIRE(rec[s].grads.size() == direct[s].grads.size());
    for (const auto& [k, g] : direct[s].grads) {
      REQUIRE_MESSAGE(rec[s].grads.count(k), k);
      CHECK_MESSAGE(same_bits(rec[s].grads.at(k), g), "gradient of ", k);
    }
    CHECK(rec[s].held < direct[s].held);
  }
  CHECK(!same_bits(direct[0].y, direct[1].y));  // dropout on: the two steps differ
  MESSAGE("Decoder2D S=16 bytes held between forward and backward: direct ", direct[0].held,
          ", recompute ", rec[0].held);
}
