// `cmdr-iad features --rgb A.png --xyz A.tiff --rgb-weights F --xyz-weights F [--size S]
//  --dump OUT.safetensors`: the audit view of the frozen extractors. Runs the SPEC 3.1-3.2
// transforms and SPEC 4, and dumps (float32, names and shapes exactly):
//   rgb_input 3×S×S, pc_resized 3×S×S, rgb_tokens 784×768 (final norm, cls dropped),
//   xyz_centers 1024×3, xyz_group_features 1024×1152, rgb_patch S²×768, xyz_patch S²×1152,
//   valid S² (1 = valid).
// The ViT always sees the 224×224 transform (its 28×28 grid, SPEC 4.1); for S != 224 that
// is a second transform of the same image, and rgb_input is the S×S one.
#include <iostream>

#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "engine/storage.hpp"
#include "io/image.hpp"
#include "io/safetensors.hpp"
#include "io/tiff.hpp"
#include "io/transforms.hpp"
#include "models/dino_vit.hpp"
#include "models/feature_assembly.hpp"
#include "models/pipeline.hpp"
#include "models/point_mae.hpp"

namespace cmdr::app {

namespace {

struct FeaturesArgs {
  std::string rgb, xyz, rgb_weights, xyz_weights, dump;
  int64_t size = 224;
  bool bn_running_stats = false;
  bool profile = false;
  std::string assembly = "dense";
};

void say(const std::string& s) {
  if (!globals().quiet) std::cerr << "features: " << s << "\n";
}

void run_features(const FeaturesArgs& a) {
  CMDR_CHECK(a.size >= 8, "features: --size ", a.size, " must be >= 8");
  const int64_t S = a.size;
  const int64_t t0 = now_ns();
  if (a.profile) {
    Profiler::reset();
    Profiler::enable(true);
  }
  // Weights first: a bad file fails before any compute. One code path with train/evaluate/
  // detect (models/pipeline.hpp).
  models::ExtractorOptions eo;
  eo.bn_running_stats = a.bn_running_stats;
  const models::Extractors ex =
      models::load_extractors(a.rgb_weights, a.xyz_weights, eo, globals().quiet);
  const models::SampleFeatures f = models::extract_features(ex, a.rgb, a.xyz, S, true);
  say(std::to_string(f.n_valid_points) + " valid points of " + std::to_string(S * S));
  CMDR_CHECK(f.has_3d, "features: ", f.warning);
  models::Sample s = models::expand_features(f, ex.rgb_dim(), ex.xyz_dim());
  if (a.assembly == "sparse") {  // the SPEC 10 operator form, for comparison with dense
    s.xyz = models::assemble_xyz_sparse(f.points, f.pixel, f.centers, f.group_features, S);
    s.valid = models::valid_mask(s.xyz);
  }

  st::Writer w;
  w.add("rgb_input", f.rgb_input);
  w.add("pc_resized", f.pc_resized);
  w.add("rgb_tokens", f.rgb_tokens);
  w.add("xyz_centers", f.centers);
  w.add("xyz_group_features", f.group_features);
  w.add("rgb_patch", s.rgb);
  w.add("xyz_patch", s.xyz);
  w.add("valid", s.valid);
  w.set_metadata("cmdr.size", std::to_string(S));
  w.set_metadata("cmdr.rgb", a.rgb);
  w.set_metadata("cmdr.xyz", a.xyz);
  w.set_metadata("cmdr.assembly", a.assembly);
  w.set_metadata("cmdr.bn", a.bn_running_stats ? "running_stats" : "sample_stats");
  if (ex.random) w.set_metadata(models::kRandomWeightsKey, "true");
  w.write(a.dump);
  double nvalid = 0;
  for (float v : s.valid.to_vector()) nvalid += v;
  say("wrote " + a.dump + " (" + std::to_string(static_cast<int64_t>(nvalid)) +
      " valid positions, " + std::to_string((now_ns() - t0) / 1000000) + " ms, peak " +
      std::to_string(memory_stats().peak_bytes >> 20) + " MiB)");
  if (a.profile) Profiler::print_table(std::cerr);
  if (ex.random)
    std::cerr << "features: WARNING: computed with RANDOM extractor weights; the dump is for "
                 "plumbing tests only.\n";
}

}  // namespace

void add_features(CLI::App& root) {
  CLI::App* c = root.add_subcommand("features",
                                    "run the frozen extractors on one sample and dump every stage");
  auto a = std::make_shared<FeaturesArgs>();
  c->add_option("--rgb", a->rgb, "8-bit RGB PNG")->required();
  c->add_option("--xyz", a->xyz, "float32 xyz TIFF (H×W×3, organised)")->required();
  c->add_option("--rgb-weights", a->rgb_weights, "DINO ViT-B/8 safetensors (timm names)")
      ->required();
  c->add_option("--xyz-weights", a->xyz_weights, "Point-MAE safetensors (converted pretrain.pth)")
      ->required();
  c->add_option("--size", a->size, "output side S (default 224)");
  c->add_option("--dump", a->dump, "output safetensors")->required();
  c->add_flag("--bn-running-stats", a->bn_running_stats,
              "Point-MAE BatchNorm with the stored running statistics instead of the sample's own "
              "(SPEC 4.2)");
  c->add_option("--assembly", a->assembly,
                "xyz_patch path: dense (SPEC 4.3 pools, default) or sparse (P·G, SPEC 10; equal "
                "up to rounding, faster)")
      ->check(CLI::IsMember({"dense", "sparse"}));
  c->add_flag("--profile", a->profile, "print the per-op time table (stderr)");
  c->callback([a] { run_features(*a); });
}

}  // namespace cmdr::app
