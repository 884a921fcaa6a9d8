// Modules with PyTorch names, state_dict / load_state_dict, PyTorch default inits.
#include "autograd/modules.hpp"

#include <cmath>
#include <set>
#include <sstream>

#include "engine/error.hpp"
#include "ops/ops.hpp"

namespace cmdr::ag {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

// PyTorch's default for Linear/Conv*: kaiming_uniform_(a=√5) on the weight, which gives
// bound = gain·√(3/fan_in) with gain = √(2/(1+a²)) = √(1/3), i.e. bound = 1/√fan_in; the
// bias is drawn from U(−1/√fan_in, 1/√fan_in) with the same fan_in. fan_in follows
// torch.nn.init._calculate_fan_in_and_fan_out: weight.size(1) · (product of kernel dims),
// so for ConvTranspose (weight [in, out, k...]) it is out·k..., not in·k....
void init_uniform_fan_in(Var& weight, Var& bias, int64_t fan_in, Rng& rng) {
  CMDR_CHECK(fan_in > 0, "init: fan_in must be positive (weight ", weight.value().str(), ")");
  const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
  Tensor w = weight.value();
  rng.fill_uniform(w, -bound, bound);
  if (bias.defined()) {
    Tensor b = bias.value();
    rng.fill_uniform(b, -bound, bound);
  }
}

// PyTorch's Module._load_from_state_dict accepts a 1-dim checkpoint tensor for a 0-dim
// model tensor ("backward compatibility: loading 1-dim tensor from 0.3.*"), e.g. a
// num_batches_tracked saved as [1]. We accept it only when it holds exactly one element.
bool scalar_compat(const Tensor& ckpt, const Tensor& model) {
  return model.dim() == 0 && ckpt.dim() == 1 && ckpt.numel() == 1;
}

Var param(const Shape& shape) {
  return Var(Tensor::zeros(shape), /*requires_grad=*/true);
}

void check_positive(const char* layer, const char* what, int64_t v) {
  CMDR_CHECK(v > 0, layer, ": ", what, " must be positive, got ", v);
}

}  // namespace

// ---- Module ------------------------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::register_parameter(const std::string& name, Var& p) {
  params_.emplace_back(name, &p);
}
void Module::register_buffer(const std::string& name, Tensor& t) {
  buffers_.emplace_back(name, &t);
}
void Module::register_module(const std::string& name, Module& m) {
  children_.emplace_back(name, &m);
}

// PyTorch order: a module's own parameters, then its own buffers, then each child in
// registration order (recursively). Undefined parameters (bias=False) are absent, as
// PyTorch's None parameters are.
void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Var*>>* p,
                     std::vector<std::pair<std::string, Tensor*>>* b) {
  if (p != nullptr)
    for (auto& [name, v] : params_)
      if (v->defined()) p->emplace_back(prefix + name, v);
  if (b != nullptr)
    for (auto& [name, t] : buffers_)
      if (t->defined()) b->emplace_back(prefix + name, t);
  for (auto& [name, child] : children_) child->collect(prefix + name + ".", p, b);
}

std::vector<std::pair<std::string, Var*>> Module::named_parameters() {
  std::vector<std::pair<std::string, Var*>> out;
  collect("", &out, nullptr);
  return out;
}

std::vector<Var*> Module::parameters() {
  std::vector<Var*> out;
  for (auto& [name, v] : named_parameters()) out.push_back(v);
  return out;
}

StateDict Module::state_dict() {
  std::vector<std::pair<std::string, Var*>> p;
  std::vector<std::pair<std::string, Tensor*>> b;
  collect("", &p, &b);
  StateDict sd;
  for (auto& [name, v] : p) sd.emplace(name, v->value());
  for (auto& [name, t] : b) sd.emplace(name, *t);
  return sd;
}

std::vector<std::string> Module::state_dict_keys() {
  // Pre-order walk with an explicit stack (children pushed in reverse to pop in order).
  std::vector<std::string> keys;
  std::vector<std::pair<std::string, Module*>> stack{{"", this}};
  while (!stack.empty()) {
    auto [prefix, m] = stack.back();
    stack.pop_back();
    for (auto& [name, v] : m->params_)
      if (v->defined()) keys.push_back(prefix + name);
    for (auto& [name, t] : m->buffers_)
      if (t->defined()) keys.push_back(prefix + name);
    for (auto it = m->children_.rbegin(); it != m->children_.rend(); ++it)
      stack.emplace_back(prefix + it->first + ".", it->second);
  }
  return keys;
}

std::vector<std::string> Module::load_state_dict(const StateDict& sd, bool strict,
                                                 std::vector<std::string>* missing_out) {
  std::vector<std::pair<std::string, Var*>> p;
  std::vector<std::pair<std::string, Tensor*>> b;
  collect("", &p, &b);
  std::vector<std::pair<std::string, Tensor>> targets;  // shares storage with the module
  for (auto& [name, v] : p) targets.emplace_back(name, v->node()->value);
  for (auto& [name, t] : b) targets.emplace_back(name, *t);

  std::set<std::string> expected;
  std::vector<std::string> missing, unexpected, mismatched;
  for (auto& [name, t] : targets) {
    expected.insert(name);
    auto it = sd.find(name);
    if (it == sd.end()) {
      missing.push_back(name);
      continue;
    }
    CMDR_CHECK(it->second.defined(), "load_state_dict: tensor '", name, "' is undefined");
    if (it->second.shape() != t.shape() && !scalar_compat(it->second, t))
      mismatched.push_back("'" + name + "': checkpoint " + it->second.str() + " vs model " +
                           t.str());
  }
  for (auto& [name, t] : sd)
    if (!expected.count(name)) unexpected.push_back(name);

  if (!mismatched.empty()) {
    std::string msg = "load_state_dict: size mismatch for";
    for (const std::string& m : mismatched) msg += " " + m + ";";
    fail(msg);
  }
  if (strict && (!missing.empty() || !unexpected.empty()))
    fail("load_state_dict (strict): missing keys ", join(missing), ", unexpected keys ",
         join(unexpected));

  for (auto& [name, t] : targets) {
    auto it = sd.find(name);
    if (it == sd.end()) continue;
    t.copy_(it->second.shape() == t.shape() ? it->second : it->second.reshape({}));
  }
  if (missing_out != nullptr) *missing_out = missing;
  return unexpected;
}

void Module::zero_grad() {
  for (auto& [name, v] : named_parameters()) v->zero_grad();
}

int64_t Module::num_parameters() {
  int64_t n = 0;
  for (auto& [name, v] : named_parameters()) n += v->value().numel();
  return n;
}

// ---- layers ------------------------------------------------------------------------------------

Linear::Linear(int64_t in, int64_t out, bool has_bias, Rng& rng) {
  check_positive("Linear", "in_features", in);
  check_positive("Linear", "out_features", out);
  weight = param({out, in});
  if (has_bias) bias = param({out});
  init_uniform_fan_in(weight, bias, in, rng);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}
// x [..., in] -> [..., out]
Var Linear::forward(const Var& x) {
  return linear(x, weight, bias);
}

LayerNorm::LayerNorm(int64_t dim, float eps_) : eps(eps_) {
  check_positive("LayerNorm", "normalized_shape", dim);
  weight = Var(Tensor::ones({dim}), true);
  bias = Var(Tensor::zeros({dim}), true);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}
// x [..., dim] -> same
Var LayerNorm::forward(const Var& x) {
  return layer_norm(x, weight, bias, eps);
}

BatchNorm::BatchNorm(int64_t channels, float eps_, float momentum_)
    : eps(eps_), momentum(momentum_) {
  check_positive("BatchNorm", "num_features", channels);
  weight = Var(Tensor::ones({channels}), true);
  bias = Var(Tensor::zeros({channels}), true);
  running_mean = Tensor::zeros({channels});
  running_var = Tensor::ones({channels});
  num_batches_tracked = Tensor::zeros({});
  register_parameter("weight", weight);
  register_parameter("bias", bias);
  register_buffer("running_mean", running_mean);
  register_buffer("running_var", running_var);
  register_buffer("num_batches_tracked", num_batches_tracked);
}
// x [B, C, L] or [B, C, H, W] -> same. Training: batch stats, running stats updated in place
// and num_batches_tracked += 1 (PyTorch does this even under no_grad); eval: running stats.
Var BatchNorm::forward(const Var& x) {
  const int64_t C = running_mean.numel();
  CMDR_CHECK(x.value().dim() >= 2 && x.value().size(1) == C, "BatchNorm(", C, "): input ",
             x.value().str(), " must be [B, ", C, ", ...]");
  if (training()) num_batches_tracked.data()[0] += 1.0f;
  return batch_norm(x, weight, bias, running_mean, running_var, training(), momentum, eps);
}

Conv1d::Conv1d(int64_t in, int64_t out, int64_t k, int64_t stride_, int64_t pad_, bool has_bias,
               Rng& rng)
    : stride(stride_), pad(pad_) {
  check_positive("Conv1d", "in_channels", in);
  check_positive("Conv1d", "out_channels", out);
  check_positive("Conv1d", "kernel_size", k);
  weight = param({out, in, k});
  if (has_bias) bias = param({out});
  init_uniform_fan_in(weight, bias, in * k, rng);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}
Var Conv1d::forward(const Var& x) {
  return conv1d(x, weight, bias, stride, pad);
}

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride_, int64_t pad_, bool has_bias,
               Rng& rng)
    : stride(stride_), pad(pad_) {
  check_positive("Conv2d", "in_channels", in);
  check_positive("Conv2d", "out_channels", out);
  check_positive("Conv2d", "kernel_size", k);
  weight = param({out, in, k, k});
  if (has_bias) bias = param({out});
  init_uniform_fan_in(weight, bias, in * k * k, rng);
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}
Var Conv2d::forward(const Var& x) {
  return conv2d(x, weight, bias, stride, pad);
}

ConvTranspose1d::ConvTranspose1d(int64_t in, int64_t out, int64_t k, int64_t stride_, int64_t pad_,
                                 bool has_bias, Rng& rng)
    : stride(stride_), pad(pad_) {
  check_positive("ConvTranspose1d", "in_channels", in);
  check_positive("ConvTranspose1d", "out_channels", out);
  check_positive("ConvTranspose1d", "kernel_size", k);
  weight = param({in, out, k});
  if (has_bias) bias = param({out});
  init_uniform_fan_in(weight, bias, out * k, rng);  // weight.size(1)·k, see above
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}
Var ConvTranspose1d::forward(const Var& x) {
  return conv_transpose1d(x, weight, bias, stride, pad);
}

ConvTranspose2d::ConvTranspose2d(int64_t in, int64_t out, int64_t k, int64_t stride_, int64_t pad_,
                                 bool has_bias, Rng& rng)
    : stride(stride_), pad(pad_) {
  check_positive("ConvTranspose2d", "in_channels", in);
  check_positive("ConvTranspose2d", "out_channels", out);
  check_positive("ConvTranspose2d", "kernel_size", k);
  weight = param({in, out, k, k});
  if (has_bias) bias = param({out});
  init_uniform_fan_in(weight, bias, out * k * k, rng);  // weight.size(1)·k², see above
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}
Var ConvTranspose2d::forward(const Var& x) {
  return conv_transpose2d(x, weight, bias, stride, pad);
}

Var Dropout::forward(const Var& x) {
  return dropout(x, p, training(), *rng_);
}

Var Sequential::forward(const Var& x) {
  Var h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    // Linear directly followed by GELU with nothing to record (NoGrad, or no input needs a
    // gradient): one fused op, the GELU a post-op of the GEMM (issue 8 item 2).
    auto* lin = dynamic_cast<Linear*>(layers_[i].get());
    if (lin != nullptr && i + 1 < layers_.size() &&
        dynamic_cast<GELU*>(layers_[i + 1].get()) != nullptr) {
      auto needs = [](const Var& v) { return v.defined() && v.requires_grad(); };
      if (fused_forward_allowed() &&
          (!grad_enabled() || !(needs(h) || needs(lin->weight) || needs(lin->bias)))) {
        h = Var(ops::linear_gelu_forward(h.value(), lin->weight.value(),
                                         lin->bias.defined() ? lin->bias.value() : Tensor()));
        ++i;
        continue;
      }
    }
    h = layers_[i]->forward(h);
  }
  return h;
}

}  // namespace cmdr::ag
