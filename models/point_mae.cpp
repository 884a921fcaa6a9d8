#include "models/point_mae.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

PointMae::PointMae(const PointMaeConfig& c) : cfg(c) {
  CMDR_CHECK(c.num_group > 0 && c.group_size > 0, "point_mae: num_group ", c.num_group,
             " and group_size ", c.group_size, " must be positive");
  CMDR_CHECK(c.heads > 0 && c.dim % c.heads == 0, "point_mae: dim ", c.dim,
             " is not a multiple of heads ", c.heads);
  CMDR_CHECK(!c.taps.empty(), "point_mae: no tapped blocks");
  for (int64_t t : c.taps)
    CMDR_CHECK(t >= 0 && t < c.depth, "point_mae: tap ", t, " outside blocks 0..", c.depth - 1);
  blocks.resize(static_cast<std::size_t>(c.depth));
}

std::vector<ParamSpec> PointMae::param_specs() {
  const PointMaeConfig& c = cfg;
  const int64_t D = c.dim;
  std::vector<ParamSpec> s;
  auto bn = [&](const std::string& p, int64_t C, Tensor& w, Tensor& b, Tensor& rm, Tensor& rv) {
    s.push_back({p + ".weight", {C}, &w, Init::Ones});
    s.push_back({p + ".bias", {C}, &b, Init::Zeros});
    s.push_back({p + ".running_mean", {C}, &rm, Init::BnRunningMean});
    s.push_back({p + ".running_var", {C}, &rv, Init::BnRunningVar});
  };
  s.push_back({"encoder.first_conv.0.weight", {c.enc_c1, 3, 1}, &encoder_first_conv_0_weight});
  s.push_back({"encoder.first_conv.0.bias", {c.enc_c1}, &encoder_first_conv_0_bias, Init::Zeros});
  bn("encoder.first_conv.1", c.enc_c1, encoder_first_conv_1_weight, encoder_first_conv_1_bias,
     encoder_first_conv_1_running_mean, encoder_first_conv_1_running_var);
  s.push_back(
      {"encoder.first_conv.3.weight", {c.enc_c2, c.enc_c1, 1}, &encoder_first_conv_3_weight});
  s.push_back({"encoder.first_conv.3.bias", {c.enc_c2}, &encoder_first_conv_3_bias, Init::Zeros});
  s.push_back(
      {"encoder.second_conv.0.weight", {c.enc_c3, 2 * c.enc_c2, 1}, &encoder_second_conv_0_weight});
  s.push_back({"encoder.second_conv.0.bias", {c.enc_c3}, &encoder_second_conv_0_bias, Init::Zeros});
  bn("encoder.second_conv.1", c.enc_c3, encoder_second_conv_1_weight, encoder_second_conv_1_bias,
     encoder_second_conv_1_running_mean, encoder_second_conv_1_running_var);
  s.push_back({"encoder.second_conv.3.weight", {D, c.enc_c3, 1}, &encoder_second_conv_3_weight});
  s.push_back({"encoder.second_conv.3.bias", {D}, &encoder_second_conv_3_bias, Init::Zeros});
  s.push_back({"pos_embed.0.weight", {c.pos_hidden, 3}, &pos_embed_0_weight});
  s.push_back({"pos_embed.0.bias", {c.pos_hidden}, &pos_embed_0_bias, Init::Zeros});
  s.push_back({"pos_embed.2.weight", {D, c.pos_hidden}, &pos_embed_2_weight});
  s.push_back({"pos_embed.2.bias", {D}, &pos_embed_2_bias, Init::Zeros});
  for (int64_t i = 0; i < c.depth; ++i) {
    PointMaeBlock& b = blocks[static_cast<std::size_t>(i)];
    const std::string p = "blocks.blocks." + std::to_string(i) + ".";
    s.push_back({p + "norm1.weight", {D}, &b.norm1_weight, Init::Ones});
    s.push_back({p + "norm1.bias", {D}, &b.norm1_bias, Init::Zeros});
    s.push_back({p + "attn.qkv.weight", {3 * D, D}, &b.attn_qkv_weight});  // no bias
    s.push_back({p + "attn.proj.weight", {D, D}, &b.attn_proj_weight});
    s.push_back({p + "attn.proj.bias", {D}, &b.attn_proj_bias, Init::Zeros});
    s.push_back({p + "norm2.weight", {D}, &b.norm2_weight, Init::Ones});
    s.push_back({p + "norm2.bias", {D}, &b.norm2_bias, Init::Zeros});
    s.push_back({p + "mlp.fc1.weight", {c.mlp, D}, &b.mlp_fc1_weight});
    s.push_back({p + "mlp.fc1.bias", {c.mlp}, &b.mlp_fc1_bias, Init::Zeros});
    s.push_back({p + "mlp.fc2.weight", {D, c.mlp}, &b.mlp_fc2_weight});
    s.push_back({p + "mlp.fc2.bias", {D}, &b.mlp_fc2_bias, Init::Zeros});
  }
  s.push_back({"norm.weight", {D}, &norm_weight, Init::Ones});
  s.push_back({"norm.bias", {D}, &norm_bias, Init::Zeros});
  return s;
}

std::string point_mae_key(const std::string& key) {
  // WEIGHTS.md: strip `module.` then `MAE_encoder.` (or `base_model.`), in any order seen.
  static const char* kPrefixes[] = {"module.", "base_model.", "MAE_encoder."};
  std::string k = key;
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (const char* p : kPrefixes) {
      const std::string ps(p);
      if (k.rfind(ps, 0) == 0) {
        k = k.substr(ps.size());
        stripped = true;
      }
    }
  }
  // Pretraining-only parts of the checkpoint: not used by the frozen encoder.
  static const char* kDecoder[] = {"MAE_decoder.", "decoder_pos_embed.", "increase_dim.",
                                   "mask_token", "decoder_"};
  for (const char* p : kDecoder)
    if (k.rfind(p, 0) == 0) return "";
  return k;
}

LoadReport PointMae::load(const st::File& file) {
  return load_params(file, param_specs(), "point_mae", point_mae_key);
}

// ---- FPS ------------------------------------------------------------------------------------
std::vector<int64_t> farthest_point_sample(const Tensor& points, int64_t m) {
  CMDR_CHECK(points.dim() == 2 && points.size(1) == 3, "fps: points ", points.str(),
             " must be [N, 3]");
  const int64_t N = points.size(0);
  CMDR_CHECK(N > 0 && m > 0, "fps: need N > 0 points and m > 0 centres (N = ", N, ", m = ", m, ")");
  // More centres than points would repeat index 0 once every point is taken: refuse.
  CMDR_CHECK(m <= N, "fps: ", m, " centres requested from only ", N, " points");
  ProfileScope prof("fps", 8.0 * static_cast<double>(N) * static_cast<double>(m));
  Tensor pc = points.contiguous();
  const float* p = pc.data();
  std::vector<float> mind(static_cast<std::size_t>(N), 1e10f);
  std::vector<int64_t> out(static_cast<std::size_t>(m));
  // Serial on purpose: one iteration is ~N·8 flops (0.3 ms at N = 40k), too little to
  // amortise a parallel region's barrier on a loaded machine; two passes so both loops
  // vectorise (running minimum, then the first index of the maximum).
  float* md = mind.data();
  int64_t cur = 0;
  out[0] = 0;
  for (int64_t i = 1; i < m; ++i) {
    const float cx = p[3 * cur], cy = p[3 * cur + 1], cz = p[3 * cur + 2];
    for (int64_t k = 0; k < N; ++k) {
      const float dx = p[3 * k] - cx, dy = p[3 * k + 1] - cy, dz = p[3 * k + 2] - cz;
      const float d = (dx * dx + dy * dy) + dz * dz;  // -ffp-contract=off: no FMA
      md[k] = d < md[k] ? d : md[k];
    }
    float best = md[0];
    int64_t bi = 0;
    for (int64_t k = 1; k < N; ++k)
      if (md[k] > best) {  // strict: the first index of the maximum wins
        best = md[k];
        bi = k;
      }
    cur = bi;
    out[static_cast<std::size_t>(i)] = cur;
  }
  return out;
}

// ---- KNN ------------------------------------------------------------------------------------
std::vector<int64_t> knn_indices(const Tensor& points, const Tensor& queries, int64_t k) {
  CMDR_CHECK(points.dim() == 2 && points.size(1) == 3, "knn: points ", points.str(),
             " must be [N, 3]");
  CMDR_CHECK(queries.dim() == 2 && queries.size(1) == 3, "knn: queries ", queries.str(),
             " must be [G, 3]");
  const int64_t N = points.size(0), G = queries.size(0);
  CMDR_CHECK(k > 0 && k <= N, "knn: k = ", k, " neighbours requested from ", N, " points");
  ProfileScope prof("knn", 8.0 * static_cast<double>(N) * static_cast<double>(G));
  Tensor pc = points.contiguous(), qc = queries.contiguous();
  const float* p = pc.data();
  const float* q = qc.data();
  std::vector<int64_t> out(static_cast<std::size_t>(G * k));
#pragma omp parallel
  {
    std::vector<std::pair<float, int64_t>> cand(static_cast<std::size_t>(N));
#pragma omp for schedule(static)
    for (int64_t g = 0; g < G; ++g) {
      const float cx = q[3 * g], cy = q[3 * g + 1], cz = q[3 * g + 2];
      for (int64_t n = 0; n < N; ++n) {
        const float dx = p[3 * n] - cx, dy = p[3 * n + 1] - cy, dz = p[3 * n + 2] - cz;
        cand[static_cast<std::size_t>(n)] = {(dx * dx + dy * dy) + dz * dz, n};
      }
      // (distance, index) lexicographic: ties go to the lower index, result is exact.
      auto kth = cand.begin() + k;
      if (k < N) std::nth_element(cand.begin(), kth - 1, cand.end());
      std::sort(cand.begin(), kth);
      for (int64_t j = 0; j < k; ++j)
        out[static_cast<std::size_t>(g * k + j)] = cand[static_cast<std::size_t>(j)].second;
    }
  }
  return out;
}

// ---- mini-PointNet --------------------------------------------------------------------------
namespace {

// BatchNorm1d on channels-major activations x [C, R] (R = G·K points): viewed as
// [1, C, R] so every channel's statistics run over contiguous memory. Sample statistics
// (training-mode formula, float64 in the op, no running-stat update) unless
// cfg.bn_running_stats (SPEC 4.2 step 3).
Tensor encoder_bn(const PointMaeConfig& c, const Tensor& x, const Tensor& w, const Tensor& b,
                  const Tensor& rm, const Tensor& rv) {
  const int64_t C = x.size(0), R = x.size(1);
  Tensor x3 = x.view({1, C, R});
  Tensor y = c.bn_running_stats
                 ? ops::batch_norm_forward(x3, w, b, rm, rv, /*training=*/false, 0.1f, c.bn_eps)
                 : ops::batch_norm_forward(x3, w, b, Tensor(), Tensor(), /*training=*/true, 0.1f,
                                           c.bn_eps);
  return y.view({C, R});
}

// Conv1d(kernel 1) on channels-major x [Cin, R]: W [Cout, Cin(, 1)] · x + b -> [Cout, R].
Tensor conv1x1(const Tensor& w, const Tensor& x, const Tensor& b) {
  Tensor y = ops::matmul_forward(w.view({w.size(0), w.size(1)}), x);
  if (!b.defined()) return y;
  return ops::add_forward(y, b.view({b.size(0), 1}));
}

}  // namespace

// neighborhood [G, K, 3] -> tokens [G, dim].
// Activations are channels-major [C, G·K] (PyTorch's [G, C, K] with the group axis moved
// out), so each Conv1d(kernel 1) is one GEMM and BatchNorm / max-over-points read
// contiguous rows. The second_conv input [g broadcast ; f] is never materialised:
// W·[g; f] = W_g·g (once per group) + W_f·f, exact up to rounding (SPEC 10); it halves that
// layer and saves a 2c2 × G·K buffer.
Tensor point_mae_encoder_forward(const PointMae& m, const Tensor& neighborhood) {
  const PointMaeConfig& c = m.cfg;
  CMDR_CHECK(neighborhood.dim() == 3 && neighborhood.size(2) == 3,
             "point_mae encoder: ", "neighborhood ", neighborhood.str(), " must be [G, K, 3]");
  const int64_t G = neighborhood.size(0), K = neighborhood.size(1), R = G * K;
  Tensor x = neighborhood.reshape({R, 3}).transpose(0, 1).contiguous();               // [3, R]
  Tensor h = conv1x1(m.encoder_first_conv_0_weight, x, m.encoder_first_conv_0_bias);  // [c1, R]
  x = Tensor();
  h = encoder_bn(c, h, m.encoder_first_conv_1_weight, m.encoder_first_conv_1_bias,
                 m.encoder_first_conv_1_running_mean, m.encoder_first_conv_1_running_var);
  h = ops::relu_forward(h);
  Tensor f = conv1x1(m.encoder_first_conv_3_weight, h, m.encoder_first_conv_3_bias);  // [c2, R]
  h = Tensor();
  Tensor g = ops::max_forward(f.view({c.enc_c2, G, K}), 2, false, nullptr);  // [c2, G]
  Tensor w2 = m.encoder_second_conv_0_weight.view({c.enc_c3, 2 * c.enc_c2});
  Tensor wg = w2.narrow(1, 0, c.enc_c2).contiguous();         // acts on the global feature
  Tensor wf = w2.narrow(1, c.enc_c2, c.enc_c2).contiguous();  // acts on the point feature
  // The bias goes on the small per-group term: one [c3, G·K] pass less.
  const Tensor& b2 = m.encoder_second_conv_0_bias;
  Tensor hg = ops::add_forward(ops::matmul_forward(wg, g), b2.view({b2.size(0), 1}));  // [c3, G]
  Tensor hf = ops::matmul_forward(wf, f);                                              // [c3, R]
  f = g = Tensor();
  h = ops::add_forward(hf.view({c.enc_c3, G, K}), hg.view({c.enc_c3, G, 1})).view({c.enc_c3, R});
  hf = hg = Tensor();
  h = encoder_bn(c, h, m.encoder_second_conv_1_weight, m.encoder_second_conv_1_bias,
                 m.encoder_second_conv_1_running_mean, m.encoder_second_conv_1_running_var);
  // ReLU, Conv1d(c3 -> dim), max over points, per chunk of groups: the [dim, R] output and
  // a second [c3, R] buffer never exist in full.
  Tensor tokens_t = Tensor::empty({c.dim, G});
  const int64_t chunk = 128;
  for (int64_t g0 = 0; g0 < G; g0 += chunk) {
    const int64_t n = std::min(chunk, G - g0);
    Tensor r = ops::relu_forward(h.narrow(1, g0 * K, n * K));  // [c3, n·K]
    Tensor y = conv1x1(m.encoder_second_conv_3_weight, r, m.encoder_second_conv_3_bias);
    r = Tensor();
    Tensor mx = ops::max_forward(y.view({c.dim, n, K}), 2, false, nullptr);  // [dim, n]
    tokens_t.narrow(1, g0, n).copy_(mx);
  }
  return tokens_t.transpose(0, 1).contiguous();  // [G, dim]
}

int64_t point_mae_min_points(const PointMaeConfig& c) {
  return std::min(kMinPointMaePoints, c.group_size);
}

PointMaeGrouping point_mae_grouping(const PointMaeConfig& c, int64_t n, bool scale) {
  PointMaeGrouping g;
  const std::string ns = std::to_string(n);
  if (n >= c.num_group && n >= c.group_size) {  // SPEC 4.2 unchanged
    g.groups = c.num_group;
    g.group_size = c.group_size;
    return g;
  }
  if (!scale) {
    g.reason = ns + " valid points < " + std::to_string(std::max(c.num_group, c.group_size)) +
               " (" + std::to_string(c.num_group) + " groups of " + std::to_string(c.group_size) +
               "; the checkpoint predates the small-cloud rule) -> no 3D features";
    return g;
  }
  const int64_t lo = point_mae_min_points(c);
  if (n < lo) {
    g.reason = ns + " valid points < " + std::to_string(lo) +
               " (the smallest Point-MAE group allowed) -> no 3D features";
    return g;
  }
  g.groups = std::min(c.num_group, n);
  g.group_size = std::min(c.group_size, n);
  g.scaled = true;
  g.reason = ns + " valid points < " + std::to_string(c.num_group) + " groups of " +
             std::to_string(c.group_size) + " -> Point-MAE on " + std::to_string(g.groups) +
             " groups of " + std::to_string(g.group_size) + " points";
  return g;
}

PointMaeOutput point_mae_forward(const PointMae& m, const Tensor& points, PointMaeTrace* trace,
                                 const PointMaeGrouping* grouping) {
  PointMaeConfig c = m.cfg;  // a copy: only the group count / size may differ
  if (grouping) {
    CMDR_CHECK(grouping->groups > 0 && grouping->group_size > 0, "point_mae: grouping ",
               grouping->groups, " × ", grouping->group_size, " has no groups");
    c.num_group = grouping->groups;
    c.group_size = grouping->group_size;
  }
  CMDR_CHECK(points.dim() == 2 && points.size(1) == 3, "point_mae: points ", points.str(),
             " must be [N, 3]");
  const int64_t N = points.size(0), G = c.num_group, K = c.group_size;
  CMDR_CHECK(N >= K, "point_mae: only ", N, " valid points, fewer than the group size ", K,
             " (no 3D features for this sample; fall back to 2D-only)");
  ProfileScope prof("point_mae_forward", point_mae_flops(c));
  Tensor pc = points.contiguous();
  PointMaeOutput out;
  // 1. FPS centres; 2. KNN neighbourhoods relative to their centre.
  out.center_idx = farthest_point_sample(pc, G);
  out.centers = ops::index_select_forward(pc, out.center_idx);  // [G, 3]
  std::vector<int64_t> nn = knn_indices(pc, out.centers, K);
  Tensor nb = ops::index_select_forward(pc, nn).view({G, K, 3});
  nb = ops::sub_forward(nb, out.centers.view({G, 1, 3}));
  if (trace) {
    trace->knn_idx = nn;
    trace->neighborhood = nb;
  }
  nn.clear();
  nn.shrink_to_fit();
  // 3. mini-PointNet
  Tensor x = point_mae_encoder_forward(m, nb);  // [G, dim]
  nb = Tensor();
  // 4. pos = Linear, GELU, Linear on the centres
  Tensor pos = ops::linear_gelu_forward(out.centers, m.pos_embed_0_weight, m.pos_embed_0_bias);
  pos = ops::linear_forward(pos, m.pos_embed_2_weight, m.pos_embed_2_bias);
  if (trace) {
    trace->tokens = x;
    trace->pos = pos;
  }
  // 5-6. blocks with pos re-added; the shared final norm on each tapped output.
  const int64_t last = *std::max_element(c.taps.begin(), c.taps.end());
  std::vector<Tensor> tapped(c.taps.size());
  for (int64_t i = 0; i <= last; ++i) {
    x = transformer_block_forward(ops::add_forward(x, pos), m.blocks[static_cast<std::size_t>(i)],
                                  c.heads, c.ln_eps);
    if (trace) trace->block_out.push_back(x);
    for (std::size_t t = 0; t < c.taps.size(); ++t)
      if (c.taps[t] == i)
        tapped[t] = ops::layer_norm_forward(x, m.norm_weight, m.norm_bias, c.ln_eps);
  }
  out.features = Tensor::concat(tapped, 1);  // [G, dim · taps]
  return out;
}

double point_mae_flops(const PointMaeConfig& c) {
  const double R = static_cast<double>(c.num_group * c.group_size),
               G = static_cast<double>(c.num_group);
  const double enc =
      2 * R *
          (3.0 * c.enc_c1 + static_cast<double>(c.enc_c1) * c.enc_c2 +
           static_cast<double>(c.enc_c2) * c.enc_c3 + static_cast<double>(c.enc_c3) * c.dim) +
      2 * G * static_cast<double>(c.enc_c2) * c.enc_c3;
  const double pos = 2 * G * (3.0 * c.pos_hidden + static_cast<double>(c.pos_hidden) * c.dim);
  const int64_t last = *std::max_element(c.taps.begin(), c.taps.end());
  return enc + pos +
         static_cast<double>(last + 1) * transformer_block_flops(c.num_group, c.dim, c.mlp);
}

}  // namespace cmdr::models
