#include "models/cmdr.hpp"

#include <cmath>
#include <limits>

#include "engine/error.hpp"

namespace cmdr::models {

bool all_finite(const Tensor& t) {
  const Tensor c = t.contiguous();
  const float* p = c.data();
  const int64_t n = c.numel();
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= std::isfinite(p[i]);
  return ok;
}

ag::Var masked_cosine_loss(const ag::Var& a, const ag::Var& b, const Tensor& valid) {
  CMDR_CHECK(a.shape().size() == 2 && a.shape() == b.shape(), "masked_cosine_loss: a ",
             shape_str(a.shape()), " vs b ", shape_str(b.shape()), ": expected equal [L, C]");
  CMDR_CHECK(valid.numel() == a.shape()[0], "masked_cosine_loss: valid ", valid.str(), " vs a ",
             shape_str(a.shape()), ": one flag per position expected");
  const Tensor v = valid.reshape({a.shape()[0]}).contiguous();
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < v.numel(); ++i) {
    if (v.data()[i] != 0.0f) idx.push_back(i);
  }
  if (idx.empty()) return ag::Var(Tensor::scalar(std::numeric_limits<float>::quiet_NaN()));
  // SPEC 6: cos with x / max(‖x‖, 1e-6), averaged over the valid positions only (selected,
  // not multiplied by the mask, so whatever sits at invalid positions cannot leak in).
  ag::Var cos = ag::cosine_similarity(a, b, 1, 1e-6f);     // [L]
  ag::Var mean = ag::mean(ag::index_select(cos, idx), 0);  // []
  return ag::sub(ag::Var(Tensor::scalar(1.0f)), mean);     // []
}

CmdrConfig CmdrConfig::spec(Mode mode, int64_t side) {
  CmdrConfig c;
  c.mode = mode;
  c.side = side;
  c.dec2d = Decoder2DConfig::spec();
  c.dec3d = Decoder3DConfig::spec(side);
  return c;
}

Cmdr::Cmdr(const CmdrConfig& cfg) : cfg_(cfg) {
  CMDR_CHECK(cfg.mode == Mode::Fused2D3D || cfg.mode == Mode::Only2D || cfg.mode == Mode::Only3D ||
                 cfg.mode == Mode::MapOnly || cfg.mode == Mode::RecOnly,
             "Cmdr: unknown mode");
  CMDR_CHECK(cfg.side > 0 && cfg.side % 8 == 0, "Cmdr: side S = ", cfg.side,
             " must be a positive multiple of 8");
  CMDR_CHECK(cfg.dec2d.dim == cfg.rgb_dim, "Cmdr: Decoder2D dim ", cfg.dec2d.dim, " vs rgb_dim ",
             cfg.rgb_dim);
  CMDR_CHECK(cfg.dec3d.channels == cfg.xyz_dim, "Cmdr: Decoder3D channels ", cfg.dec3d.channels,
             " vs xyz_dim ", cfg.xyz_dim);
  CMDR_CHECK(cfg.dec3d.length == cfg.side * cfg.side, "Cmdr: Decoder3D length ", cfg.dec3d.length,
             " vs S² = ", cfg.side * cfg.side);
  Rng init(cfg.seed);
  // One dropout stream per network, derived from the seed.
  const uint64_t ds = cfg.seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  Decoder2DConfig d2 = cfg.dec2d;
  Decoder3DConfig d3 = cfg.dec3d;
  d2.p_drop = d3.p_drop = cfg.p_drop;
  if (mode_uses_mapping(cfg.mode)) {
    map2Dto3D =
        std::make_unique<FeatureMappingMLP>(cfg.rgb_dim, cfg.xyz_dim, init, ds + 0, cfg.p_drop);
    map3Dto2D =
        std::make_unique<FeatureMappingMLP>(cfg.xyz_dim, cfg.rgb_dim, init, ds + 1, cfg.p_drop);
  }
  if (mode_uses_dec2d(cfg.mode)) dec2d = std::make_unique<Decoder2D>(d2, init, ds + 2);
  if (mode_uses_dec3d(cfg.mode)) dec3d = std::make_unique<Decoder3D>(d3, init, ds + 3);
  ag::AdamOptions ao;
  ao.lr = cfg.lr;
  for (int n = 0; n < 4; ++n) {
    if (ag::Module* m = net(static_cast<Net>(n))) {
      opt_[n] = std::make_unique<ag::Adam>(m->parameters(), ao);
    }
  }
}

ag::Module* Cmdr::net(Net n) const {
  switch (n) {
    case kMap2Dto3D:
      return map2Dto3D.get();
    case kMap3Dto2D:
      return map3Dto2D.get();
    case kDec2D:
      return dec2d.get();
    case kDec3D:
      return dec3d.get();
  }
  return nullptr;
}

ag::StateDict Cmdr::state_dict() {
  ag::StateDict out;
  for (int n = 0; n < 4; ++n) {
    if (ag::Module* m = net(static_cast<Net>(n))) {
      for (auto& [k, t] : m->state_dict()) out[std::string(kNetNames[n]) + "." + k] = t;
    }
  }
  return out;
}

void Cmdr::load_state_dict(const ag::StateDict& sd, bool strict) {
  std::vector<std::string> unused;
  std::array<ag::StateDict, 4> parts;
  for (const auto& [k, t] : sd) {
    bool placed = false;
    for (int n = 0; n < 4; ++n) {
      const std::string prefix = std::string(kNetNames[n]) + ".";
      if (k.rfind(prefix, 0) == 0 && has(static_cast<Net>(n))) {
        parts[n][k.substr(prefix.size())] = t;
        placed = true;
        break;
      }
    }
    if (!placed) unused.push_back(k);
  }
  if (strict && !unused.empty()) {
    fail("Cmdr::load_state_dict: ", unused.size(), " unexpected tensor(s) for mode ",
         mode_name(cfg_.mode), ", first '", unused.front(), "'");
  }
  for (int n = 0; n < 4; ++n) {
    if (ag::Module* m = net(static_cast<Net>(n))) {
      try {
        m->load_state_dict(parts[n], strict);
      } catch (const Error& e) {
        fail("Cmdr::load_state_dict: ", kNetNames[n], ": ", e.what());
      }
    }
  }
}

void Cmdr::set_dropout(float p) {
  if (map2Dto3D) map2Dto3D->set_dropout(p);
  if (map3Dto2D) map3Dto2D->set_dropout(p);
  if (dec2d) dec2d->set_dropout(p);
  if (dec3d) dec3d->set_dropout(p);
}

void Cmdr::reseed_dropout(uint64_t seed) {
  const uint64_t ds = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  if (map2Dto3D) map2Dto3D->reseed_dropout(ds + 0);
  if (map3Dto2D) map3Dto2D->reseed_dropout(ds + 1);
  if (dec2d) dec2d->reseed_dropout(ds + 2);
  if (dec3d) dec3d->reseed_dropout(ds + 3);
}

void Cmdr::check_inputs(const Tensor& rgb, const Tensor& xyz, const Tensor& valid,
                        const char* who) const {
  const int64_t l = cfg_.side * cfg_.side;
  const bool need_rgb = has(kDec2D) || has(kMap2Dto3D);
  const bool need_xyz = has(kDec3D) || has(kMap3Dto2D);
  if (need_rgb) {
    CMDR_CHECK(rgb.defined() && rgb.shape() == Shape({l, cfg_.rgb_dim}), who, ": rgb_patch ",
               rgb.defined() ? rgb.str() : "missing", ", expected [", l, ", ", cfg_.rgb_dim,
               "] (S = ", cfg_.side, ")");
  }
  if (need_xyz) {
    CMDR_CHECK(xyz.defined() && xyz.shape() == Shape({l, cfg_.xyz_dim}), who, ": xyz_patch ",
               xyz.defined() ? xyz.str() : "missing", ", expected [", l, ", ", cfg_.xyz_dim,
               "] (S = ", cfg_.side, ")");
  }
  if (cfg_.mode != Mode::Only2D) {
    CMDR_CHECK(valid.defined() && valid.numel() == l, who, ": valid ",
               valid.defined() ? valid.str() : "missing", ", expected ", l, " flags");
  }
}

void Cmdr::check_compact(const CompactPatches& x, const char* who) const {
  const int64_t l = cfg_.side * cfg_.side;
  CMDR_CHECK(x.defined() && x.side == cfg_.side, who, ": compact features for side ", x.side,
             ", the model has S = ", cfg_.side);
  CMDR_CHECK(x.up && x.up->rows == l && x.rgb_tokens.defined() && x.rgb_tokens.dim() == 2 &&
                 x.rgb_tokens.size(0) == x.up->cols && x.rgb_tokens.size(1) == cfg_.rgb_dim,
             who, ": rgb tokens ", x.rgb_tokens.defined() ? x.rgb_tokens.str() : "missing",
             " with operator [", x.up ? x.up->rows : 0, ", ", x.up ? x.up->cols : 0,
             "], expected [g², ", cfg_.rgb_dim, "] and [", l, ", g²]");
  CMDR_CHECK(x.xyz_op && x.xyz_op->rows == l && x.group_features.defined() &&
                 x.group_features.dim() == 2 && x.group_features.size(0) == x.xyz_op->cols &&
                 x.group_features.size(1) == cfg_.xyz_dim,
             who, ": group features ",
             x.group_features.defined() ? x.group_features.str() : "missing", " with operator [",
             x.xyz_op ? x.xyz_op->rows : 0, ", ", x.xyz_op ? x.xyz_op->cols : 0, "], expected [G, ",
             cfg_.xyz_dim, "] and [", l, ", G]");
  CMDR_CHECK(x.valid.defined() && x.valid.numel() == l, who, ": valid ",
             x.valid.defined() ? x.valid.str() : "missing", ", expected ", l, " flags");
}

namespace {

// Eval mode for one inference call; every network's previous mode comes back when the scope
// ends (also when the call throws).
class EvalScope {
 public:
  explicit EvalScope(std::array<ag::Module*, 4> nets) : nets_(nets) {
    for (std::size_t n = 0; n < nets_.size(); ++n) {
      if (nets_[n] != nullptr) {
        was_training_[n] = nets_[n]->training();
        nets_[n]->eval();
      }
    }
  }
  ~EvalScope() {
    for (std::size_t n = 0; n < nets_.size(); ++n) {
      if (nets_[n] != nullptr) nets_[n]->train(was_training_[n]);
    }
  }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  std::array<ag::Module*, 4> nets_;
  std::array<bool, 4> was_training_{};
};

// Copies of the module's buffers only (BatchNorm running stats: small). Parameters and Adam
// state need no snapshot: the non-finite checks on loss and gradients precede the step, and
// Adam::step_checked commits nothing when the step would turn something non-finite.
ag::StateDict clone_buffers(ag::Module& m) {
  ag::StateDict s = m.state_dict();
  for (const auto& [name, p] : m.named_parameters()) s.erase(name);
  for (auto& [k, t] : s) t = t.clone();
  return s;
}

// A constant Var, or an undefined one for a modality the mode does without.
ag::Var as_var(const Tensor& t) {
  return t.defined() ? ag::Var(t) : ag::Var();
}

}  // namespace

StepResult Cmdr::train_step(const Tensor& rgb, const Tensor& xyz, const Tensor& valid) {
  check_inputs(rgb, xyz, valid, "train_step");
  const int64_t l = cfg_.side * cfg_.side;
  // Mode 2d has no geometry: every position is valid (SPEC 7 "Modes").
  const Tensor v = cfg_.mode == Mode::Only2D ? Tensor::ones({l}) : valid.reshape({l});
  const ag::Var rgb_v = as_var(rgb), xyz_v = as_var(xyz);  // undefined when absent
  // SPEC 10: per-position networks only at valid rows (when some are invalid).
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < l; ++i) {
    if (v.data()[i] != 0.0f) rows.push_back(i);
  }
  const bool restrict_rows =
      cfg_.train_valid_only && !rows.empty() && static_cast<int64_t>(rows.size()) < l;
  ag::Var rgb_sel, xyz_sel;
  Tensor sel_valid;
  if (restrict_rows) {
    if (has(kMap2Dto3D) || has(kDec2D)) rgb_sel = ag::Var(ops::index_select_forward(rgb, rows));
    if (has(kMap2Dto3D)) xyz_sel = ag::Var(ops::index_select_forward(xyz, rows));
    sel_valid = Tensor::ones({static_cast<int64_t>(rows.size())});
  }
  return step_networks([&](int n) {
    // Each network steps on its own loss (SPEC 6):
    //   map2Dto3D(rgb) vs xyz, map3Dto2D(xyz) vs rgb, Dec2D(rgb) vs rgb, Dec3D(xyz) vs xyz.
    ag::Var out, target;
    const bool sel = restrict_rows && n != kDec3D;  // Dec3D mixes positions: all rows
    switch (n) {
      case kMap2Dto3D:
        out = map2Dto3D->forward(sel ? rgb_sel : rgb_v), target = sel ? xyz_sel : xyz_v;
        break;
      case kMap3Dto2D:
        out = map3Dto2D->forward(sel ? xyz_sel : xyz_v), target = sel ? rgb_sel : rgb_v;
        break;
      case kDec2D:
        out = sel ? dec2d->forward_rows(rgb_v, rows) : dec2d->forward(rgb_v);
        target = sel ? rgb_sel : rgb_v;
        break;
      case kDec3D:
        out = dec3d->forward(xyz_v), target = xyz_v;
        break;
    }
    return masked_cosine_loss(out, target, sel ? sel_valid : v);
  });
}

StepResult Cmdr::train_step(const CompactPatches& x) {
  check_compact(x, "train_step");
  const int64_t l = cfg_.side * cfg_.side;
  // Mode 2d has no geometry: every position is valid (SPEC 7 "Modes").
  const Tensor v = cfg_.mode == Mode::Only2D ? Tensor::ones({l}) : x.valid.reshape({l});
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < l; ++i) {
    if (v.data()[i] != 0.0f) rows.push_back(i);
  }
  // The same row restriction as the literal step (SPEC 10); `use` empty = every row.
  const bool restrict_rows =
      cfg_.train_valid_only && !rows.empty() && static_cast<int64_t>(rows.size()) < l;
  const std::vector<int64_t> use = restrict_rows ? rows : std::vector<int64_t>();
  const Tensor mask = restrict_rows ? Tensor::ones({static_cast<int64_t>(rows.size())}) : v;
  // Operators restricted to the rows used (row selection composes with U and P) and the
  // targets at those rows only: U_rows·T, P_rows·G.
  std::shared_ptr<const CsrMatrix> u_use = x.up, p_use = x.xyz_op;
  if (restrict_rows && has(kMap2Dto3D)) {
    u_use = std::make_shared<const CsrMatrix>(x.up->select_rows(rows));
    p_use = std::make_shared<const CsrMatrix>(x.xyz_op->select_rows(rows));
  }
  // rgb is the target of map3Dto2D and Dec2D, xyz of map2Dto3D and Dec3D.
  const ag::Var rgb_t = has(kMap3Dto2D) || has(kDec2D) ? ag::Var(x.rgb_rows(use)) : ag::Var();
  const ag::Var xyz_t = has(kMap2Dto3D) || has(kDec3D) ? ag::Var(x.xyz_rows(use)) : ag::Var();
  const ag::Var tokens(x.rgb_tokens), groups(x.group_features);
  return step_networks([&](int n) {
    // Each network steps on its own loss (SPEC 6), restructured (SPEC 10):
    //   map2Dto3D(U·T) vs xyz, map3Dto2D(P·G) vs rgb, Dec2D(U·T) vs rgb, Dec3D(P·G) vs xyz.
    switch (n) {
      case kMap2Dto3D:
        return masked_cosine_loss(map2Dto3D->forward_sparse(u_use, tokens), xyz_t, mask);
      case kMap3Dto2D:
        return masked_cosine_loss(map3Dto2D->forward_sparse(p_use, groups), rgb_t, mask);
      case kDec2D:
        return masked_cosine_loss(dec2d->forward_sparse(x.up, tokens, use), rgb_t, mask);
      default: {
        // Dec3D mixes positions: every row is reconstructed, the loss reads the rows used.
        ag::Var out = dec3d->forward_sparse(x.xyz_op, groups);
        if (restrict_rows) out = ag::index_select(out, rows);
        return masked_cosine_loss(out, xyz_t, mask);
      }
    }
  });
}

StepResult Cmdr::step_networks(const std::function<ag::Var(int)>& loss_of) {
  ++step_;
  StepResult res;
  res.loss.fill(std::numeric_limits<float>::quiet_NaN());
  res.grad_norm.fill(std::numeric_limits<float>::quiet_NaN());
  for (int n = 0; n < 4; ++n) {
    ag::Module* m = net(static_cast<Net>(n));
    if (m == nullptr) continue;
    ag::Adam& opt = *opt_[n];
    m->train();
    // Buffers (BatchNorm running stats) change in the forward, so their snapshot precedes
    // it; they are restored if anything turns non-finite (parameters never change then).
    const ag::StateDict buffers_before = clone_buffers(*m);
    m->zero_grad();
    std::string reason;
    {
      ag::Var loss = loss_of(n);
      res.loss[n] = loss.value().item();
      if (!std::isfinite(res.loss[n])) {
        reason = "non-finite loss";
      } else {
        ag::backward(loss);
      }
    }
    if (reason.empty()) {
      double sq = 0.0;
      bool finite = true;
      for (ag::Var* p : m->parameters()) {
        if (!p->grad().defined()) continue;
        const Tensor g = p->grad().contiguous();
        for (int64_t i = 0; i < g.numel(); ++i) {
          const float x = g.data()[i];
          finite &= std::isfinite(x);
          sq += static_cast<double>(x) * x;
        }
      }
      res.grad_norm[n] = static_cast<float>(std::sqrt(sq));
      if (!finite || !std::isfinite(sq)) reason = "non-finite gradient";
    }
    if (reason.empty() && cfg_.clip_grad > 0.0f) {
      // torch.nn.utils.clip_grad_norm_: scale by max_norm / (total_norm + 1e-6) when < 1.
      const double coef = cfg_.clip_grad / (static_cast<double>(res.grad_norm[n]) + 1e-6);
      if (coef < 1.0) {
        for (ag::Var* p : m->parameters()) {
          if (p->grad().defined()) p->grad() = ops::scale(p->grad(), static_cast<float>(coef));
        }
      }
    }
    if (reason.empty()) {
      const ag::Adam::StepCheck c = opt.step_checked();  // commits only when all finite
      if (c == ag::Adam::StepCheck::NonFiniteParameter) reason = "non-finite updated parameter";
      if (c == ag::Adam::StepCheck::NonFiniteState) reason = "non-finite optimizer state";
    }
    if (!reason.empty()) {
      std::vector<std::string> not_buffers;
      m->load_state_dict(buffers_before, /*strict=*/false, &not_buffers);
      res.rolled_back[n] = true;
      rollbacks_.push_back({step_, n, reason});
    }
    m->zero_grad();
  }
  return res;
}

CmdrOutputs Cmdr::infer(const Tensor& rgb, const Tensor& xyz, const Tensor& valid, Mode mode,
                        bool valid_only) {
  CMDR_CHECK(!mode_uses_mapping(mode) || (has(kMap2Dto3D) && has(kMap3Dto2D)), "Cmdr::infer: mode ",
             mode_name(mode), " needs the mapping networks, the model is ", mode_name(cfg_.mode));
  CMDR_CHECK(!mode_uses_dec2d(mode) || has(kDec2D), "Cmdr::infer: mode ", mode_name(mode),
             " needs Decoder2D, the model is ", mode_name(cfg_.mode));
  CMDR_CHECK(!mode_uses_dec3d(mode) || has(kDec3D), "Cmdr::infer: mode ", mode_name(mode),
             " needs Decoder3D, the model is ", mode_name(cfg_.mode));
  const int64_t s = cfg_.side, l = s * s;
  if (mode_uses_dec2d(mode)) {
    CMDR_CHECK(rgb.defined() && rgb.shape() == Shape({l, cfg_.rgb_dim}), "Cmdr::infer: rgb_patch ",
               rgb.defined() ? rgb.str() : "missing", ", expected [", l, ", ", cfg_.rgb_dim, "]");
  }
  if (mode_uses_dec3d(mode)) {
    CMDR_CHECK(xyz.defined() && xyz.shape() == Shape({l, cfg_.xyz_dim}), "Cmdr::infer: xyz_patch ",
               xyz.defined() ? xyz.str() : "missing", ", expected [", l, ", ", cfg_.xyz_dim, "]");
  }
  Tensor v;
  if (mode == Mode::Only2D) {
    v = Tensor::ones({s, s});
  } else {
    CMDR_CHECK(valid.defined() && valid.numel() == l, "Cmdr::infer: valid ",
               valid.defined() ? valid.str() : "missing", ", expected ", l, " flags");
    v = valid.reshape({s, s});
  }

  ag::NoGrad no_grad;
  const EvalScope eval_mode({net(kMap2Dto3D), net(kMap3Dto2D), net(kDec2D), net(kDec3D)});
  CmdrOutputs out;
  FusionInputs fi;
  fi.valid = v;
  const ag::Var rgb_v = as_var(rgb), xyz_v = as_var(xyz);  // undefined when absent
  // SPEC 10: per-position networks only at valid rows (scattered back, 0 elsewhere).
  std::vector<int64_t> rows;
  if (valid_only && mode != Mode::Only2D) {
    const Tensor vc = v.contiguous();
    for (int64_t i = 0; i < l; ++i) {
      if (vc.data()[i] != 0.0f) rows.push_back(i);
    }
    if (static_cast<int64_t>(rows.size()) == l) rows.clear();  // nothing to skip
  }
  // rows empty = every position (also the no-valid-position case, which falls back to 2d).
  auto per_position = [&](FeatureMappingMLP& net, const Tensor& x) {
    if (rows.empty()) return net.forward(ag::Var(x)).value();
    const Tensor y = net.forward(ag::Var(ops::index_select_forward(x, rows))).value();
    return ops::index_add_forward(y, rows, l);
  };
  if (mode_uses_mapping(mode)) {
    out.mapped_3d = per_position(*map2Dto3D, rgb);  // [S², xyz_dim]
    out.mapped_2d = per_position(*map3Dto2D, xyz);  // [S², rgb_dim]
    fi.d_map2d = error_map(out.mapped_2d, rgb, s);
    fi.d_map3d = error_map(out.mapped_3d, xyz, s);
  }
  if (mode_uses_dec2d(mode)) {
    out.recon_2d = rows.empty()
                       ? dec2d->forward(rgb_v).value()
                       : ops::index_add_forward(dec2d->forward_rows(rgb_v, rows).value(), rows, l);
    fi.d_rec2d = error_map(out.recon_2d, rgb, s);  // [S², rgb_dim]
  }
  if (mode_uses_dec3d(mode)) {
    out.recon_3d = dec3d->forward(xyz_v).value();  // [S², xyz_dim]
    fi.d_rec3d = error_map(out.recon_3d, xyz, s);
  }
  out.fusion = fuse(fi, mode);
  return out;
}

CmdrOutputs Cmdr::infer(const CompactPatches& x, Mode mode, bool all_rows, bool keep_outputs) {
  CMDR_CHECK(!mode_uses_mapping(mode) || (has(kMap2Dto3D) && has(kMap3Dto2D)), "Cmdr::infer: mode ",
             mode_name(mode), " needs the mapping networks, the model is ", mode_name(cfg_.mode));
  CMDR_CHECK(!mode_uses_dec2d(mode) || has(kDec2D), "Cmdr::infer: mode ", mode_name(mode),
             " needs Decoder2D, the model is ", mode_name(cfg_.mode));
  CMDR_CHECK(!mode_uses_dec3d(mode) || has(kDec3D), "Cmdr::infer: mode ", mode_name(mode),
             " needs Decoder3D, the model is ", mode_name(cfg_.mode));
  check_compact(x, "Cmdr::infer");
  const int64_t s = cfg_.side, l = s * s;
  const Tensor v = mode == Mode::Only2D ? Tensor::ones({s, s}) : x.valid.reshape({s, s});

  ag::NoGrad no_grad;
  const EvalScope eval_mode({net(kMap2Dto3D), net(kMap3Dto2D), net(kDec2D), net(kDec3D)});
  CmdrOutputs out;
  FusionInputs fi;
  fi.valid = v;
  // SPEC 10: per-position networks only at valid rows (scattered back, 0 elsewhere) unless
  // all_rows; rows empty = every position (also when none is valid: fusion falls back to 2d).
  std::vector<int64_t> rows;
  if (!all_rows && mode != Mode::Only2D) {
    rows = x.valid_rows();
    if (static_cast<int64_t>(rows.size()) == l) rows.clear();  // nothing to skip
  }
  auto scatter = [&](const ag::Var& y) {
    return rows.empty() ? y.value() : ops::index_add_forward(y.value(), rows, l);
  };
  // Error map of a per-position network's output at `rows` (0 elsewhere) against the target;
  // the output is kept (scattered to [S², C]) only when asked for.
  auto error_of = [&](const ag::Var& y, const Tensor& target, Tensor* keep) {
    if (keep) {
      *keep = scatter(y);
      return error_map(*keep, target, s);
    }
    return error_map_rows(y.value(), rows, target, s);
  };
  // The dense patches only for the error maps (cheap: a few operator entries per row).
  const Tensor rgb = mode_uses_mapping(mode) || mode_uses_dec2d(mode) ? x.rgb_rows() : Tensor();
  const Tensor xyz = mode_uses_mapping(mode) || mode_uses_dec3d(mode) ? x.xyz_rows() : Tensor();
  const ag::Var tokens(x.rgb_tokens), groups(x.group_features);
  if (mode_uses_mapping(mode)) {
    std::shared_ptr<const CsrMatrix> u = x.up, p = x.xyz_op;
    if (!rows.empty()) {
      u = std::make_shared<const CsrMatrix>(x.up->select_rows(rows));
      p = std::make_shared<const CsrMatrix>(x.xyz_op->select_rows(rows));
    }
    // map3d = mapped_3d vs xyz (map2Dto3D), map2d = mapped_2d vs rgb (map3Dto2D).
    fi.d_map3d = error_of(map2Dto3D->forward_sparse(u, tokens), xyz,
                          keep_outputs ? &out.mapped_3d : nullptr);  // [S², xyz_dim]
    fi.d_map2d = error_of(map3Dto2D->forward_sparse(p, groups), rgb,
                          keep_outputs ? &out.mapped_2d : nullptr);  // [S², rgb_dim]
  }
  if (mode_uses_dec2d(mode)) {
    fi.d_rec2d = error_of(dec2d->forward_sparse(x.up, tokens, rows), rgb,
                          keep_outputs ? &out.recon_2d : nullptr);  // [S², rgb_dim]
  }
  if (mode_uses_dec3d(mode)) {
    const Tensor y = dec3d->forward_sparse(x.xyz_op, groups).value();  // [S², xyz_dim]
    fi.d_rec3d = error_map(y, xyz, s);
    if (keep_outputs) out.recon_3d = y;
  }
  out.fusion = fuse(fi, mode);
  return out;
}

std::vector<std::pair<std::string, Tensor>> dump_tensors(const CmdrOutputs& out) {
  const FusionResult& f = out.fusion;
  const std::pair<const char*, const Tensor*> all[] = {
      {"mapped_2d", &out.mapped_2d}, {"mapped_3d", &out.mapped_3d}, {"recon_2d", &out.recon_2d},
      {"recon_3d", &out.recon_3d},   {"d_map2d", &f.d_map2d},       {"d_map3d", &f.d_map3d},
      {"d_rec2d", &f.d_rec2d},       {"d_rec3d", &f.d_rec3d},       {"a_map", &f.a_map},
      {"a_rec", &f.a_rec},           {"fused", &f.fused},           {"pixel_map", &f.pixel_map},
      {"aupro_map", &f.aupro_map}};
  std::vector<std::pair<std::string, Tensor>> v;
  for (const auto& [name, t] : all) {
    if (t->defined()) v.emplace_back(name, *t);
  }
  if (f.fused.defined()) v.emplace_back("image_score", Tensor::full({1}, f.image_score));
  return v;
}

}  // namespace cmdr::models
