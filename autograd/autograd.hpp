#pragma once
// cmdr::ag — minimal reverse-mode autograd over cmdr::ops.
//
// A Var is a handle to a Node: the forward value, the gradient (filled by backward), and —
// for results of recorded ops — a backward closure calling the op's ops::*_backward.
// Recording happens only when grad mode is on AND some input requires grad; inside a
// NoGrad scope every function just calls ops::*_forward and returns a constant Var.
// backward(loss): reverse topological order from loss, accumulating (+=) into .grad of
// every Var that requires grad; interior nodes' saved tensors are released afterwards
// unless retain_graph (a second backward without it throws, naming the op); a released
// node also drops its `inputs`, so activations no Var refers to are freed at once.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "ops/ops.hpp"

namespace cmdr::ag {

struct Node {
  Node() = default;
  ~Node();  // iterative: a long chain of inputs is freed without deep recursion
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  Tensor value;
  Tensor grad;  // undefined until backward reaches it
  bool requires_grad = false;
  bool is_leaf = true;
  bool retain_grad = false;         // keep .grad on an interior node
  ops::Op op = ops::Op::kCount;     // which op produced it (kCount for leaves)
  const char* view_name = nullptr;  // name for recorded functions outside the op table
  std::vector<std::shared_ptr<Node>> inputs;
  // Given this node's grad, returns one gradient per input (undefined = no contribution).
  std::function<std::vector<Tensor>(const Tensor& grad)> backward_fn;
  bool released = false;     // saved tensors freed after a non-retained backward
  std::string name() const;  // op_name(op), view_name, or "leaf"
};

class Var {
 public:
  Var() = default;
  explicit Var(Tensor value, bool requires_grad = false);  // a leaf
  bool defined() const { return node_ != nullptr; }
  const Tensor& value() const;
  Tensor& grad();  // undefined tensor until a backward reached this Var
  bool requires_grad() const;
  void set_requires_grad(bool on);
  void retain_grad();
  void zero_grad();  // drops the gradient
  const Shape& shape() const { return value().shape(); }
  std::shared_ptr<Node> node() const { return node_; }
  static Var from_node(std::shared_ptr<Node> n);

 private:
  std::shared_ptr<Node> node_;
};

// Runs backward from a scalar (numel == 1) loss with seed gradient 1, or from any Var with
// an explicit seed gradient of its shape.
void backward(const Var& root, bool retain_graph = false);
void backward(const Var& root, const Tensor& seed, bool retain_graph = false);

bool grad_enabled();
// Whether an unrecorded forward may use fused kernels that round differently from the
// recorded ops (ops::linear_gelu_forward, issue 8): false inside the forward of an
// ag::checkpoint, whose output must equal its recorded recomputation bit for bit.
bool fused_forward_allowed();
class NoGrad {  // RAII: disables recording in this thread for its lifetime
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool prev_;
};

// Recomputation (activation checkpointing; issue 8, the training step's peak memory):
// y = f(x) is computed without recording, so none of f's intermediate activations is kept;
// only x is saved. The backward recomputes f(x) with recording and backpropagates dy
// through it: parameters f uses get their gradients from that nested backward, x gets dx.
// Same ops in the same order, so values and gradients are bit-identical to calling f
// directly. Random draws in f (dropout) repeat exactly: `rng` (if given, the generator f
// draws from) is reset to its state before the forward for the recomputation and put back
// afterwards. f must have no other side effects (BatchNorm running statistics would update
// twice). Without grad mode this is f(x).
Var checkpoint(const std::function<Var(const Var&)>& f, const Var& x, Rng* rng);

// ---- differentiable functions (thin wrappers over ops::*_forward / *_backward) ---------
Var linear(const Var& x, const Var& weight, const Var& bias);  // bias may be undefined
Var matmul(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);
Var bmm(const Var& a, const Var& b, bool trans_a = false, bool trans_b = false);
Var conv1d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad);
Var conv2d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad);
Var conv_transpose1d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad);
Var conv_transpose2d(const Var& x, const Var& w, const Var& b, int64_t stride, int64_t pad);
// batch_norm: training uses batch stats and updates running stats in place (if defined).
Var batch_norm(const Var& x, const Var& weight, const Var& bias, Tensor running_mean,
               Tensor running_var, bool training, float momentum, float eps);
Var layer_norm(const Var& x, const Var& weight, const Var& bias, float eps);
Var gelu(const Var& x);
Var relu(const Var& x);
Var sigmoid(const Var& x);
Var tanh(const Var& x);
Var exp(const Var& x);
Var sqrt(const Var& x);
Var softmax(const Var& x);
Var dropout(const Var& x, float p, bool training, Rng& rng);
Var add(const Var& a, const Var& b);
Var sub(const Var& a, const Var& b);
Var mul(const Var& a, const Var& b);
Var div(const Var& a, const Var& b);
Var scale(const Var& x, float s);
Var sum(const Var& x, int64_t axis, bool keepdim = false);
Var mean(const Var& x, int64_t axis, bool keepdim = false);
Var max(const Var& x, int64_t axis, bool keepdim = false);
Var l2_normalize(const Var& x, int64_t axis, float eps);
Var cosine_similarity(const Var& a, const Var& b, int64_t axis, float eps);
Var attention(const Var& q, const Var& k, const Var& v, float scale, int64_t window, float p_drop,
              bool training, Rng* rng);
Var avg_pool2d(const Var& x, int64_t k, int64_t pad);
Var adaptive_avg_pool2d(const Var& x, int64_t out_h, int64_t out_w);
Var upsample_bilinear2d(const Var& x, int64_t out_h, int64_t out_w);
Var index_select(const Var& x, const std::vector<int64_t>& idx);
// Extensions beyond the first contract: nearest resize and index_add (scatter of rows).
Var resize_nearest2d(const Var& x, int64_t out_h, int64_t out_w);
Var index_add(const Var& src, const std::vector<int64_t>& idx, int64_t n_rows);
// Products with a constant sparse operator (SPEC 10; no gradient for the operator, which the
// tape keeps alive through the shared pointer): A·x and x·A.
Var spmm(std::shared_ptr<const ops::CsrMatrix> a, const Var& x);
Var dense_spmm(const Var& x, std::shared_ptr<const ops::CsrMatrix> a);
// Views/copies that carry gradients (backward applies the inverse reshaping).
Var reshape(const Var& x, const Shape& shape);
Var permute(const Var& x, const std::vector<int64_t>& order);  // result made contiguous
Var slice(const Var& x, int64_t dim, int64_t start, int64_t end);
Var concat(const std::vector<Var>& parts, int64_t dim);

}  // namespace cmdr::ag
