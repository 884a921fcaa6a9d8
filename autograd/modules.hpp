#pragma once
// Modules with PyTorch names. A Module registers its parameters, buffers and children in
// declaration order; state_dict() returns name → tensor exactly as PyTorch names them
// ("projection.2.weight", "conv_decoder.1.running_mean", "...num_batches_tracked").
// Members are named like the checkpoint tensors (llama.cpp style).
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/autograd.hpp"

namespace cmdr::ag {

using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  void train(bool on = true);  // recursive
  void eval() { train(false); }
  bool training() const { return training_; }

  // Trainable parameters, PyTorch-named, in registration order (recursive).
  std::vector<std::pair<std::string, Var*>> named_parameters();
  std::vector<Var*> parameters();
  // Parameters + buffers (running stats; num_batches_tracked stored as a float tensor of
  // shape [] here, written as I64 by the checkpoint writer). The tensors share storage
  // with the module (as PyTorch's state_dict does): clone() them to keep a snapshot.
  StateDict state_dict();
  // The state_dict keys in PyTorch's order (own parameters, own buffers, then children).
  std::vector<std::string> state_dict_keys();
  // Copies values in. strict: every key must be present and no extra keys; shape mismatch
  // always throws naming the tensor and both shapes. Returns the keys it did not use
  // (unexpected keys); in non-strict mode the model keys absent from `sd` are left unchanged
  // and listed in *missing when given. Nothing is copied unless every check passes. As in
  // PyTorch, a one-element 1-dim tensor is accepted for a 0-dim one (num_batches_tracked).
  std::vector<std::string> load_state_dict(const StateDict& sd, bool strict = true,
                                           std::vector<std::string>* missing = nullptr);
  void zero_grad();
  int64_t num_parameters();

 protected:
  void register_parameter(const std::string& name, Var& p);
  void register_buffer(const std::string& name, Tensor& t);
  void register_module(const std::string& name, Module& m);

 private:
  bool training_ = true;
  std::vector<std::pair<std::string, Var*>> params_;
  std::vector<std::pair<std::string, Tensor*>> buffers_;
  std::vector<std::pair<std::string, Module*>> children_;
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Var*>>* p,
               std::vector<std::pair<std::string, Tensor*>>* b);
};

// A layer usable inside Sequential.
class Layer : public Module {
 public:
  virtual Var forward(const Var& x) = 0;
};

// Linear(in→out): weight [out, in], bias [out]. PyTorch default init (kaiming-uniform
// a=√5 → U(−1/√in, 1/√in) for both) from the given rng. x [..., in] → [..., out].
class Linear : public Layer {
 public:
  Linear(int64_t in, int64_t out, bool bias, Rng& rng);
  Var forward(const Var& x) override;
  Var weight, bias;
};

class LayerNorm : public Layer {  // weight=1, bias=0 init
 public:
  explicit LayerNorm(int64_t dim, float eps = 1e-5f);
  Var forward(const Var& x) override;
  Var weight, bias;
  float eps;
};

// BatchNorm over channel axis 1 of [B, C, L] (1d) or [B, C, H, W] (2d).
class BatchNorm : public Layer {
 public:
  explicit BatchNorm(int64_t channels, float eps = 1e-5f, float momentum = 0.1f);
  Var forward(const Var& x) override;
  Var weight, bias;
  Tensor running_mean, running_var, num_batches_tracked;
  float eps, momentum;
};
using BatchNorm1d = BatchNorm;
using BatchNorm2d = BatchNorm;

class Conv1d : public Layer {  // weight [out, in, k]
 public:
  Conv1d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool bias, Rng& rng);
  Var forward(const Var& x) override;
  Var weight, bias;
  int64_t stride, pad;
};
class Conv2d : public Layer {  // weight [out, in, k, k] (extension: square kernels)
 public:
  Conv2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool bias, Rng& rng);
  Var forward(const Var& x) override;
  Var weight, bias;
  int64_t stride, pad;
};
class ConvTranspose1d : public Layer {  // weight [in, out, k]
 public:
  ConvTranspose1d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool bias,
                  Rng& rng);
  Var forward(const Var& x) override;
  Var weight, bias;
  int64_t stride, pad;
};
class ConvTranspose2d : public Layer {  // weight [in, out, k, k]
 public:
  ConvTranspose2d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, bool bias,
                  Rng& rng);
  Var forward(const Var& x) override;
  Var weight, bias;
  int64_t stride, pad;
};

class Dropout : public Layer {  // draws from the rng it was given (seeded by the owner)
 public:
  Dropout(float p, Rng& rng) : p(p), rng_(&rng) {}
  Var forward(const Var& x) override;
  float p;

 private:
  Rng* rng_;
};
class GELU : public Layer {
 public:
  Var forward(const Var& x) override { return gelu(x); }
};
class ReLU : public Layer {
 public:
  Var forward(const Var& x) override { return relu(x); }
};
class Sigmoid : public Layer {
 public:
  Var forward(const Var& x) override { return sigmoid(x); }
};
class Tanh : public Layer {
 public:
  Var forward(const Var& x) override { return tanh(x); }
};

// Sequential with numeric child names "0", "1", ... (PyTorch nn.Sequential).
class Sequential : public Layer {
 public:
  Sequential() = default;
  template <typename L, typename... Args>
  L& add(Args&&... args) {
    auto p = std::make_unique<L>(std::forward<Args>(args)...);
    L& ref = *p;
    register_module(std::to_string(layers_.size()), ref);
    layers_.push_back(std::move(p));
    return ref;
  }
  Var forward(const Var& x) override;
  Layer& operator[](std::size_t i) { return *layers_.at(i); }
  std::size_t size() const { return layers_.size(); }

 private:
  std::vector<std::unique_ptr<Layer>> layers_;
};

}  // namespace cmdr::ag
