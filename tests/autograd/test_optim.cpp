// Optimizers against torch.optim (fixtures from tools/golden/autograd.py):
//  - fixed gradient sequences (update formulas alone);
//  - 20 training steps of a small MLP (Linear-GELU-LayerNorm-Linear, MSE from our ops);
//  - determinism: two identical training runs are bit-identical.
#include <doctest/doctest.h>

#include <limits>
#include <memory>
#include <string>

#include "autograd/modules.hpp"
#include "autograd/optim.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
using namespace cmdr::ag;

namespace {

constexpr int kSteps = 20;
const char* const kConfigs[] = {"adam", "adam_l2", "adamw", "sgd_momentum", "sgd_nesterov"};

// Mirrors CONFIGS in tools/golden/autograd.py.
std::unique_ptr<Optimizer> make_opt(const std::string& name, std::vector<Var*> params) {
  if (name == "adam")
    return std::make_unique<Adam>(params, AdamOptions{1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f});
  if (name == "adam_l2")
    return std::make_unique<Adam>(params, AdamOptions{1e-2f, 0.9f, 0.999f, 1e-3f, 1e-2f});
  if (name == "adamw")
    return std::make_unique<AdamW>(params, AdamOptions{1e-2f, 0.9f, 0.999f, 1e-8f, 5e-2f});
  if (name == "sgd_momentum")
    return std::make_unique<SGD>(params, SgdOptions{5e-2f, 0.9f, 0.1f, 1e-3f, false});
  if (name == "sgd_nesterov")
    return std::make_unique<SGD>(params, SgdOptions{5e-2f, 0.9f, 0.0f, 0.0f, true});
  fail("unknown optimizer config ", name);
}

// Mirrors MLP in tools/golden/autograd.py (names net.0.weight, ...).
struct MLP : Module {
  Sequential net;
  MLP(Rng& rng, float p_drop = 0.0f, Rng* drop_rng = nullptr) {
    net.add<Linear>(8, 16, true, rng);
    net.add<GELU>();
    if (p_drop > 0.0f) net.add<Dropout>(p_drop, *drop_rng);
    net.add<LayerNorm>(16);
    net.add<Linear>(16, 4, true, rng);
    register_module("net", net);
  }
};

// mean((y − t)²) over all elements, built from our ops.
Var mse(const Var& y, const Var& t) {
  Var d = sub(y, t);
  Var sq = mul(d, d);
  return mean(reshape(sq, {sq.value().numel()}), 0);
}

StateDict with_prefix(const test::Fixture& fx, const std::string& prefix) {
  StateDict sd;
  for (const st::TensorInfo& ti : fx.file().tensors())
    if (ti.name.rfind(prefix, 0) == 0 && ti.name.find(".loss") == std::string::npos)
      sd[ti.name.substr(prefix.size())] = fx.get(ti.name);
  return sd;
}

}  // namespace

TEST_CASE("optim: update formulas match torch.optim on fixed gradient sequences") {
  test::Fixture fx("autograd/optim_fixed.safetensors");
  const Tensor gp = fx.get("gp"), gq = fx.get("gq");
  for (const char* name : kConfigs) {
    CAPTURE(std::string(name));
    Var p(fx.get("p0"), true), q(fx.get("q0"), true);
    auto opt = make_opt(name, {&p, &q});
    for (int s = 0; s < kSteps; ++s) {
      p.grad() = gp.select(0, s).clone();
      q.grad() = gq.select(0, s).clone();
      opt->step();
    }
    // Same operations in the same order, with the same fused multiply-adds as the torch
    // build that wrote the fixture: the results are bit-identical (measured), so any change
    // of formula or rounding shows up here.
    CHECK_CLOSE(p.value(), fx.get(std::string(name) + ".p"), 0.0, 0.0);
    CHECK_CLOSE(q.value(), fx.get(std::string(name) + ".q"), 0.0, 0.0);
  }
}

TEST_CASE("optim: parameters without a gradient are skipped") {
  Var p(Tensor::from_vector({2}, {1.0f, 2.0f}), true);
  for (const char* name : kConfigs) {
    auto opt = make_opt(name, {&p});
    opt->step();
    CHECK(p.value().to_vector() == std::vector<float>{1.0f, 2.0f});
  }
}

TEST_CASE("optim: 20 MLP training steps match PyTorch to 1e-5 relative") {
  test::Fixture fx("autograd/optim_mlp.safetensors");
  const Var x(fx.get("x")), t(fx.get("target"));
  for (const char* name : kConfigs) {
    CAPTURE(std::string(name));
    Rng rng(0);
    MLP m(rng);
    m.load_state_dict(with_prefix(fx, "init."));
    auto opt = make_opt(name, m.parameters());
    std::vector<float> losses;
    for (int s = 0; s < kSteps; ++s) {
      opt->zero_grad();
      Var loss = mse(m.net.forward(x), t);
      backward(loss);
      opt->step();
      losses.push_back(loss.value().item());
    }
    CHECK_CLOSE(Tensor::from_vector({kSteps}, losses), fx.get(std::string(name) + ".loss"), 1e-5,
                0.0);
    StateDict want = with_prefix(fx, std::string(name) + ".");
    StateDict got = m.state_dict();
    REQUIRE(want.size() == got.size());
    for (auto& [k, w] : want) {
      CAPTURE(k);
      CHECK_CLOSE(got.at(k), w, 1e-5, 1e-7);
    }
  }
}

TEST_CASE("optim: two identical training runs are bit-identical (dropout included)") {
  auto run = [](uint64_t drop_seed) {
    Rng init(7), drop(drop_seed), data(8);
    MLP m(init, 0.2f, &drop);
    const Var x(test::random({6, 8}, data)), t(test::random({6, 4}, data));
    AdamW opt(m.parameters());
    for (int s = 0; s < kSteps; ++s) {
      opt.zero_grad();
      backward(mse(m.net.forward(x), t));
      opt.step();
    }
    return m.state_dict();
  };
  StateDict a = run(9), b = run(9), c = run(10);
  bool all_same = true, any_diff = false;
  for (auto& [k, v] : a) {
    all_same = all_same && test::bit_identical(v, b.at(k));
    any_diff = any_diff || !test::bit_identical(v, c.at(k));
  }
  CHECK(all_same);
  CHECK(any_diff);  // the dropout stream matters, so the comparison above is not vacuous
}

TEST_CASE("optim: Adam step_checked commits exactly step() or nothing") {
  // Clean gradients: step_checked == step() bit for bit (Adam with L2 and AdamW).
  Rng rng(3);
  for (bool decoupled : {false, true}) {
    CAPTURE(decoupled);
    const AdamOptions o{1e-2f, 0.9f, 0.999f, 1e-8f, 1e-2f};
    const Tensor p0 = test::random({300, 7}, rng), q0 = test::random({5}, rng);
    Var pa(p0.clone(), true), qa(q0.clone(), true), pb(p0.clone(), true), qb(q0.clone(), true);
    Adam a({&pa, &qa}, o, decoupled), b({&pb, &qb}, o, decoupled);
    for (int s = 0; s < 3; ++s) {
      const Tensor g = test::random({300, 7}, rng), h = test::random({5}, rng);
      pa.grad() = g.clone(), qa.grad() = h.clone(), pb.grad() = g.clone(), qb.grad() = h.clone();
      a.step();
      CHECK(b.step_checked() == Adam::StepCheck::Ok);
    }
    CHECK(test::bit_identical(pa.value(), pb.value()));
    CHECK(test::bit_identical(qa.value(), qb.value()));
    CHECK(test::bit_identical(a.exp_avg()[0], b.exp_avg()[0]));
    CHECK(test::bit_identical(a.exp_avg_sq()[1], b.exp_avg_sq()[1]));
    CHECK(b.steps() == 3);
  }
  // Non-finite results: nothing changes (values, moments, step count).
  Var p(test::random({70000}, rng), true), q(test::random({3}, rng), true);
  Adam opt({&p, &q}, AdamOptions{1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f});
  p.grad() = test::random({70000}, rng), q.grad() = test::random({3}, rng);
  CHECK(opt.step_checked() == Adam::StepCheck::Ok);
  const Tensor p1 = p.value().clone(), q1 = q.value().clone();
  const Tensor m1 = opt.exp_avg()[0].clone(), v1 = opt.exp_avg_sq()[0].clone();
  auto unchanged = [&] {
    CHECK(test::bit_identical(p.value(), p1));
    CHECK(test::bit_identical(q.value(), q1));
    CHECK(test::bit_identical(opt.exp_avg()[0], m1));
    CHECK(test::bit_identical(opt.exp_avg_sq()[0], v1));
    CHECK(opt.steps() == 1);
  };
  // g = 1e30 in one element (of the large, multi-threaded tensor): g² overflows the second
  // moment while the update m / (sqrt(inf) + eps) = 0 keeps the parameter finite.
  p.grad().data()[65537] = 1e30f;
  CHECK(opt.step_checked() == Adam::StepCheck::NonFiniteState);
  unchanged();
  // lr = inf: every updated parameter is non-finite (reported before the state).
  opt.options.lr = std::numeric_limits<float>::infinity();
  CHECK(opt.step_checked() == Adam::StepCheck::NonFiniteParameter);
  unchanged();
  // First step failing: no state is created.
  Var r(test::random({4}, rng), true);
  Adam fresh({&r}, AdamOptions{std::numeric_limits<float>::infinity()});
  r.grad() = test::random({4}, rng);
  CHECK(fresh.step_checked() == Adam::StepCheck::NonFiniteParameter);
  CHECK(fresh.exp_avg().empty());
  CHECK(fresh.steps() == 0);
}
