// Reverse-mode tape over cmdr::ops (see autograd.hpp for the contract).
//
// Every differentiable function follows the same shape:
//   1. call ops::<op>_forward on the input values;
//   2. if recording (grad mode on and some input requires grad), create a Node holding the
//      output, the input nodes and a closure that calls ops::<op>_backward on tensors it
//      captured (never on Vars or Nodes, so the graph has no cycles);
//   3. the closure computes only the gradients whose inputs require grad.
// backward() orders the graph with an iterative DFS (no recursion depth limit), runs the
// closures root-first and sums gradients per node in a fixed order (the order of the inputs
// lists), so two identical runs produce bit-identical gradients.
#include "autograd/autograd.hpp"

#include <cmath>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "engine/error.hpp"
#include "engine/profiler.hpp"

namespace cmdr::ag {

namespace {

thread_local bool t_grad_enabled = true;
thread_local int t_checkpoint_depth = 0;  // ag::checkpoint forwards running in this thread

using Grads = std::vector<Tensor>;
using BackwardFn = std::function<Grads(const Tensor&)>;

bool needs(const Var& v) {
  return v.defined() && v.requires_grad();
}

bool should_record(std::initializer_list<const Var*> inputs) {
  if (!t_grad_enabled) return false;
  for (const Var* v : inputs)
    if (needs(*v)) return true;
  return false;
}

// A recorded result: non-leaf node with the given inputs (undefined Vars become nullptr
// entries so the closure's i-th gradient always belongs to the i-th input).
Var make_result(Tensor value, ops::Op op, const char* view_name, const std::vector<Var>& inputs,
                BackwardFn fn) {
  auto n = std::make_shared<Node>();
  n->value = std::move(value);
  n->requires_grad = true;
  n->is_leaf = false;
  n->op = op;
  n->view_name = view_name;
  n->inputs.reserve(inputs.size());
  for (const Var& v : inputs) n->inputs.push_back(v.defined() ? v.node() : nullptr);
  n->backward_fn = std::move(fn);
  return Var::from_node(std::move(n));
}

Tensor value_or_undef(const Var& v) {
  return v.defined() ? v.value() : Tensor();
}

// out = a + b for equal shapes, as a fresh contiguous tensor (gradient accumulation).
Tensor add_same_shape(const Tensor& a, const Tensor& b) {
  ProfileScope ps("grad_accumulate", static_cast<double>(a.numel()), 12.0 * a.numel());
  Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty(a.shape());
  const float* pa = ac.data();
  const float* pb = bc.data();
  float* po = out.data();
  const int64_t n = out.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))  // elementwise: deterministic
  for (int64_t i = 0; i < n; ++i) po[i] = pa[i] + pb[i];
  return out;
}

// .grad of a leaf (or retained interior node): the first contribution is copied so the
// stored gradient owns its memory; later ones are added in place.
void accumulate_into(Tensor& dst, const Tensor& g, const Node& n) {
  ProfileScope ps("grad_accumulate", static_cast<double>(g.numel()), 12.0 * g.numel());
  if (!dst.defined()) {
    dst = g.clone();
    return;
  }
  CMDR_CHECK(dst.shape() == g.shape(), "backward: accumulated gradient of ", n.name(),
             " has shape ", dst.str(), " but the new contribution has shape ", g.str());
  if (!dst.is_contiguous()) dst = dst.contiguous();
  Tensor gc = g.contiguous();
  float* pd = dst.data();
  const float* pg = gc.data();
  const int64_t count = dst.numel();
#pragma omp parallel for schedule(static) if (count > (1 << 16))
  for (int64_t i = 0; i < count; ++i) pd[i] += pg[i];
}

}  // namespace

// ---- Node / Var -------------------------------------------------------------------------------

Node::~Node() {
  // Default destruction of a chain a->b->c->... would recurse once per node; unlink the
  // inputs we are the last owner of and destroy them from an explicit stack instead.
  std::vector<std::shared_ptr<Node>> stack = std::move(inputs);
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n && n.use_count() == 1) {
      for (auto& c : n->inputs) stack.push_back(std::move(c));
      n->inputs.clear();
    }
  }
}

std::string Node::name() const {
  if (op != ops::Op::kCount) return ops::op_name(op);
  if (view_name != nullptr) return view_name;
  return "leaf";
}

Var::Var(Tensor value, bool requires_grad) : node_(std::make_shared<Node>()) {
  CMDR_CHECK(value.defined(), "Var: cannot wrap an undefined tensor");
  node_->value = std::move(value);
  node_->requires_grad = requires_grad;
}

Var Var::from_node(std::shared_ptr<Node> n) {
  Var v;
  v.node_ = std::move(n);
  return v;
}

const Tensor& Var::value() const {
  CMDR_CHECK(node_ != nullptr, "Var::value: undefined Var");
  return node_->value;
}

Tensor& Var::grad() {
  CMDR_CHECK(node_ != nullptr, "Var::grad: undefined Var");
  return node_->grad;
}

bool Var::requires_grad() const {
  return node_ != nullptr && node_->requires_grad;
}

void Var::set_requires_grad(bool on) {
  CMDR_CHECK(node_ != nullptr, "Var::set_requires_grad: undefined Var");
  CMDR_CHECK(node_->is_leaf,
             "Var::set_requires_grad: only leaves can change requires_grad; this is ",
             "the result of ", node_->name(), " ", node_->value.str());
  node_->requires_grad = on;
}

void Var::retain_grad() {
  CMDR_CHECK(node_ != nullptr, "Var::retain_grad: undefined Var");
  CMDR_CHECK(node_->requires_grad, "Var::retain_grad: ", node_->name(), " ", node_->value.str(),
             " does not require grad");
  node_->retain_grad = true;  // leaves keep their .grad anyway
}

void Var::zero_grad() {
  CMDR_CHECK(node_ != nullptr, "Var::zero_grad: undefined Var");
  node_->grad = Tensor();
}

// ---- grad mode ---------------------------------------------------------------------------------

bool grad_enabled() {
  return t_grad_enabled;
}
bool fused_forward_allowed() {
  return t_checkpoint_depth == 0;
}

NoGrad::NoGrad() : prev_(t_grad_enabled) {
  t_grad_enabled = false;
}
NoGrad::~NoGrad() {
  t_grad_enabled = prev_;
}

// ---- backward ----------------------------------------------------------------------------------

void backward(const Var& root, bool retain_graph) {
  CMDR_CHECK(root.defined(), "backward: undefined Var");
  CMDR_CHECK(root.value().numel() == 1, "backward: the root (", root.node()->name(), ") has shape ",
             root.value().str(), "; an implicit seed gradient needs a single-element output; pass ",
             "a seed of that shape");
  backward(root, Tensor::ones(root.value().shape()), retain_graph);
}

void backward(const Var& root, const Tensor& seed, bool retain_graph) {
  CMDR_CHECK(root.defined(), "backward: undefined Var");
  Node* r = root.node().get();
  CMDR_CHECK(r->requires_grad, "backward: the root (", r->name(), " ", r->value.str(),
             ") does not require grad: it was computed inside NoGrad, or from inputs none of ",
             "which requires grad");
  CMDR_CHECK(seed.defined() && seed.shape() == r->value.shape(), "backward: seed gradient ",
             seed.defined() ? seed.str() : std::string("(undefined)"), " vs root ", r->value.str(),
             " (", r->name(), ")");

  // Post-order DFS with an explicit stack; reversed, every node precedes its inputs. The
  // order owns one reference per node, so nodes can be unlinked while it is walked.
  std::vector<std::shared_ptr<Node>> order;
  std::unordered_set<Node*> visited{r};
  std::vector<std::pair<std::shared_ptr<Node>, std::size_t>> stack{{root.node(), 0}};
  while (!stack.empty()) {
    Node* n = stack.back().first.get();
    std::size_t& i = stack.back().second;
    if (i < n->inputs.size()) {
      const std::shared_ptr<Node>& c = n->inputs[i++];
      if (c != nullptr && c->requires_grad && visited.insert(c.get()).second)
        stack.push_back({c, 0});
    } else {
      order.push_back(std::move(stack.back().first));
      stack.pop_back();
    }
  }

  // Refuse before touching any gradient, so a failed call leaves .grad unchanged.
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const Node* n = it->get();  // root first: the error names the op nearest the root
    CMDR_CHECK(n->is_leaf || !n->released, "backward: trying to backward through the ",
               "graph a second time: the saved tensors of ", n->name(), " (output ", n->value.str(),
               ") were freed by a previous backward; pass retain_graph=true to ",
               "the first backward");
  }

  std::unordered_map<Node*, Tensor> pending;
  pending.emplace(r, seed);
  for (std::size_t idx = order.size(); idx-- > 0;) {
    Node* n = order[idx].get();
    auto p = pending.find(n);
    if (p != pending.end()) {  // else no gradient flowed here
      Tensor g = std::move(p->second);
      pending.erase(p);
      if (n->is_leaf) {
        accumulate_into(n->grad, g, *n);
      } else {
        if (n->retain_grad) accumulate_into(n->grad, g, *n);
        CMDR_CHECK(static_cast<bool>(n->backward_fn), "backward: ", n->name(), " has no backward");
        Grads gi = n->backward_fn(g);
        CMDR_CHECK(gi.size() == n->inputs.size(), "backward: ", n->name(), " returned ", gi.size(),
                   " gradients for ", n->inputs.size(), " inputs");
        for (std::size_t k = 0; k < gi.size(); ++k) {
          Node* c = n->inputs[k].get();
          if (c == nullptr || !c->requires_grad || !gi[k].defined()) continue;
          CMDR_CHECK(gi[k].shape() == c->value.shape(), "backward: ", n->name(),
                     " produced a gradient of shape ", gi[k].str(), " for input ", k, " of shape ",
                     c->value.str());
          auto [slot, inserted] = pending.try_emplace(c, gi[k]);
          if (!inserted) slot->second = add_same_shape(slot->second, gi[k]);
        }
      }
    }
    if (!retain_graph && !n->is_leaf) {
      // Every consumer of n came before it, so n receives no more gradient: free its saved
      // tensors and unlink it now, and drop the order's reference — an interior node
      // nobody else holds a Var to (its activation) is freed here, during the backward
      // rather than after it (issue 8: the backward's peak). Its inputs stay alive through
      // their own entries in `order`. A released node keeps its flag: backward through it
      // again throws.
      n->backward_fn = nullptr;
      n->released = true;
      n->inputs.clear();
    }
    order[idx].reset();
  }
}

// ---- recomputation -----------------------------------------------------------------------------

Var checkpoint(const std::function<Var(const Var&)>& f, const Var& x, Rng* rng) {
  CMDR_CHECK(x.defined(), "checkpoint: undefined input");
  if (!t_grad_enabled) return f(x);
  const Rng before = rng ? *rng : Rng();
  Tensor y;
  {
    // Unrecorded, but with the recorded path's kernels (no fused forwards): the output must
    // be bit-identical to the recomputation the backward differentiates.
    NoGrad ng;
    struct Depth {
      Depth() { ++t_checkpoint_depth; }
      ~Depth() { --t_checkpoint_depth; }
    } depth;
    y = f(Var(x.value())).value();
  }
  const Tensor xv = x.value();
  const bool nx = needs(x);
  return make_result(std::move(y), ops::Op::kCount, "checkpoint", {x},
                     [f, xv, nx, rng, before](const Tensor& dy) {
                       Var xi(xv, nx);
                       Var yi;
                       {
                         // Record the recomputation (the backward may run without grad mode).
                         struct GradOn {
                           bool prev = t_grad_enabled;
                           GradOn() { t_grad_enabled = true; }
                           ~GradOn() { t_grad_enabled = prev; }
                         } on;
                         const Rng after = rng ? *rng : Rng();
                         if (rng) *rng = before;
                         try {
                           yi = f(xi);
                         } catch (...) {
                           if (rng) *rng = after;
                           throw;
                         }
                         if (rng) *rng = after;
                       }
                       CMDR_CHECK(yi.shape() == dy.shape(), "checkpoint: the recomputation gave ",
                                  yi.value().str(), ", the forward ", dy.str());
                       if (yi.requires_grad()) backward(yi, dy);
                       return Grads{nx ? xi.grad() : Tensor()};
                     });
}

// ---- dense -------------------------------------------------------------------------------------

Var linear(const Var& x, const Var& weight, const Var& bias) {
  Tensor xv = x.value(), wv = weight.value();
  Tensor y = ops::linear_forward(xv, wv, value_or_undef(bias));
  if (!should_record({&x, &weight, &bias})) return Var(y);
  const bool nx = needs(x), nw = needs(weight), nb = needs(bias);
  return make_result(y, ops::Op::Linear, nullptr, {x, weight, bias}, [=](const Tensor& dy) {
    ops::LinearGrads g = ops::linear_backward(dy, xv, wv, nx, nw, nb);
    return Grads{g.dx, g.dweight, g.dbias};
  });
}

Var matmul(const Var& a, const Var& b, bool trans_a, bool trans_b) {
  Tensor av = a.value(), bv = b.value();
  Tensor y = ops::matmul_forward(av, bv, trans_a, trans_b);
  if (!should_record({&a, &b})) return Var(y);
  const bool na = needs(a), nb = needs(b);
  return make_result(y, ops::Op::Matmul, nullptr, {a, b}, [=](const Tensor& dy) {
    ops::MatmulGrads g = ops::matmul_backward(dy, av, bv, trans_a, trans_b, na, nb);
    return Grads{g.da, g.db};
  });
}

Var bmm(const Var& a, const Var& b, bool trans_a, bool trans_b) {
  Tensor av = a.value(), bv = b.value();
  Tensor y = ops::bmm_forward(av, bv, trans_a, trans_b);
  if (!should_record({&a, &b})) return Var(y);
  const bool na = needs(a), nb = needs(b);
  return make_result(y, ops::Op::BatchedMatmul, nullptr, {a, b}, [=](const Tensor& dy) {
    ops::MatmulGrads g = ops::bmm_backward(dy, av, bv, trans_a, trans_b, na, nb);
    return Grads{g.da, g.db};
  });
}

// ---- convolutions ------------------------------------------------------------------------------

namespace {
using ConvFwd = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t);
using ConvBwd = ops::ConvGrads (*)(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t,
                                   bool, bool, bool);
Var conv_generic(ops::Op op, ConvFwd fwd, ConvBwd bwd, const Var& x, const Var& w, const Var& b,
                 int64_t stride, int64_t pad) {
  Tensor xv = x.value(), wv = w.value();
  Tensor y = fwd(xv, wv, value_or_undef(b), stride, pad);
  if (!should_record({&x, &w, &b})) return Var(y);
  const bool nx = needs(x), nw = needs(w), nb = needs(b);
  return make_result(y, op, nullptr, {x, w, b}, [=](const Tensor& dy) {
    ops::ConvGrads g = bwd(dy, xv, wv, stride, pad, nx, nw, nb);
    return Grads{g.dx, g.dweight, g.dbias};
  });
}
}  // namespace

Var conv1d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad) {
  return conv_generic(ops::Op::Conv1d, &ops::conv1d_forward, &ops::conv1d_backward, x, w, b, stride,
                      pad);
}
Var conv2d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad) {
  return conv_generic(ops::Op::Conv2d, &ops::conv2d_forward, &ops::conv2d_backward, x, w, b, stride,
                      pad);
}
Var conv_transpose1d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad) {
  return conv_generic(ops::Op::ConvTranspose1d, &ops::conv_transpose1d_forward,
                      &ops::conv_transpose1d_backward, x, w, b, stride, pad);
}
Var conv_transpose2d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad) {
  return conv_generic(ops::Op::ConvTranspose2d, &ops::conv_transpose2d_forward,
                      &ops::conv_transpose2d_backward, x, w, b, stride, pad);
}

// ---- normalisation ---------------------------------------------------------------------------

namespace {
// Backward of eval-mode batch norm, y = (x − rm)·invstd·w + b with constant running stats:
//   dx = dy·w·invstd,  dw = Σ dy·(x − rm)·invstd,  db = Σ dy   (sums over all but C).
// x [B, C, *]; sums in double so the result does not depend on the traversal.
Grads batch_norm_eval_backward(const Tensor& dy_in, const Tensor& x_in, const Tensor& w,
                               const Tensor& rm, const Tensor& rv, float eps, bool nx, bool nw,
                               bool nb) {
  Tensor dy = dy_in.contiguous(), x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), S = x.numel() / (B * C);
  std::vector<float> invstd(static_cast<std::size_t>(C));
  Tensor rmc = rm.contiguous(), rvc = rv.contiguous();
  for (int64_t c = 0; c < C; ++c) invstd[c] = 1.0f / std::sqrt(rvc.data()[c] + eps);
  Tensor dx, dw, db;
  if (nx) {
    dx = Tensor::empty(x.shape());
    Tensor wc = w.defined() ? w.contiguous() : Tensor();
    for (int64_t bi = 0; bi < B; ++bi)
      for (int64_t c = 0; c < C; ++c) {
        const float k = (wc.defined() ? wc.data()[c] : 1.0f) * invstd[c];
        const float* g = dy.data() + (bi * C + c) * S;
        float* o = dx.data() + (bi * C + c) * S;
        for (int64_t s = 0; s < S; ++s) o[s] = g[s] * k;
      }
  }
  if (nw || nb) {
    std::vector<double> sw(static_cast<std::size_t>(C), 0.0), sb(static_cast<std::size_t>(C), 0.0);
    for (int64_t bi = 0; bi < B; ++bi)
      for (int64_t c = 0; c < C; ++c) {
        const float* g = dy.data() + (bi * C + c) * S;
        const float* xs = x.data() + (bi * C + c) * S;
        for (int64_t s = 0; s < S; ++s) {
          sb[c] += g[s];
          sw[c] +=
              static_cast<double>(g[s]) * (static_cast<double>(xs[s]) - rmc.data()[c]) * invstd[c];
        }
      }
    if (nw) {
      dw = Tensor::empty({C});
      for (int64_t c = 0; c < C; ++c) dw.data()[c] = static_cast<float>(sw[c]);
    }
    if (nb) {
      db = Tensor::empty({C});
      for (int64_t c = 0; c < C; ++c) db.data()[c] = static_cast<float>(sb[c]);
    }
  }
  return Grads{dx, dw, db};
}
}  // namespace

Var batch_norm(const Var& x, const Var& weight, const Var& bias, Tensor running_mean,
               Tensor running_var, bool training, float momentum, float eps) {
  Tensor xv = x.value(), wv = value_or_undef(weight);
  ops::BatchNormSaved saved;
  Tensor y = ops::batch_norm_forward(xv, wv, value_or_undef(bias), running_mean, running_var,
                                     training, momentum, eps, &saved);
  if (!should_record({&x, &weight, &bias})) return Var(y);
  const bool nx = needs(x), nw = needs(weight), nb = needs(bias);
  if (training) {
    return make_result(y, ops::Op::BatchNorm, nullptr, {x, weight, bias}, [=](const Tensor& dy) {
      ops::BatchNormGrads g = ops::batch_norm_backward(dy, xv, wv, saved);
      return Grads{nx ? g.dx : Tensor(), nw ? g.dweight : Tensor(), nb ? g.dbias : Tensor()};
    });
  }
  CMDR_CHECK(running_mean.defined() && running_var.defined(),
             "batch_norm: eval mode needs running_mean and running_var (x ", xv.str(), ")");
  // Snapshot the running stats: a later training forward updates them in place.
  Tensor rm = running_mean.clone(), rv = running_var.clone();
  return make_result(y, ops::Op::BatchNorm, nullptr, {x, weight, bias}, [=](const Tensor& dy) {
    return batch_norm_eval_backward(dy, xv, wv, rm, rv, eps, nx, nw, nb);
  });
}

Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps) {
  Tensor xv = x.value(), wv = value_or_undef(weight);
  ops::LayerNormSaved saved;
  Tensor y = ops::layer_norm_forward(xv, wv, value_or_undef(bias), eps, &saved);
  if (!should_record({&x, &weight, &bias})) return Var(y);
  const bool nx = needs(x), nw = needs(weight), nb = needs(bias);
  return make_result(y, ops::Op::LayerNorm, nullptr, {x, weight, bias}, [=](const Tensor& dy) {
    ops::LayerNormGrads g = ops::layer_norm_backward(dy, xv, wv, saved);
    return Grads{nx ? g.dx : Tensor(), nw ? g.dweight : Tensor(), nb ? g.dbias : Tensor()};
  });
}

// ---- elementwise -------------------------------------------------------------------------------

// Unary ops whose backward needs the input x.
#define CMDR_UNARY_X(fn, OP)                                                                  \
  Var fn(const Var& x) {                                                                      \
    Tensor xv = x.value();                                                                    \
    Tensor y = ops::fn##_forward(xv);                                                         \
    if (!should_record({&x})) return Var(y);                                                  \
    return make_result(y, ops::Op::OP, nullptr, {x},                                          \
                       [xv](const Tensor& dy) { return Grads{ops::fn##_backward(dy, xv)}; }); \
  }
// Unary ops whose backward needs the output y.
#define CMDR_UNARY_Y(fn, OP)                                                                \
  Var fn(const Var& x) {                                                                    \
    Tensor y = ops::fn##_forward(x.value());                                                \
    if (!should_record({&x})) return Var(y);                                                \
    return make_result(y, ops::Op::OP, nullptr, {x},                                        \
                       [y](const Tensor& dy) { return Grads{ops::fn##_backward(dy, y)}; }); \
  }

CMDR_UNARY_X(gelu, Gelu)
CMDR_UNARY_X(relu, Relu)
CMDR_UNARY_Y(sigmoid, Sigmoid)
CMDR_UNARY_Y(tanh, Tanh)
CMDR_UNARY_Y(exp, Exp)
CMDR_UNARY_Y(sqrt, Sqrt)
CMDR_UNARY_Y(softmax, Softmax)
#undef CMDR_UNARY_X
#undef CMDR_UNARY_Y

Var dropout(const Var& x, float p, bool training, Rng& rng) {
  ops::DropoutMask mask;  // (key, p, n): the backward regenerates the mask (issue 8)
  Tensor y = ops::dropout_forward(x.value(), p, training, rng, &mask);
  if (!mask.defined()) return x;  // identity (eval or p == 0), as PyTorch returns the input
  if (!should_record({&x})) return Var(y);
  return make_result(y, ops::Op::Dropout, nullptr, {x},
                     [mask](const Tensor& dy) { return Grads{ops::dropout_backward(dy, mask)}; });
}

Var add(const Var& a, const Var& b) {
  Tensor y = ops::add_forward(a.value(), b.value());
  if (!should_record({&a, &b})) return Var(y);
  const Shape as = a.shape(), bs = b.shape();
  const bool na = needs(a), nb = needs(b);
  return make_result(y, ops::Op::Add, nullptr, {a, b}, [=](const Tensor& dy) {
    // d(a+b) = dy for both, reduced to each input's shape.
    if (na && nb) {
      ops::BinaryGrads g = ops::add_backward(dy, as, bs);
      return Grads{g.da, g.db};
    }
    return Grads{na ? ops::reduce_to_shape(dy, as) : Tensor(),
                 nb ? ops::reduce_to_shape(dy, bs) : Tensor()};
  });
}

Var sub(const Var& a, const Var& b) {
  Tensor y = ops::sub_forward(a.value(), b.value());
  if (!should_record({&a, &b})) return Var(y);
  const Shape as = a.shape(), bs = b.shape();
  const bool na = needs(a), nb = needs(b);
  return make_result(y, ops::Op::Sub, nullptr, {a, b}, [=](const Tensor& dy) {
    ops::BinaryGrads g = ops::sub_backward(dy, as, bs);
    return Grads{na ? g.da : Tensor(), nb ? g.db : Tensor()};
  });
}

Var mul(const Var& a, const Var& b) {
  Tensor av = a.value(), bv = b.value();
  Tensor y = ops::mul_forward(av, bv);
  if (!should_record({&a, &b})) return Var(y);
  const bool na = needs(a), nb = needs(b);
  return make_result(y, ops::Op::Mul, nullptr, {a, b}, [=](const Tensor& dy) {
    ops::BinaryGrads g = ops::mul_backward(dy, av, bv);
    return Grads{na ? g.da : Tensor(), nb ? g.db : Tensor()};
  });
}

Var div(const Var& a, const Var& b) {
  Tensor av = a.value(), bv = b.value();
  Tensor y = ops::div_forward(av, bv);
  if (!should_record({&a, &b})) return Var(y);
  const bool na = needs(a), nb = needs(b);
  return make_result(y, ops::Op::Div, nullptr, {a, b}, [=](const Tensor& dy) {
    ops::BinaryGrads g = ops::div_backward(dy, av, bv);
    return Grads{na ? g.da : Tensor(), nb ? g.db : Tensor()};
  });
}

Var scale(const Var& x, float s) {
  Tensor y = ops::scale(x.value(), s);
  if (!should_record({&x})) return Var(y);
  return make_result(y, ops::Op::Mul, nullptr, {x},
                     [s](const Tensor& dy) { return Grads{ops::scale(dy, s)}; });
}

// ---- reductions --------------------------------------------------------------------------------

Var sum(const Var& x, int64_t axis, bool keepdim) {
  Tensor y = ops::sum_forward(x.value(), axis, keepdim);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::Sum, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::sum_backward(dy, xs, axis, keepdim)};
  });
}

Var mean(const Var& x, int64_t axis, bool keepdim) {
  Tensor y = ops::mean_forward(x.value(), axis, keepdim);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::Mean, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::mean_backward(dy, xs, axis, keepdim)};
  });
}

Var max(const Var& x, int64_t axis, bool keepdim) {
  std::vector<int64_t> argmax;
  Tensor y = ops::max_forward(x.value(), axis, keepdim, &argmax);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::Max, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::max_backward(dy, xs, axis, keepdim, argmax)};
  });
}

Var l2_normalize(const Var& x, int64_t axis, float eps) {
  Tensor xv = x.value();
  Tensor y = ops::l2_normalize_forward(xv, axis, eps);
  if (!should_record({&x})) return Var(y);
  return make_result(y, ops::Op::L2Normalize, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::l2_normalize_backward(dy, xv, axis, eps)};
  });
}

Var cosine_similarity(const Var& a, const Var& b, int64_t axis, float eps) {
  Tensor av = a.value(), bv = b.value();
  Tensor y = ops::cosine_similarity_forward(av, bv, axis, eps);
  if (!should_record({&a, &b})) return Var(y);
  const bool na = needs(a), nb = needs(b);
  return make_result(y, ops::Op::CosineSimilarity, nullptr, {a, b}, [=](const Tensor& dy) {
    ops::BinaryGrads g = ops::cosine_similarity_backward(dy, av, bv, axis, eps);
    return Grads{na ? g.da : Tensor(), nb ? g.db : Tensor()};
  });
}

// ---- attention ---------------------------------------------------------------------------------

Var attention(const Var& q, const Var& k, const Var& v, float scale, int64_t window, float p_drop,
              bool training, Rng* rng) {
  Tensor qv = q.value(), kv = k.value(), vv = v.value();
  ops::AttentionSaved saved;
  // Without a backward nothing is saved, which selects the fused kernel (no probabilities).
  const bool record = should_record({&q, &k, &v});
  Tensor y = ops::attention_forward(qv, kv, vv, scale, window, p_drop, training, rng,
                                    record ? &saved : nullptr);
  if (!record) return Var(y);
  const bool nq = needs(q), nk = needs(k), nv = needs(v);
  return make_result(y, ops::Op::Attention, nullptr, {q, k, v}, [=](const Tensor& dy) {
    ops::AttentionGrads g = ops::attention_backward(dy, qv, kv, vv, scale, window, p_drop, saved);
    return Grads{nq ? g.dq : Tensor(), nk ? g.dk : Tensor(), nv ? g.dv : Tensor()};
  });
}

// ---- pooling / resampling / indexing -----------------------------------------------------------

Var avg_pool2d(const Var& x, int64_t k, int64_t pad) {
  Tensor y = ops::avg_pool2d_forward(x.value(), k, pad);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::AvgPool2d, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::avg_pool2d_backward(dy, xs, k, pad)};
  });
}

Var adaptive_avg_pool2d(const Var& x, int64_t out_h, int64_t out_w) {
  Tensor y = ops::adaptive_avg_pool2d_forward(x.value(), out_h, out_w);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::AdaptiveAvgPool2d, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::adaptive_avg_pool2d_backward(dy, xs)};
  });
}

Var upsample_bilinear2d(const Var& x, int64_t out_h, int64_t out_w) {
  Tensor y = ops::upsample_bilinear2d_forward(x.value(), out_h, out_w);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::UpsampleBilinear2d, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::upsample_bilinear2d_backward(dy, xs)};
  });
}

Var resize_nearest2d(const Var& x, int64_t out_h, int64_t out_w) {
  Tensor y = ops::resize_nearest2d_forward(x.value(), out_h, out_w);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::ResizeNearest2d, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::resize_nearest2d_backward(dy, xs)};
  });
}

Var index_select(const Var& x, const std::vector<int64_t>& idx) {
  Tensor y = ops::index_select_forward(x.value(), idx);
  if (!should_record({&x})) return Var(y);
  const int64_t n_rows = x.value().size(0);
  return make_result(y, ops::Op::IndexSelect, nullptr, {x}, [=](const Tensor& dy) {
    return Grads{ops::index_select_backward(dy, idx, n_rows)};
  });
}

Var index_add(const Var& src, const std::vector<int64_t>& idx, int64_t n_rows) {
  Tensor y = ops::index_add_forward(src.value(), idx, n_rows);
  if (!should_record({&src})) return Var(y);
  return make_result(y, ops::Op::IndexAdd, nullptr, {src},
                     [=](const Tensor& dy) { return Grads{ops::index_add_backward(dy, idx)}; });
}

Var spmm(std::shared_ptr<const ops::CsrMatrix> a, const Var& x) {
  CMDR_CHECK(a != nullptr, "spmm: no operator");
  Tensor y = ops::spmm_forward(*a, x.value());
  if (!should_record({&x})) return Var(y);
  return make_result(y, ops::Op::Spmm, nullptr, {x},
                     [a](const Tensor& dy) { return Grads{ops::spmm_backward(*a, dy)}; });
}

Var dense_spmm(const Var& x, std::shared_ptr<const ops::CsrMatrix> a) {
  CMDR_CHECK(a != nullptr, "dense_spmm: no operator");
  Tensor y = ops::dense_spmm_forward(x.value(), *a);
  if (!should_record({&x})) return Var(y);
  return make_result(y, ops::Op::DenseSpmm, nullptr, {x},
                     [a](const Tensor& dy) { return Grads{ops::dense_spmm_backward(dy, *a)}; });
}

// ---- views and copies
// ----------------------------------------------------------------------------

Var reshape(const Var& x, const Shape& shape) {
  Tensor y = x.value().reshape(shape);
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  return make_result(y, ops::Op::kCount, "reshape", {x},
                     [xs](const Tensor& dy) { return Grads{dy.reshape(xs)}; });
}

Var permute(const Var& x, const std::vector<int64_t>& order) {
  Tensor y = x.value().permute(order).contiguous();  // validates order
  if (!should_record({&x})) return Var(y);
  const int64_t nd = x.value().dim();
  std::vector<int64_t> inv(order.size());
  for (std::size_t i = 0; i < order.size(); ++i) {
    const int64_t d = order[i] < 0 ? order[i] + nd : order[i];
    inv[static_cast<std::size_t>(d)] = static_cast<int64_t>(i);
  }
  return make_result(y, ops::Op::kCount, "permute", {x},
                     [inv](const Tensor& dy) { return Grads{dy.permute(inv).contiguous()}; });
}

Var slice(const Var& x, int64_t dim, int64_t start, int64_t end) {
  Tensor y = x.value().slice(dim, start, end).contiguous();  // validates the range
  if (!should_record({&x})) return Var(y);
  const Shape xs = x.shape();
  const int64_t d = dim < 0 ? dim + x.value().dim() : dim;
  return make_result(y, ops::Op::kCount, "slice", {x}, [=](const Tensor& dy) {
    Tensor dx = Tensor::zeros(xs);
    dx.slice(d, start, end).copy_(dy);
    return Grads{dx};
  });
}

Var concat(const std::vector<Var>& parts, int64_t dim) {
  CMDR_CHECK(!parts.empty(), "concat: no inputs");
  std::vector<Tensor> values;
  values.reserve(parts.size());
  bool record = false;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    CMDR_CHECK(parts[i].defined(), "concat: input ", i, " is undefined");
    values.push_back(parts[i].value());
    record = record || needs(parts[i]);
  }
  Tensor y = Tensor::concat(values, dim);  // validates shapes
  if (!record || !t_grad_enabled) return Var(y);
  const int64_t d = dim < 0 ? dim + y.dim() : dim;
  std::vector<int64_t> sizes;
  std::vector<bool> need;
  for (const Var& p : parts) {
    sizes.push_back(p.value().size(d));
    need.push_back(needs(p));
  }
  return make_result(y, ops::Op::kCount, "concat", parts, [=](const Tensor& dy) {
    Grads g(sizes.size());
    int64_t at = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (need[i]) g[i] = dy.slice(d, at, at + sizes[i]).contiguous();
      at += sizes[i];
    }
    return g;
  });
}

}  // namespace cmdr::ag
