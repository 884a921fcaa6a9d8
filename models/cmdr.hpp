#pragma once
// The four CMDR-IAD networks together (SPEC 5-7): map2Dto3D, map3Dto2D, Dec2D, Dec3D, their
// masked cosine losses and Adam optimizers (training step with rollback of non-finite
// steps), checkpoint naming (state_dict prefixes) and inference producing every tensor the
// `score --dump` verb writes.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/modules.hpp"
#include "autograd/optim.hpp"
#include "models/decoder2d.hpp"
#include "models/decoder3d.hpp"
#include "models/feature_assembly.hpp"
#include "models/feature_mapping.hpp"
#include "models/fusion.hpp"

namespace cmdr::models {

// SPEC 6 loss for one pair: 1 − mean over valid positions of cos(a_p, b_p), with
// cos = <a/max(‖a‖,1e-6), b/max(‖b‖,1e-6)>. a [L, C] (differentiable), b [L, C] (target),
// valid [L] 0/1. With no valid position the mean is undefined: the result is NaN (and the
// training step skips that network, as for any non-finite loss).
ag::Var masked_cosine_loss(const ag::Var& a, const ag::Var& b, const Tensor& valid);

struct CmdrConfig {
  Mode mode = Mode::Fused2D3D;  // training modes: 2d3d (all four), 2d, 3d
  int64_t side = 224;           // S
  int64_t rgb_dim = 768, xyz_dim = 1152;
  Decoder2DConfig dec2d;   // dec2d.dim must equal rgb_dim
  Decoder3DConfig dec3d;   // dec3d.length = side², dec3d.channels = xyz_dim
  float p_drop = 0.1f;     // all dropouts (0 for the training-parity hook)
  float lr = 1e-3f;        // Adam, SPEC 6
  float clip_grad = 0.0f;  // > 0: clip each network's gradient norm to this (PyTorch
                           // clip_grad_norm_, coefficient max/(norm + 1e-6))
  uint64_t seed = 0;       // init and dropout streams derive from it
  // SPEC 10 in training: the mapping MLPs and Decoder2D's `reconstruct` run only at valid
  // positions (the losses ignore the others). Same losses and gradients; dropout masks are
  // drawn for fewer elements, so a dropout run differs from one without it.
  bool train_valid_only = true;
  // SPEC 5 widths at side S.
  static CmdrConfig spec(Mode mode, int64_t side);
};

// Network slots, in checkpoint / CSV order.
enum Net : int { kMap2Dto3D = 0, kMap3Dto2D = 1, kDec2D = 2, kDec3D = 3 };
inline constexpr std::array<const char*, 4> kNetNames{"map2Dto3D", "map3Dto2D", "Dec2D", "Dec3D"};
// Loss names as in `--dump-losses` (map2d = mapped_2d vs rgb, i.e. map3Dto2D's loss).
inline constexpr std::array<const char*, 4> kLossNames{"map3d", "map2d", "rec2d", "rec3d"};

struct Rollback {
  int64_t step = 0;  // 1-based training step
  int net = 0;       // Net
  std::string reason;
};

struct StepResult {
  // Loss before the update, per Net slot; NaN for a network the mode does not train.
  std::array<float, 4> loss{};
  std::array<bool, 4> rolled_back{};
  std::array<float, 4> grad_norm{};  // before clipping; NaN if not computed
};

// Everything `score --dump` writes beyond the features (SPEC 7). Undefined = not computed
// in this mode.
struct CmdrOutputs {
  Tensor mapped_2d, mapped_3d, recon_2d, recon_3d;  // [S², C]
  FusionResult fusion;  // d_* maps, a_map, a_rec, fused, pixel_map, aupro_map, image_score
};

// The tensors of `score --dump` (issue 5) by name, in a fixed order: mapped_2d, mapped_3d,
// recon_2d, recon_3d [S², C]; d_map2d, d_map3d, d_rec2d (after its smoothing), d_rec3d,
// a_map, a_rec, fused, pixel_map, aupro_map [S, S]; image_score [1]. Tensors the mode did
// not compute are left out.
std::vector<std::pair<std::string, Tensor>> dump_tensors(const CmdrOutputs& out);

class Cmdr {
 public:
  explicit Cmdr(const CmdrConfig& cfg);
  const CmdrConfig& config() const { return cfg_; }
  bool has(Net n) const { return net(n) != nullptr; }
  ag::Module* net(Net n) const;

  // Checkpoint names: "<prefix>.<PyTorch name>" for every network of the mode.
  ag::StateDict state_dict();
  void load_state_dict(const ag::StateDict& sd, bool strict = true);

  // One SPEC 6 training step on one sample (train mode): each network of the mode does
  // forward, its masked cosine loss, backward and its own Adam step. A non-finite loss,
  // gradient, updated parameter or optimizer state rolls that network back to its state
  // before the step (parameters, buffers, Adam moments and count) and is recorded. The
  // snapshot is a full copy taken every step: ~3× the network's parameter memory extra
  // while that network steps (Decoder3D at S = 224: ~0.95 GB), a few % of a step's time.
  // rgb [S², rgb_dim], xyz [S², xyz_dim], valid [S²] (ignored in mode 2d: all valid).
  // This is the LITERAL path (dense patches; kept for tests and plain feature caches).
  StepResult train_step(const Tensor& rgb, const Tensor& xyz, const Tensor& valid);
  // The same step on the compact features (SPEC 10, the default path): the first Linears of
  // map2Dto3D / Decoder2D run on the tokens (U after), map3Dto2D's on the group features (P
  // after), Decoder3D's over positions as (W·P)·G, and the targets are formed only at the
  // rows the losses read. Same losses and gradients as the literal step up to float
  // rounding (with dropout on, the same masks: the same row counts are drawn).
  StepResult train_step(const CompactPatches& x);
  int64_t steps() const { return step_; }
  const std::vector<Rollback>& rollbacks() const { return rollbacks_; }
  ag::Adam& optimizer(Net n) { return *opt_.at(n); }
  void set_dropout(float p);
  // Restarts every network's dropout stream from `seed` (the trainer does this per epoch so
  // that a resumed run draws the same masks).
  void reseed_dropout(uint64_t seed);

  // Inference (eval mode, no gradients) in `mode` (a 2d3d model also serves map / rec).
  // valid_only (SPEC 10): the mapping MLPs and Decoder2D's `reconstruct` run only at valid
  // positions; the fused maps and score are unchanged (fusion masks those positions before
  // any smoothing), but mapped_2d / mapped_3d / recon_2d hold 0 at invalid rows, so `score
  // --dump` parity needs valid_only = false. Ignored in mode 2d (every position counts).
  CmdrOutputs infer(const Tensor& rgb, const Tensor& xyz, const Tensor& valid, Mode mode,
                    bool valid_only = false);
  CmdrOutputs infer(const Tensor& rgb, const Tensor& xyz, const Tensor& valid) {
    return infer(rgb, xyz, valid, cfg_.mode);
  }
  // Inference on the compact features (SPEC 10, the default path of detect / evaluate).
  // all_rows = false: the per-position networks run only at valid positions, and
  // mapped_2d / mapped_3d / recon_2d hold 0 at invalid rows (fused maps and score
  // unchanged). all_rows = true (`score --dump`): every row computed, as the literal path.
  // keep_outputs = false (detect / evaluate): mapped_* / recon_* are not returned; each
  // network's output is turned into its error map and freed at once, and the error maps of
  // the per-position networks are formed from the valid rows directly (no [S², C]
  // scatter) — same maps and score, bit for bit, a lower peak.
  CmdrOutputs infer(const CompactPatches& x, Mode mode, bool all_rows = false,
                    bool keep_outputs = true);

  std::unique_ptr<FeatureMappingMLP> map2Dto3D, map3Dto2D;
  std::unique_ptr<Decoder2D> dec2d;
  std::unique_ptr<Decoder3D> dec3d;

 private:
  CmdrConfig cfg_;
  std::array<std::unique_ptr<ag::Adam>, 4> opt_;
  int64_t step_ = 0;
  std::vector<Rollback> rollbacks_;
  void check_inputs(const Tensor& rgb, const Tensor& xyz, const Tensor& valid,
                    const char* who) const;
  void check_compact(const CompactPatches& x, const char* who) const;
  // The SPEC 6 step of every network of the mode on the loss loss_of(net) gives, with the
  // rollback of non-finite steps.
  StepResult step_networks(const std::function<ag::Var(int)>& loss_of);
};

// True when every element is finite.
bool all_finite(const Tensor& t);

}  // namespace cmdr::models
