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
#include "engine/profiler.hpp"

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

struct AdamConsts {
  bool decoupled, has_wd;
  float beta1, one_m_beta1, beta2, one_m_beta2, wd, decay, bc2_sqrt, eps, neg_step;
};

namespace {

// The updated (p, m, v) of one element. Shared by the committing update and the dry run of
// Adam::step_checked, so the values checked are exactly the values later written.
struct AdamElem {
  float p, m, v;
};
template <bool kDecoupled, bool kHasWd>
inline AdamElem adam_elem(float gj, float pj, float mj0, float vj0, const AdamConsts& k) {
  if constexpr (kDecoupled && kHasWd) pj = pj * k.decay;  // param.mul_(1 - lr * weight_decay)
  if constexpr (!kDecoupled && kHasWd) gj = axpy(pj, k.wd, gj);  // grad.add(param, alpha=wd)
  const float mj = axpy(gj, k.one_m_beta1, mj0 * k.beta1);       // exp_avg.mul_(b1).add_(g, 1-b1)
  const float vj = std::fma(k.one_m_beta2 * gj, gj, vj0 * k.beta2);  // .addcmul_(g, g, 1-b2)
  const float denom = std::sqrt(vj) / k.bc2_sqrt + k.eps;  // (sqrt(v) / bc2_sqrt).add_(eps)
  return {pj + k.neg_step * mj / denom, mj, vj};  // param.addcdiv_(exp_avg, denom, -step_size)
}

// One Adam/AdamW update over n elements; elementwise, so the static OpenMP split cannot
// change any result. sqrt and / are correctly rounded in SIMD too (optim.cpp is built
// with -fno-math-errno so the loop vectorises; that flag changes no value). The two
// weight-decay flavours are template parameters so the loop body has no branches.
template <bool kDecoupled, bool kHasWd>
void adam_update_t(const float* __restrict g, float* __restrict p, float* __restrict m,
                   float* __restrict v, int64_t n, const AdamConsts& k) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t j = 0; j < n; ++j) {
    const AdamElem e = adam_elem<kDecoupled, kHasWd>(g[j], p[j], m[j], v[j], k);
    m[j] = e.m;
    v[j] = e.v;
    p[j] = e.p;
  }
}

void adam_update(const float* g, float* p, float* m, float* v, int64_t n, const AdamConsts& k) {
  if (!k.has_wd) return adam_update_t<false, false>(g, p, m, v, n, k);
  if (k.decoupled) return adam_update_t<true, true>(g, p, m, v, n, k);
  return adam_update_t<false, true>(g, p, m, v, n, k);
}

// Dry run of adam_update: writes nothing; bit 0 of the result = some updated parameter is
// non-finite, bit 1 = some updated moment is. m, v may be null (state not created yet:
// zeros). Flags are OR-reduced, so the thread split cannot change the answer.
template <bool kDecoupled, bool kHasWd>
int adam_check_t(const float* __restrict g, const float* __restrict p, const float* __restrict m,
                 const float* __restrict v, int64_t n, const AdamConsts& k) {
  int bad_p = 0, bad_s = 0;
#pragma omp parallel for schedule(static) reduction(| : bad_p, bad_s) if (n > (1 << 16))
  for (int64_t j = 0; j < n; ++j) {
    const AdamElem e =
        adam_elem<kDecoupled, kHasWd>(g[j], p[j], m ? m[j] : 0.0f, v ? v[j] : 0.0f, k);
    bad_p |= !std::isfinite(e.p);
    bad_s |= !(std::isfinite(e.m) && std::isfinite(e.v));
  }
  return bad_p | (bad_s << 1);
}

int adam_check(const float* g, const float* p, const float* m, const float* v, int64_t n,
               const AdamConsts& k) {
  if (!k.has_wd) return adam_check_t<false, false>(g, p, m, v, n, k);
  if (k.decoupled) return adam_check_t<true, true>(g, p, m, v, n, k);
  return adam_check_t<false, true>(g, p, m, v, n, k);
}

// Bit 0 / bit 1 as adam_check for values the step leaves unchanged.
int finite_flags(const Tensor& p, const Tensor& m, const Tensor& v) {
  auto bad = [](const Tensor& t) {
    if (!t.defined()) return false;
    const Tensor c = t.contiguous();
    const float* x = c.data();
    for (int64_t i = 0; i < c.numel(); ++i)
      if (!std::isfinite(x[i])) return true;
    return false;
  };
  return static_cast<int>(bad(p)) | (static_cast<int>(bad(m) || bad(v)) << 1);
}

struct SgdConsts {
  bool has_wd, has_momentum, first, nesterov;
  float wd, mu, one_m_damp, neg_lr;
};

// One SGD update over n elements (buf unused without momentum); elementwise as above.
void sgd_update(const float* g, float* p, float* buf, int64_t n, const SgdConsts& k) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t j = 0; j < n; ++j) {
    float d = g[j];                         // d_p; the .grad itself is never modified
    if (k.has_wd) d = axpy(p[j], k.wd, d);  // d_p = d_p.add(param, alpha=weight_decay)
    if (k.has_momentum) {
      // first step: buf = clone(d_p); then buf.mul_(momentum).add_(d_p, alpha=1-dampening)
      const float b = k.first ? d : axpy(d, k.one_m_damp, buf[j] * k.mu);
      buf[j] = b;
      d = k.nesterov ? axpy(b, k.mu, d) : b;  // d_p.add(buf, alpha=momentum) or buf
    }
    p[j] = axpy(d, k.neg_lr, p[j]);  // param.add_(d_p, alpha=-lr)
  }
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
AdamConsts Adam::consts(int64_t t) const {
  const double lr = options.lr, beta1 = options.beta1, beta2 = options.beta2;
  const double wd = options.weight_decay, eps = options.eps;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(t));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(t));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  // The float32 values ATen uses for these Python scalars.
  AdamConsts k;
  k.decoupled = decoupled_;
  k.has_wd = wd != 0.0;
  k.beta1 = static_cast<float>(beta1);
  k.one_m_beta1 = static_cast<float>(1.0 - beta1);
  k.beta2 = static_cast<float>(beta2);
  k.one_m_beta2 = static_cast<float>(1.0 - beta2);
  k.wd = static_cast<float>(wd);
  k.decay = static_cast<float>(1.0 - lr * wd);
  k.bc2_sqrt = static_cast<float>(bias_correction2_sqrt);
  k.eps = static_cast<float>(eps);
  k.neg_step = static_cast<float>(-step_size);
  return k;
}

void Adam::check_state(const char* name) const {
  CMDR_CHECK(m_.empty() || (m_.size() == params_.size() && v_.size() == params_.size()), name,
             ": state holds ", m_.size(), "/", v_.size(), " tensors for ", params_.size(),
             " parameters");
  for (std::size_t i = 0; i < m_.size(); ++i)
    CMDR_CHECK(m_[i].shape() == params_[i]->value().shape() &&
                   v_[i].shape() == params_[i]->value().shape(),
               name, ": state for parameter ", i, " has shape ", m_[i].str(),
               " but the parameter is ", params_[i]->value().str());
}

void Adam::step() {
  const char* name = decoupled_ ? "AdamW" : "Adam";
  if (m_.empty()) {
    for (Var* p : params_) {
      m_.push_back(Tensor::zeros(p->value().shape()));
      v_.push_back(Tensor::zeros(p->value().shape()));
    }
  }
  check_state(name);
  ++t_;
  int64_t total = 0;
  for (Var* p : params_) total += p->value().numel();
  // reads g, p, m, v and writes p, m, v
  ProfileScope ps(decoupled_ ? "adamw.step" : "adam.step", 0.0, 28.0 * static_cast<double>(total));
  const AdamConsts k = consts(t_);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Var* p = params_[i];
    if (!p->grad().defined()) continue;
    Tensor g = grad_of(p, name);
    float* pv = param_data(p, name);
    adam_update(g.data(), pv, m_[i].data(), v_[i].data(), p->value().numel(), k);
  }
}

Adam::StepCheck Adam::step_checked() {
  const char* name = decoupled_ ? "AdamW" : "Adam";
  check_state(name);
  int64_t total = 0;
  for (Var* p : params_) total += p->value().numel();
  int flags = 0;
  {
    // dry run: reads g, p, m, v
    ProfileScope ps(decoupled_ ? "adamw.check" : "adam.check", 0.0,
                    16.0 * static_cast<double>(total));
    const AdamConsts k = consts(t_ + 1);
    const bool has_state = !m_.empty();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      Var* p = params_[i];
      const Tensor mi = has_state ? m_[i] : Tensor(), vi = has_state ? v_[i] : Tensor();
      if (!p->grad().defined()) {  // unchanged by the step, but part of the verdict
        flags |= finite_flags(p->value(), mi, vi);
        continue;
      }
      Tensor g = grad_of(p, name);
      const float* pv = param_data(p, name);
      flags |= adam_check(g.data(), pv, has_state ? mi.data() : nullptr,
                          has_state ? vi.data() : nullptr, p->value().numel(), k);
    }
  }
  if (flags & 1) return StepCheck::NonFiniteParameter;
  if (flags & 2) return StepCheck::NonFiniteState;
  step();
  return StepCheck::Ok;
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
  int64_t total = 0;
  for (Var* p : params_) total += p->value().numel();
  ProfileScope ps("sgd.step", 0.0, 20.0 * static_cast<double>(total));  // g, p, b in; p, b out
  const double lr = options.lr, mu = options.momentum, wd = options.weight_decay;
  SgdConsts k;
  k.has_wd = wd != 0.0;
  k.has_momentum = mu != 0.0;
  k.nesterov = options.nesterov;
  k.wd = static_cast<float>(wd);
  k.mu = static_cast<float>(mu);
  k.one_m_damp = static_cast<float>(1.0 - static_cast<double>(options.dampening));
  k.neg_lr = static_cast<float>(-lr);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Var* p = params_[i];
    if (!p->grad().defined()) continue;
    Tensor g = grad_of(p, "SGD");
    float* pv = param_data(p, "SGD");
    k.first = k.has_momentum && !buf_[i].defined();
    if (k.first) buf_[i] = Tensor::empty(p->value().shape());
    CMDR_CHECK(!k.has_momentum || buf_[i].shape() == p->value().shape(), "SGD: momentum buffer ",
               buf_[i].str(), " vs parameter ", p->value().str());
    sgd_update(g.data(), pv, k.has_momentum ? buf_[i].data() : nullptr, p->value().numel(), k);
  }
}

}  // namespace cmdr::ag
