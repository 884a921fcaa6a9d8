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
  CMDR_CHECK(a.size >= 3, "features: --size ", a.size, " must be >= 3");
  const int64_t S = a.size;
  const int64_t t0 = now_ns();
  if (a.profile) {
    Profiler::reset();
    Profiler::enable(true);
  }
  // Weights first: a bad file fails before any compute.
  models::DinoVit vit;
  bool random = false;
  {
    st::File f(a.rgb_weights);
    models::LoadReport r = vit.load(f);
    random |= r.random_weights;
    if (!r.note().empty()) say(r.note());
  }
  models::PointMaeConfig pcfg;
  pcfg.bn_running_stats = a.bn_running_stats;
  models::PointMae pmae(pcfg);
  {
    st::File f(a.xyz_weights);
    models::LoadReport r = pmae.load(f);
    random |= r.random_weights;
    if (!r.note().empty()) say(r.note());
  }
  // SPEC 3.1 / 3.2 transforms.
  io::Image8 img = io::read_rgb_png(a.rgb);
  Tensor rgb_input = io::rgb_transform(img, S);
  Tensor vit_input = S == vit.cfg.image ? rgb_input : io::rgb_transform(img, vit.cfg.image);
  img = io::Image8();
  Tensor pc_resized = io::cloud_transform(io::read_xyz_tiff(a.xyz), S);
  // SPEC 4.1
  Tensor rgb_tokens = models::dino_vit_forward(vit, vit_input);
  vit_input = Tensor();
  // SPEC 4.2 on the valid points of the resized cloud
  models::ValidPoints vp = models::valid_points(pc_resized);
  say(std::to_string(vp.xyz.size(0)) + " valid points of " + std::to_string(S * S));
  CMDR_CHECK(vp.xyz.size(0) >= pcfg.group_size, "features: '", a.xyz, "' has only ", vp.xyz.size(0),
             " valid points after resizing to ", S, "×", S,
             ", fewer than the Point-MAE group size ", pcfg.group_size,
             ": no 3D features for this sample (2D-only)");
  models::PointMaeOutput pm = models::point_mae_forward(pmae, vp.xyz);
  // SPEC 4.3
  Tensor rgb_patch = models::assemble_rgb(rgb_tokens, vit.cfg.grid(), S);
  Tensor xyz_patch = a.assembly == "sparse"
                         ? models::assemble_xyz_sparse(vp.xyz, vp.pixel, pm.centers, pm.features, S)
                         : models::assemble_xyz(vp.xyz, vp.pixel, pm.centers, pm.features, S);
  Tensor valid = models::valid_mask(xyz_patch);

  st::Writer w;
  w.add("rgb_input", rgb_input);
  w.add("pc_resized", pc_resized);
  w.add("rgb_tokens", rgb_tokens);
  w.add("xyz_centers", pm.centers);
  w.add("xyz_group_features", pm.features);
  w.add("rgb_patch", rgb_patch);
  w.add("xyz_patch", xyz_patch);
  w.add("valid", valid);
  w.set_metadata("cmdr.size", std::to_string(S));
  w.set_metadata("cmdr.rgb", a.rgb);
  w.set_metadata("cmdr.xyz", a.xyz);
  w.set_metadata("cmdr.assembly", a.assembly);
  w.set_metadata("cmdr.bn", a.bn_running_stats ? "running_stats" : "sample_stats");
  if (random) w.set_metadata(models::kRandomWeightsKey, "true");
  w.write(a.dump);
  double nvalid = 0;
  for (float v : valid.to_vector()) nvalid += v;
  say("wrote " + a.dump + " (" + std::to_string(static_cast<int64_t>(nvalid)) +
      " valid positions, " + std::to_string((now_ns() - t0) / 1000000) + " ms, peak " +
      std::to_string(memory_stats().peak_bytes >> 20) + " MiB)");
  if (a.profile) Profiler::print_table(std::cerr);
  if (random)
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
