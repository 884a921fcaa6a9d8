#pragma once
// Optimizers with PyTorch's update formulas (torch.optim, foreach=False semantics):
//   Adam:  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
//          p ← p − lr · (m / (1−β1ᵗ)) / (sqrt(v / (1−β2ᵗ)) + eps)      (eps outside the sqrt)
//          weight_decay (L2) adds wd·p to g first.
//   AdamW: p ← p·(1 − lr·wd) first, then the Adam step without L2.
//   SGD:   g ← g + wd·p; b ← μ·b + (1−dampening)·g (b = g at the first step); p ← p − lr·b
//          (nesterov: g + μ·b).
// Parameters whose .grad is undefined are skipped (as PyTorch does for grad None).
#include <vector>

#include "autograd/autograd.hpp"

namespace cmdr::ag {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Var*> params) : params_(std::move(params)) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  const std::vector<Var*>& params() const { return params_; }

 protected:
  std::vector<Var*> params_;
};

struct AdamOptions {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.0f;
};

struct AdamConsts;

class Adam : public Optimizer {
 public:
  Adam(std::vector<Var*> params, AdamOptions opt = {}, bool decoupled = false);
  void step() override;
  // Check before commit: computes the step without writing; when every updated parameter
  // and moment (and every parameter/moment the step leaves unchanged) is finite, commits it
  // exactly as step() does and returns Ok; otherwise changes nothing (parameters, moments,
  // step count) and says which kind turned non-finite, parameters taking precedence. So a
  // failed step needs no snapshot to roll back.
  enum class StepCheck { Ok, NonFiniteParameter, NonFiniteState };
  StepCheck step_checked();
  int64_t steps() const { return t_; }
  // State for checkpoints / rollback: exp_avg and exp_avg_sq per parameter.
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  void set_steps(int64_t t) { t_ = t; }
  AdamOptions options;

 private:
  AdamConsts consts(int64_t t) const;  // the float scalars of step number t
  void check_state(const char* name) const;
  bool decoupled_;
  int64_t t_ = 0;
  std::vector<Tensor> m_, v_;
};

class AdamW : public Adam {
 public:
  AdamW(std::vector<Var*> params, AdamOptions opt = {.weight_decay = 1e-2f})
      : Adam(std::move(params), opt, /*decoupled=*/true) {}
};

struct SgdOptions {
  float lr = 1e-2f, momentum = 0.0f, dampening = 0.0f, weight_decay = 0.0f;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<Var*> params, SgdOptions opt = {});
  void step() override;
  SgdOptions options;

 private:
  std::vector<Tensor> buf_;
};

}  // namespace cmdr::ag
