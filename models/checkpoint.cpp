#include "models/checkpoint.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "engine/error.hpp"
#include "io/safetensors.hpp"
#include "io/sha256.hpp"

namespace cmdr::models {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string fstr(float v) {
  if (!std::isfinite(v)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

float fparse(const std::string& s) {
  if (s == "nan" || s.empty()) return std::numeric_limits<float>::quiet_NaN();
  return std::stof(s);
}

const std::string& meta_req(const std::map<std::string, std::string>& m, const std::string& key,
                            const std::string& file) {
  const auto it = m.find(key);
  CMDR_CHECK(it != m.end(), "checkpoint ", file, ": metadata '", key, "' is missing");
  return it->second;
}

std::string meta_opt(const std::map<std::string, std::string>& m, const std::string& key) {
  const auto it = m.find(key);
  return it == m.end() ? std::string() : it->second;
}

}  // namespace

nlohmann::json config_to_json(const CmdrConfig& c) {
  nlohmann::json j;
  j["mode"] = mode_name(c.mode);
  j["side"] = c.side;
  j["rgb_dim"] = c.rgb_dim;
  j["xyz_dim"] = c.xyz_dim;
  j["dec2d"] = {
      {"dim", c.dec2d.dim},       {"hidden", c.dec2d.hidden},         {"heads", c.dec2d.heads},
      {"window", c.dec2d.window}, {"mlp_hidden", c.dec2d.mlp_hidden}, {"conv1", c.dec2d.conv1},
      {"conv2", c.dec2d.conv2},   {"rec_hidden", c.dec2d.rec_hidden}};
  j["dec3d"] = {{"length", c.dec3d.length},
                {"channels", c.dec3d.channels},
                {"widths", c.dec3d.widths},
                {"att_hidden", c.dec3d.att_hidden}};
  j["p_drop"] = c.p_drop;
  j["lr"] = c.lr;
  j["clip_grad"] = c.clip_grad;
  j["seed"] = c.seed;
  return j;
}

CmdrConfig config_from_json(const nlohmann::json& j, const std::string& file) {
  try {
    CmdrConfig c =
        CmdrConfig::spec(parse_mode(j.at("mode").get<std::string>()), j.at("side").get<int64_t>());
    c.rgb_dim = j.at("rgb_dim");
    c.xyz_dim = j.at("xyz_dim");
    const auto& d2 = j.at("dec2d");
    c.dec2d.dim = d2.at("dim");
    c.dec2d.hidden = d2.at("hidden");
    c.dec2d.heads = d2.at("heads");
    c.dec2d.window = d2.at("window");
    c.dec2d.mlp_hidden = d2.at("mlp_hidden");
    c.dec2d.conv1 = d2.at("conv1");
    c.dec2d.conv2 = d2.at("conv2");
    c.dec2d.rec_hidden = d2.at("rec_hidden");
    const auto& d3 = j.at("dec3d");
    c.dec3d.length = d3.at("length");
    c.dec3d.channels = d3.at("channels");
    c.dec3d.widths = d3.at("widths").get<std::array<int64_t, 4>>();
    c.dec3d.att_hidden = d3.at("att_hidden");
    c.p_drop = j.at("p_drop");
    c.lr = j.at("lr");
    c.clip_grad = j.at("clip_grad");
    c.seed = j.at("seed");
    return c;
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint ", file, ": metadata cmdr.config is malformed: ", e.what());
  }
}

void save_checkpoint(const std::string& path, Cmdr& model, const CheckpointMeta& meta,
                     bool with_optimizer) {
  st::Writer w;
  for (const auto& [k, t] : model.state_dict()) {
    if (ends_with(k, "num_batches_tracked")) {
      // PyTorch stores the counter as an int64 scalar.
      w.add_i64(k, {static_cast<int64_t>(std::llround(t.contiguous().data()[0]))}, t.shape());
    } else {
      w.add(k, t);
    }
  }
  int64_t steps = 0;
  for (int n = 0; n < 4; ++n) {
    if (!model.has(static_cast<Net>(n))) continue;
    ag::Adam& opt = model.optimizer(static_cast<Net>(n));
    steps = std::max(steps, opt.steps());
    if (!with_optimizer) continue;
    const std::string p = std::string("optim.") + kNetNames[n] + ".";
    for (std::size_t i = 0; i < opt.exp_avg().size(); ++i) {
      if (opt.exp_avg()[i].defined()) w.add(p + "exp_avg." + std::to_string(i), opt.exp_avg()[i]);
      if (opt.exp_avg_sq()[i].defined())
        w.add(p + "exp_avg_sq." + std::to_string(i), opt.exp_avg_sq()[i]);
    }
    w.set_metadata(p + "steps", std::to_string(opt.steps()));
  }
  w.set_metadata("cmdr.format", kCheckpointFormat);
  w.set_metadata("cmdr.mode", mode_name(meta.mode));
  w.set_metadata("cmdr.size", std::to_string(meta.side));
  w.set_metadata("cmdr.class", meta.cls);
  w.set_metadata("cmdr.epochs", std::to_string(meta.epochs));
  w.set_metadata("cmdr.seed", std::to_string(meta.seed));
  w.set_metadata("cmdr.steps", std::to_string(std::max(steps, meta.steps)));
  w.set_metadata("cmdr.losses", meta.losses.dump());
  w.set_metadata("cmdr.threshold", fstr(meta.threshold));
  w.set_metadata("cmdr.threshold_rule", meta.threshold_rule);
  if (!meta.fallback_thresholds.empty()) {
    nlohmann::json ft = nlohmann::json::object();
    for (const auto& [k, v] : meta.fallback_thresholds) ft[k] = fstr(v);
    w.set_metadata("cmdr.fallback_thresholds", ft.dump());
  }
  w.set_metadata("cmdr.map_scale", fstr(meta.map_scale));
  w.set_metadata("cmdr.rgb_sha256", meta.rgb_sha256);
  w.set_metadata("cmdr.xyz_sha256", meta.xyz_sha256);
  w.set_metadata("cmdr.rgb_weights", meta.rgb_weights);
  w.set_metadata("cmdr.xyz_weights", meta.xyz_weights);
  w.set_metadata("cmdr.extractor",
                 nlohmann::json{{"num_group", meta.extractor.num_group},
                                {"group_size", meta.extractor.group_size},
                                {"bn_running_stats", meta.extractor.bn_running_stats},
                                {"scale_groups", meta.extractor.scale_groups}}
                     .dump());
  CmdrConfig c = model.config();
  w.set_metadata("cmdr.config", config_to_json(c).dump());
  w.set_metadata("cmdr.version", CMDR_VERSION);
  w.write(path);
}

LoadedCheckpoint load_checkpoint(const std::string& path, const LoadOptions& opt) {
  st::File f(path);
  LoadedCheckpoint out;
  out.path = path;
  const auto& md = f.metadata();
  CheckpointMeta& m = out.meta;
  const bool bare = !md.count("cmdr.format");
  if (bare) {
    // A bare state dict: the caller must say what it is.
    bool any = false;
    for (const auto& t : f.tensors()) {
      for (const char* n : kNetNames) any |= t.name.rfind(std::string(n) + ".", 0) == 0;
    }
    CMDR_CHECK(any, "checkpoint ", path,
               ": neither a cmdr-iad checkpoint (no cmdr.format metadata) nor a state dict with "
               "the map2Dto3D./map3Dto2D./Dec2D./Dec3D. prefixes");
    CMDR_CHECK(!opt.mode.empty() && opt.side > 0, "checkpoint ", path,
               " is a bare state dict (no metadata): give --mode and --size to load it");
    if (!opt.quiet) {
      std::cerr << "WARNING: " << path
                << " is a bare state dict: no extractor hashes can be checked, no decision "
                   "threshold is stored (pass --threshold)\n";
    }
    m.bare = true;
    m.mode = parse_mode(opt.mode);
    m.side = opt.side;
    m.config = CmdrConfig::spec(m.mode, m.side);
  } else {
    const std::string fmt = md.at("cmdr.format");
    CMDR_CHECK(fmt == kCheckpointFormat, "checkpoint ", path, ": format '", fmt,
               "' is not supported by this build (expects '", kCheckpointFormat, "')");
    m.mode = parse_mode(meta_req(md, "cmdr.mode", path));
    m.side = std::stoll(meta_req(md, "cmdr.size", path));
    if (!opt.mode.empty()) {
      CMDR_CHECK(parse_mode(opt.mode) == m.mode, "checkpoint ", path, " was trained in mode ",
                 mode_name(m.mode), ", not --mode ", opt.mode);
    }
    if (opt.side > 0) {
      CMDR_CHECK(opt.side == m.side, "checkpoint ", path, " was trained at size S = ", m.side,
                 ", not --size ", opt.side);
    }
    m.cls = meta_opt(md, "cmdr.class");
    m.epochs = std::stoi(meta_req(md, "cmdr.epochs", path));
    m.seed = std::stoull(meta_req(md, "cmdr.seed", path));
    m.steps = std::stoll(meta_opt(md, "cmdr.steps").empty() ? "0" : md.at("cmdr.steps"));
    try {
      m.losses = nlohmann::json::parse(meta_opt(md, "cmdr.losses").empty() ? std::string("[]")
                                                                           : md.at("cmdr.losses"));
      const auto ej = nlohmann::json::parse(meta_req(md, "cmdr.extractor", path));
      m.extractor.num_group = ej.at("num_group");
      m.extractor.group_size = ej.at("group_size");
      m.extractor.bn_running_stats = ej.at("bn_running_stats");
      // Absent in checkpoints written before the small-cloud rule (issue 9 item 6): they
      // keep the 2D fallback their training used.
      m.extractor.scale_groups = ej.value("scale_groups", false);
      m.config = config_from_json(nlohmann::json::parse(meta_req(md, "cmdr.config", path)), path);
      const std::string ft = meta_opt(md, "cmdr.fallback_thresholds");
      if (!ft.empty()) {
        const nlohmann::json fj = nlohmann::json::parse(ft);
        for (auto it = fj.begin(); it != fj.end(); ++it) {
          const float t = fparse(it.value().get<std::string>());
          if (std::isfinite(t)) m.fallback_thresholds[it.key()] = t;
        }
      }
    } catch (const nlohmann::json::exception& e) {
      fail("checkpoint ", path, ": malformed JSON metadata: ", e.what());
    }
    CMDR_CHECK(m.config.mode == m.mode && m.config.side == m.side, "checkpoint ", path,
               ": cmdr.config disagrees with cmdr.mode / cmdr.size");
    m.threshold = fparse(meta_opt(md, "cmdr.threshold"));
    m.threshold_rule = meta_opt(md, "cmdr.threshold_rule");
    m.map_scale = fparse(meta_opt(md, "cmdr.map_scale"));
    m.rgb_sha256 = meta_opt(md, "cmdr.rgb_sha256");
    m.xyz_sha256 = meta_opt(md, "cmdr.xyz_sha256");
    m.rgb_weights = meta_opt(md, "cmdr.rgb_weights");
    m.xyz_weights = meta_opt(md, "cmdr.xyz_weights");
    m.version = meta_opt(md, "cmdr.version");
  }
  out.model = std::make_unique<Cmdr>(m.config);
  ag::StateDict sd;
  for (const auto& t : f.tensors()) {
    if (t.name.rfind("optim.", 0) == 0) continue;
    sd[t.name] = f.get(t.name, /*convert=*/true);
    // Non-finite weights can only give non-finite (or silently wrong) scores: refuse them
    // here, naming the tensor, rather than label samples later.
    const std::vector<float> v = sd[t.name].to_vector();
    const auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
    CMDR_CHECK(bad == v.end(), "checkpoint ", path, ": tensor '", t.name, "' holds a non-finite ",
               "value (", *bad, " at flat index ", bad - v.begin(), " of ", v.size(),
               "): the weights are unusable (a diverged or corrupted run?)");
  }
  // Another mode's checkpoint has other networks: say so plainly before the strict load.
  for (int n = 0; n < 4; ++n) {
    const std::string p = std::string(kNetNames[n]) + ".";
    bool present = false;
    for (const auto& [k, t] : sd) present |= k.rfind(p, 0) == 0;
    const bool needed = out.model->has(static_cast<Net>(n));
    CMDR_CHECK(present == needed, "checkpoint ", path, ": mode ", mode_name(m.mode),
               needed ? " needs " : " does not use ", "network ", kNetNames[n], " but the file ",
               present ? "has" : "lacks", " it (a checkpoint of another mode?)");
  }
  try {
    out.model->load_state_dict(sd, true);
  } catch (const Error& e) {
    fail("checkpoint ", path, " (mode ", mode_name(m.mode), ", S = ", m.side, "): ", e.what(),
         " (a checkpoint of another size?)");
  }
  if (opt.restore_optimizer) {
    for (int n = 0; n < 4; ++n) {
      if (!out.model->has(static_cast<Net>(n))) continue;
      ag::Adam& a = out.model->optimizer(static_cast<Net>(n));
      const std::string p = std::string("optim.") + kNetNames[n] + ".";
      const std::string steps = meta_opt(md, p + "steps");
      CMDR_CHECK(!steps.empty(), "checkpoint ", path,
                 ": no optimizer state (not a resumable per-epoch checkpoint)");
      a.set_steps(std::stoll(steps));
      auto params = out.model->net(static_cast<Net>(n))->parameters();
      a.exp_avg().resize(params.size());
      a.exp_avg_sq().resize(params.size());
      for (std::size_t i = 0; i < params.size(); ++i) {
        const std::string k1 = p + "exp_avg." + std::to_string(i);
        const std::string k2 = p + "exp_avg_sq." + std::to_string(i);
        if (f.has(k1)) a.exp_avg()[i] = f.get(k1);
        if (f.has(k2)) a.exp_avg_sq()[i] = f.get(k2);
      }
    }
  }
  out.sha256 = sha256_file_hex(path);
  return out;
}

void check_extractor_hashes(const CheckpointMeta& meta, const Extractors& ex, bool allow_mismatch) {
  if (meta.bare) return;  // load_checkpoint already warned that nothing can be checked
  std::string problem;
  auto cmp = [&](const char* what, const std::string& want, const std::string& got,
                 const std::string& file) {
    if (got.empty()) return;  // that extractor is not used
    if (want.empty()) {
      problem += std::string(what) + ": the checkpoint records no hash (" + file + " has " +
                 got.substr(0, 16) + "...); ";
    } else if (want != got) {
      problem += std::string(what) + " weights '" + file + "' have sha256 " + got +
                 " but the checkpoint was trained with " + want + "; ";
    }
  };
  cmp("rgb", meta.rgb_sha256, ex.rgb_sha256, ex.rgb_path);
  cmp("xyz", meta.xyz_sha256, ex.xyz_sha256, ex.xyz_path);
  if (problem.empty()) return;
  if (!allow_mismatch) {
    fail("extractor weights do not match the checkpoint: ", problem,
         "pass the weights it was trained with, or --allow-weight-mismatch to proceed anyway");
  }
  std::cerr << "\n*** WARNING: --allow-weight-mismatch: " << problem
            << "the scores are NOT those the checkpoint was calibrated for. ***\n\n";
}

}  // namespace cmdr::models
