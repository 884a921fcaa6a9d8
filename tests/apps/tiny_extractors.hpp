#pragma once
// Tiny random extractors for end-to-end tests (reduced widths, written like init-extractors
// with head counts / taps in metadata): DINO image 32 / patch 8 / dim 32, Point-MAE dim 16.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/rng.hpp"
#include "io/safetensors.hpp"
#include "models/dino_vit.hpp"
#include "models/pipeline.hpp"
#include "models/point_mae.hpp"

namespace cmdr::testing {

inline void write_specs(std::vector<models::ParamSpec> specs, uint64_t seed,
                        const std::string& path, const std::map<std::string, std::string>& meta) {
  Rng rng(seed);
  st::Writer w;
  for (const auto& s : specs) {
    Tensor t = Tensor::empty(s.shape);
    switch (s.init) {
      case models::Init::TruncNormal02:
        rng.fill_normal(t, 0.0f, 0.2f);  // larger than timm's .02: tiny nets need signal
        break;
      case models::Init::Zeros:
      case models::Init::BnRunningMean:
        t.fill_(0.0f);
        break;
      case models::Init::Ones:
      case models::Init::BnRunningVar:
        t.fill_(1.0f);
        break;
    }
    w.add(s.name, t);
  }
  w.set_metadata(models::kRandomWeightsKey, "true");
  for (const auto& [k, v] : meta) w.set_metadata(k, v);
  w.write(path);
}

// Point-MAE of the tiny extractors: dim 16, 2 blocks, both tapped -> 32 features.
inline models::PointMaeConfig tiny_pmae_config() {
  models::PointMaeConfig pc;
  pc.enc_c1 = 16;
  pc.enc_c2 = 16;
  pc.enc_c3 = 32;
  pc.pos_hidden = 16;
  pc.dim = 16;
  pc.depth = 2;
  pc.heads = 2;
  pc.mlp = 32;
  pc.taps = {0, 1};
  return pc;
}

// Tiny DINO (image 32, patch 8 -> 4×4 tokens, dim 32) and Point-MAE (dim 16, 2 blocks,
// both tapped -> 32 features).
inline std::pair<std::string, std::string> tiny_extractors(const std::string& dir) {
  models::DinoVitConfig dc;
  dc.image = 32;
  dc.dim = 32;
  dc.depth = 2;
  dc.heads = 2;
  dc.mlp = 64;
  models::DinoVit vit(dc);
  const std::string rgb = dir + "/vit.safetensors";
  write_specs(vit.param_specs(), 1, rgb, {{"cmdr.heads", "2"}});
  models::PointMae pm(tiny_pmae_config());
  const std::string xyz = dir + "/pmae.safetensors";
  write_specs(pm.param_specs(), 2, xyz, {{"cmdr.heads", "2"}, {"cmdr.taps", "0,1"}});
  return {rgb, xyz};
}

}  // namespace cmdr::testing
