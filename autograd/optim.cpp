// Adam / AdamW / SGD with torch.optim's single-tensor (foreach=False) update, operation by
// operation (torch 1.13, torch/optim/adam.py _single_tensor_adam, sgd.py _single_tensor_sgd):
//   scalars (lr, betas, bias corrections, step size) are computed in double as Python does,
//   then cast to float where they meet a float32 tensor, as ATen does for a Python scalar.
// ATen's `t.add_(other, alpha=a)` is vectorised as fmadd(other, a, t) — one fused
// multiply-add on FMA machines — and Debian's torch (GCC, contraction on) also fuses
// addcmul's v + (s·g)·g into fma(s·g, g, v); addcdiv's p + (s·m)/d cannot fuse. We write
// those fma calls explicitly (our build has -ffp-contract=off, so nothing else is fused):
// with them, tests/autograd/test_optim.cpp reproduces torch's parameters bit for bit.
#include "autograd/optim.hpp"

#include <cmath>

#include "engine/error.hpp"

namespace cmdr::ag {

namespace {

// ATen add_ with alpha: self + alpha·other, fused.
inline float axpy(float other, float alpha, float self) {
  return std::fma(other, alpha, self);
}

// The parameter's value and gradient as contiguous float arrays (both are contiguous in
// practice: parameters are created contiguous and gradients are accumulated contiguous).
float* param_data(Var* p, const char* opt) {
  Tensor& v = p->node()->value;
  CMDR_CHECK(v.is_contiguous(), opt, ": parameter ", v.str(), " is not contiguous");
  return v.data();
}

Tensor grad_of(Var* p, const char* opt) {
  const Tensor& g = p->grad();
  CMDR_CHECK(g.shape() == p->value().shape(), opt, ": gradient ", g.str(), " vs parameter ",
             p->value().str());
  return g.contiguous();
}

}  // namespace

void Optimizer::zero_grad() {
  for (Var* p : params_) p->zero_grad();
}

Adam::Adam(std::vector<Var*> params, AdamOptions opt, bool decoupled)
    : Optimizer(std::move(params)), options(opt), decoupled_(decoupled) {
  const char* name = decoupled ? "AdamW" : "Adam";
  CMDR_CHECK(options.lr >= 0.0f, name, ": invalid learning rate ", options.lr);
  CMDR_CHECK(options.eps >= 0.0f, name, ": invalid eps ", options.eps);
  CMDR_CHECK(options.beta1 >= 0.0f && options.beta1 < 1.0f, name, ": invalid beta1 ",
             options.beta1);
  CMDR_CHECK(options.beta2 >= 0.0f && options.beta2 < 1.0f, name, ": invalid beta2 ",
             options.beta2);
  CMDR_CHECK(options.weight_decay >= 0.0f, name, ": invalid weight_decay ", options.weight_decay);
  for (std::size_t i = 0; i < params_.size(); ++i)
    CMDR_CHECK(params_[i] != nullptr && params_[i]->defined(), name, ": parameter ", i,
               " is undefined");
}

// One step for every parameter with a gradient. The step counter is shared by all
// parameters (torch keeps one per parameter; they agree whenever every parameter receives a
// gradient at every step, which is how our trainers use it).
void Adam::step() {
  const char* name = decoupled_ ? "AdamW" : "Adam";
  if (m_.empty()) {
    for (Var* p : params_) {
      m_.push_back(Tensor::zeros(p->value().shape()));
      v_.push_back(Tensor::zeros(p->value().shape()));
    }
  }
  CMDR_CHECK(m_.size() == params_.size() && v_.size() == params_.size(), name, ": state holds ",
             m_.size(), "/", v_.size(), " tensors for ", params_.size(), " parameters");
  ++t_;
  const double lr = options.lr, beta1 = options.beta1, beta2 = options.beta2;
  const double wd = options.weight_decay, eps = options.eps;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(t_));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(t_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  // The float32 values ATen uses for these Python scalars.
  const float f_beta1 = static_cast<float>(beta1), f_1m_beta1 = static_cast<float>(1.0 - beta1);
  const float f_beta2 = static_cast<float>(beta2), f_1m_beta2 = static_cast<float>(1.0 - beta2);
  const float f_wd = static_cast<float>(wd);
  const float f_decay = static_cast<float>(1.0 - lr * wd);
  const float f_bc2_sqrt = static_cast<float>(bias_correction2_sqrt);
  const float f_eps = static_cast<float>(eps);
  const float f_neg_step = static_cast<float>(-step_size);

  for (std::size_t i = 0; i < params_.size(); ++i) {
    Var* p = params_[i];
    if (!p->grad().defined()) continue;
    Tensor g = grad_of(p, name);
    float* pv = param_data(p, name);
    CMDR_CHECK(m_[i].shape() == p->value().shape() && v_[i].shape() == p->value().shape(), name,
               ": state for parameter ", i, " has shape ", m_[i].str(), " but the parameter is ",
               p->value().str());
    const float* gv = g.data();
    float* m = m_[i].data();
    float* v = v_[i].data();
    const int64_t n = p->value().numel();
    for (int64_t j = 0; j < n; ++j) {
      float gj = gv[j];
      if (decoupled_) {
        if (wd != 0.0) pv[j] = pv[j] * f_decay;  // param.mul_(1 - lr * weight_decay)
      } else if (wd != 0.0) {
        gj = axpy(pv[j], f_wd, gj);  // grad = grad.add(param, alpha=weight_decay)
      }
      m[j] = axpy(gj, f_1m_beta1, m[j] * f_beta1);           // exp_avg.mul_(b1).add_(g, alpha=1-b1)
      v[j] = std::fma(f_1m_beta2 * gj, gj, v[j] * f_beta2);  // mul_(b2).addcmul_(g, g, 1-b2)
      const float denom = std::sqrt(v[j]) / f_bc2_sqrt + f_eps;  // (sqrt(v)/bc2_sqrt).add_(eps)
      pv[j] = pv[j] + f_neg_step * m[j] / denom;  // param.addcdiv_(m, denom, -step_size)
    }
  }
}

SGD::SGD(std::vector<Var*> params, SgdOptions opt) : Optimizer(std::move(params)), options(opt) {
  CMDR_CHECK(options.lr >= 0.0f, "SGD: invalid learning rate ", options.lr);
  CMDR_CHECK(options.momentum >= 0.0f, "SGD: invalid momentum ", options.momentum);
  CMDR_CHECK(options.weight_decay >= 0.0f, "SGD: invalid weight_decay ", options.weight_decay);
  CMDR_CHECK(!options.nesterov || (options.momentum > 0.0f && options.dampening == 0.0f),
             "SGD: nesterov momentum requires a momentum and zero dampening (momentum ",
             options.momentum, ", dampening ", options.dampening, ")");
  for (std::size_t i = 0; i < params_.size(); ++i)
    CMDR_CHECK(params_[i] != nullptr && params_[i]->defined(), "SGD: parameter ", i,
               " is undefined");
}

void SGD::step() {
  if (buf_.empty()) buf_.resize(params_.size());
  const double lr = options.lr, mu = options.momentum, wd = options.weight_decay;
  const float f_wd = static_cast<float>(wd), f_mu = static_cast<float>(mu);
  const float f_1m_damp = static_cast<float>(1.0 - static_cast<double>(options.dampening));
  const float f_neg_lr = static_cast<float>(-lr);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Var* p = params_[i];
    if (!p->grad().defined()) continue;
    Tensor g = grad_of(p, "SGD");
    float* pv = param_data(p, "SGD");
    const int64_t n = p->value().numel();
    // d_p = grad (+ weight_decay·param): a fresh copy, the .grad itself is never modified.
    std::vector<float> d(g.data(), g.data() + n);
    if (wd != 0.0)
      for (int64_t j = 0; j < n; ++j) d[j] = axpy(pv[j], f_wd, d[j]);
    if (mu != 0.0) {
      if (!buf_[i].defined()) {
        buf_[i] = Tensor::from_vector(p->value().shape(), d);  // torch.clone(d_p)
      } else {
        float* b = buf_[i].data();
        for (int64_t j = 0; j < n; ++j) b[j] = axpy(d[j], f_1m_damp, b[j] * f_mu);
      }
      const float* b = buf_[i].data();
      if (options.nesterov) {
        for (int64_t j = 0; j < n; ++j) d[j] = axpy(b[j], f_mu, d[j]);  // d_p.add(buf, alpha=mu)
      } else {
        for (int64_t j = 0; j < n; ++j) d[j] = b[j];
      }
    }
    for (int64_t j = 0; j < n; ++j) pv[j] = axpy(d[j], f_neg_lr, pv[j]);  // add_(d_p, alpha=-lr)
  }
}

}  // namespace cmdr::ag
