// Modules against PyTorch (fixture tests/fixtures/autograd/modules.safetensors from
// tools/golden/autograd.py): state_dict names and order, load_state_dict checks, BatchNorm
// running statistics and num_batches_tracked, train/eval recursion, default-init fan_in.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "autograd/modules.hpp"
#include "engine/error.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
using namespace cmdr::ag;

namespace {

// Mirrors tools/golden/autograd.py Net.
struct Net : Module {
  Sequential proj, dec;
  BatchNorm2d bn2{3};
  ConvTranspose2d up;
  explicit Net(Rng& rng) : up(3, 2, 2, 2, 0, true, rng) {
    proj.add<Linear>(4, 8, true, rng);
    proj.add<GELU>();
    proj.add<LayerNorm>(8);
    proj.add<Linear>(8, 4, false, rng);
    dec.add<ConvTranspose1d>(4, 6, 3, 1, 1, true, rng);
    dec.add<BatchNorm1d>(6);
    dec.add<ReLU>();
    dec.add<Conv1d>(6, 2, 1, 1, 0, true, rng);
    register_module("proj", proj);
    register_module("dec", dec);
    register_module("bn2", bn2);
    register_module("up", up);
  }
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

// The fixture's tensors under `prefix`, with the prefix removed.
StateDict with_prefix(const test::Fixture& fx, const std::string& prefix) {
  StateDict sd;
  for (const st::TensorInfo& ti : fx.file().tensors())
    if (ti.name.rfind(prefix, 0) == 0) sd[ti.name.substr(prefix.size())] = fx.get(ti.name);
  return sd;
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

TEST_CASE("modules: state_dict names, order and shapes match PyTorch") {
  test::Fixture fx("autograd/modules.safetensors");
  Rng rng(1);
  Net net(rng);
  const auto& meta = fx.file().metadata();
  std::vector<std::string> names;
  for (auto& [n, v] : net.named_parameters()) names.push_back(n);
  CHECK(names == split(meta.at("named_parameters")));
  CHECK(net.state_dict_keys() == split(meta.at("state_dict_keys")));
  CHECK(net.num_parameters() == std::stoll(meta.at("num_parameters")));
  StateDict want = with_prefix(fx, "init.");
  StateDict got = net.state_dict();
  REQUIRE(got.size() == want.size());
  for (auto& [k, t] : want) {
    REQUIRE_MESSAGE(got.count(k), k);
    CHECK_MESSAGE(got[k].shape() == t.shape(), k, " ", got[k].str(), " vs ", t.str());
  }
  CHECK(got["dec.1.num_batches_tracked"].shape() == Shape{});
  CHECK(net.parameters().size() == names.size());
}

TEST_CASE("modules: load_state_dict copies values and BatchNorm matches PyTorch in train/eval") {
  test::Fixture fx("autograd/modules.safetensors");
  Rng rng(2);
  Net net(rng);
  CHECK(net.load_state_dict(with_prefix(fx, "init.")).empty());
  CHECK(test::bit_identical(net.proj[3].named_parameters()[0].second->value(),
                            fx.get("init.proj.3.weight")));

  net.train();
  Var y1 = net.dec.forward(Var(fx.get("x1")));
  net.dec.forward(Var(fx.get("x2")));
  net.eval();
  CHECK(!net.dec[1].training());
  CHECK(!net.bn2.training());
  Var y3;
  {
    NoGrad ng;
    y3 = net.dec.forward(Var(fx.get("x3")));
  }
  CHECK_CLOSE(y1.value(), fx.get("y1"), 1e-5, 1e-6);
  CHECK_CLOSE(y3.value(), fx.get("y3"), 1e-5, 1e-6);
  StateDict after = with_prefix(fx, "after.dec.");
  StateDict got = net.dec.state_dict();
  CHECK(got["1.num_batches_tracked"].item() == 2.0f);
  CHECK(after["1.num_batches_tracked"].item() == 2.0f);
  CHECK_CLOSE(got["1.running_mean"], after["1.running_mean"], 1e-5, 1e-6);
  CHECK_CLOSE(got["1.running_var"], after["1.running_var"], 1e-5, 1e-6);
  CHECK(net.bn2.num_batches_tracked.item() == 0.0f);  // never run
  net.train();
  CHECK(net.dec[1].training());
}

TEST_CASE("modules: load_state_dict reports missing, unexpected and mis-shaped tensors") {
  test::Fixture fx("autograd/modules.safetensors");
  Rng rng(3);
  Net net(rng);
  const StateDict good = with_prefix(fx, "init.");
  const Tensor before = net.up.weight.value().clone();

  StateDict sd = good;
  sd.erase("dec.1.running_var");
  sd.erase("proj.0.bias");
  sd["extra.weight"] = Tensor::zeros({2});
  std::string msg = error_of([&] { net.load_state_dict(sd); });
  CHECK_MESSAGE(contains(msg, "missing keys [proj.0.bias, dec.1.running_var]"), msg);
  CHECK_MESSAGE(contains(msg, "unexpected keys [extra.weight]"), msg);
  CHECK(test::bit_identical(net.up.weight.value(), before));  // nothing copied

  std::vector<std::string> missing;
  std::vector<std::string> unused = net.load_state_dict(sd, /*strict=*/false, &missing);
  CHECK(unused == std::vector<std::string>{"extra.weight"});
  CHECK(missing == std::vector<std::string>{"proj.0.bias", "dec.1.running_var"});
  CHECK(test::bit_identical(net.up.weight.value(), fx.get("init.up.weight")));

  // As PyTorch: a one-element 1-dim tensor loads into a 0-dim one (old checkpoints), but a
  // longer one is a mismatch.
  sd = good;
  sd["bn2.num_batches_tracked"] = Tensor::from_vector({1}, {7.0f});
  CHECK(net.load_state_dict(sd).empty());
  CHECK(net.bn2.num_batches_tracked.shape() == Shape{});
  CHECK(net.bn2.num_batches_tracked.item() == 7.0f);
  sd["bn2.num_batches_tracked"] = Tensor::from_vector({2}, {7.0f, 8.0f});
  msg = error_of([&] { net.load_state_dict(sd); });
  CHECK_MESSAGE(contains(msg, "'bn2.num_batches_tracked': checkpoint [2] vs model []"), msg);

  sd = good;
  sd["up.weight"] = Tensor::zeros({2, 3, 2, 2});
  msg = error_of([&] { net.load_state_dict(sd, /*strict=*/false); });
  CHECK_MESSAGE(contains(msg, "'up.weight': checkpoint [2, 3, 2, 2] vs model [3, 2, 2, 2]"), msg);
}

TEST_CASE("modules: default init uses PyTorch's fan_in (incl. ConvTranspose)") {
  test::Fixture fx("autograd/modules.safetensors");
  Rng rng(4);
  Linear lin(5, 7, true, rng);
  Conv1d conv(3, 50, 4, 1, 0, true, rng);
  ConvTranspose1d convt1(3, 50, 4, 1, 0, true, rng);
  ConvTranspose2d convt2(3, 20, 3, 1, 0, true, rng);
  struct Case {
    const char* name;
    Var *w, *b;
  } cases[] = {{"linear", &lin.weight, &lin.bias},
               {"conv1d", &conv.weight, &conv.bias},
               {"conv_transpose1d", &convt1.weight, &convt1.bias},
               {"conv_transpose2d", &convt2.weight, &convt2.bias}};
  for (const Case& c : cases) {
    const double fan_in = static_cast<double>(fx.get_i64(std::string("fan_in.") + c.name)[0]);
    const double bound = 1.0 / std::sqrt(fan_in);
    double wmax = 0, bmax = 0;
    for (float v : c.w->value().to_vector())
      wmax = std::max(wmax, std::abs(static_cast<double>(v)));
    for (float v : c.b->value().to_vector())
      bmax = std::max(bmax, std::abs(static_cast<double>(v)));
    CHECK_MESSAGE(wmax <= bound, c.name, " max |w| ", wmax, " bound ", bound);
    CHECK_MESSAGE(bmax <= bound, c.name, " max |b| ", bmax, " bound ", bound);
    // ≥ 35 uniform draws: the largest is within 10 % of the bound with probability > 97 %
    // (deterministic here: fixed seed).
    CHECK_MESSAGE(wmax > 0.9 * bound, c.name, " max |w| ", wmax, " bound ", bound);
    CHECK(c.w->requires_grad());
  }
}

TEST_CASE("modules: Dropout and BatchNorm follow train/eval like PyTorch") {
  Rng rng(5), drop_rng(6);
  Sequential seq;
  seq.add<Dropout>(0.5f, drop_rng);
  auto& bn = seq.add<BatchNorm1d>(3);
  Tensor xv = Tensor::empty({4, 3, 5});
  rng.fill_uniform(xv, 1.0f, 2.0f);
  const Var x(xv);
  // Train: inverted dropout (kept values doubled), batch statistics, stats updated.
  Var h = seq[0].forward(x);
  const std::vector<float> in = xv.to_vector(), out = h.value().to_vector();
  int zeros = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    CHECK((out[i] == 0.0f || out[i] == 2.0f * in[i]));
    zeros += out[i] == 0.0f;
  }
  CHECK(zeros > 0);
  CHECK(zeros < static_cast<int>(in.size()));
  {
    NoGrad ng;  // PyTorch updates running stats in train mode even without grad
    seq.forward(x);
  }
  CHECK(bn.num_batches_tracked.item() == 1.0f);
  CHECK(bn.running_mean.to_vector() != std::vector<float>(3, 0.0f));
  // Eval: dropout is the identity (the same Var), BatchNorm uses and keeps running stats.
  seq.eval();
  const Tensor rm = bn.running_mean.clone();
  CHECK(seq[0].forward(x).node() == x.node());
  seq.forward(x);
  CHECK(bn.num_batches_tracked.item() == 1.0f);
  CHECK(test::bit_identical(bn.running_mean, rm));
}
