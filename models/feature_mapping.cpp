#include "models/feature_mapping.hpp"

#include "engine/error.hpp"

namespace cmdr::models {

ag::Var linear_after_operator(ag::Linear& lin, const std::shared_ptr<const ops::CsrMatrix>& a,
                              const ag::Var& x0) {
  CMDR_CHECK(a != nullptr && x0.shape().size() == 2 && x0.shape()[0] == a->cols,
             "linear_after_operator: x0 ", shape_str(x0.shape()), " vs operator [", a ? a->rows : 0,
             ", ", a ? a->cols : 0, "]");
  ag::Var h = ag::spmm(a, ag::linear(x0, lin.weight, ag::Var()));  // [n, out]
  return lin.bias.defined() ? ag::add(h, lin.bias) : h;            // + b per row
}

FeatureMappingMLP::FeatureMappingMLP(int64_t in, int64_t out, Rng& init_rng, uint64_t dropout_seed,
                                     float p_drop)
    : in_dim(in),
      out_dim(out),
      hidden((in + out) / 2),
      drop_rng_(dropout_seed),
      input(in, (in + out) / 2, true, init_rng),
      output((in + out) / 2, out, true, init_rng) {
  // Init draws: input, output, then projection's layers (not PyTorch's order, and not
  // PyTorch's stream either: parity fixtures load their weights).
  const int64_t r = hidden;
  projection.add<ag::Linear>(r, r, true, init_rng);         // 0
  projection.add<ag::GELU>();                               // 1
  projection.add<ag::LayerNorm>(r);                         // 2
  drop_ = &projection.add<ag::Dropout>(p_drop, drop_rng_);  // 3
  projection.add<ag::Linear>(r, r, true, init_rng);         // 4
  projection.add<ag::GELU>();                               // 5
  projection.add<ag::LayerNorm>(r);                         // 6
  register_module("input", input);
  register_module("projection", projection);
  register_module("output", output);
}

void FeatureMappingMLP::set_dropout(float p) {
  drop_->p = p;
}

ag::Var FeatureMappingMLP::forward(const ag::Var& x) {
  CMDR_CHECK(x.shape().size() == 2 && x.shape()[1] == in_dim, "FeatureMappingMLP: x ",
             shape_str(x.shape()), ": expected [N, ", in_dim, "]");
  ag::Var h = ag::gelu(input.forward(x));  // [N, r]
  h = projection.forward(h);               // [N, r]
  return output.forward(h);                // [N, out]
}

ag::Var FeatureMappingMLP::forward_sparse(const std::shared_ptr<const ops::CsrMatrix>& a,
                                          const ag::Var& x0) {
  CMDR_CHECK(x0.shape().size() == 2 && x0.shape()[1] == in_dim, "FeatureMappingMLP: x0 ",
             shape_str(x0.shape()), ": expected [K, ", in_dim, "]");
  ag::Var h = ag::gelu(linear_after_operator(input, a, x0));  // [n, r]
  h = projection.forward(h);                                  // [n, r]
  return output.forward(h);                                   // [n, out]
}

}  // namespace cmdr::models
