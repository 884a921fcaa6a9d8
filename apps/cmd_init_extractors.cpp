// `cmdr-iad init-extractors --seed N --out DIR`: seeded RANDOM weights for both frozen
// extractors in the exact timm / Point-MAE layouts (WEIGHTS.md), for tests and for running
// without the pretrained files. Initialisation follows timm / Point-MAE: trunc-normal
// (std .02) for linear/conv weights, cls_token and pos_embed; zero biases; LayerNorm and
// BatchNorm weights 1, biases 0; BatchNorm running statistics non-trivial (so the running-
// statistics variant is exercised) and num_batches_tracked an I64 scalar. Every file is
// flagged with metadata cmdr.random_weights = "true", and every later load of it warns loudly.
#include <filesystem>
#include <iostream>

#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/safetensors.hpp"
#include "io/sha256.hpp"
#include "models/dino_vit.hpp"
#include "models/point_mae.hpp"

namespace cmdr::app {

namespace {

void write_random(const std::vector<models::ParamSpec>& specs,
                  const std::vector<std::string>& counters, uint64_t seed, uint64_t stream,
                  const std::string& format, const std::string& path, bool print = true) {
  Rng rng(seed * 2 + stream);  // one stream per file
  models::init_params(specs, rng);
  int64_t params = 0;
  for (const auto& s : specs) params += s.target->numel();
  models::write_params(specs, counters,
                       {{"cmdr.seed", std::to_string(seed)}, {"cmdr.format", format}}, path);
  if (!print) return;
  std::cout << path << ": " << specs.size() + counters.size() << " tensors, " << params
            << " parameters, RANDOM (seed " << seed << "), sha256 " << sha256_file_hex(path)
            << "\n";
}

}  // namespace

std::pair<std::string, std::string> write_random_extractors(const std::string& dir, uint64_t s,
                                                            bool print) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  CMDR_CHECK(!ec, "init-extractors: cannot create '", dir, "': ", ec.message());
  const std::string rgb = (std::filesystem::path(dir) / "dino_vit_b8.safetensors").string();
  const std::string xyz = (std::filesystem::path(dir) / "point_mae.safetensors").string();
  models::DinoVit vit;
  write_random(vit.param_specs(), {}, s, 1, "timm vit_base_patch8_224.dino", rgb, print);
  models::PointMae pm;
  write_random(
      pm.param_specs(),
      {"encoder.first_conv.1.num_batches_tracked", "encoder.second_conv.1.num_batches_tracked"}, s,
      2, "Point-MAE encoder (prefixes stripped)", xyz, print);
  return {rgb, xyz};
}

void add_init_extractors(CLI::App& root) {
  CLI::App* c = root.add_subcommand(
      "init-extractors", "write seeded RANDOM extractor weights (timm / Point-MAE layouts)");
  auto seed = std::make_shared<uint64_t>(0);
  auto out = std::make_shared<std::string>();
  c->add_option("--seed", *seed, "random seed (default: the global --seed)");
  c->add_option("--out", *out, "output directory (created if missing)")->required();
  c->callback([c, seed, out] {
    const uint64_t s = c->count("--seed") ? *seed : globals().seed;
    write_random_extractors(*out, s, true);
    std::cerr << "init-extractors: these weights are RANDOM: use them for tests and plumbing "
                 "only, never for results.\n";
  });
}

}  // namespace cmdr::app
