// `cmdr-iad score --checkpoint CKPT --rgb A.png --xyz A.tiff --rgb-weights F --xyz-weights F
//  --dump OUT.safetensors`: the audit dump of one sample: the tensors of `features --dump`
// (rgb_input, pc_resized, rgb_tokens, xyz_centers, xyz_group_features, rgb_patch, xyz_patch,
// valid) plus Cmdr's dump_tensors (mapped_*, recon_*, d_*, a_map, a_rec, fused, pixel_map,
// aupro_map, image_score).
#include <filesystem>
#include <iostream>

#include "apps/cli_common.hpp"
#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "io/safetensors.hpp"

namespace cmdr::app {

void add_score(CLI::App& root) {
  auto ca = std::make_shared<CheckpointArgs>();
  auto ea = std::make_shared<ExtractorArgs>();
  auto rgb = std::make_shared<std::string>(), xyz = std::make_shared<std::string>(),
       dump = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  CLI::App* c = root.add_subcommand(
      "score", "dump every intermediate tensor of one sample (features + networks + fusion)");
  add_checkpoint_flags(c, *ca);
  add_weight_flags(c, *ea, true);
  c->add_option("--rgb", *rgb, "8-bit RGB PNG")->required()->check(CLI::ExistingFile);
  c->add_option("--xyz", *xyz, "float32 xyz TIFF")->required()->check(CLI::ExistingFile);
  c->add_option("--dump", *dump, "output safetensors")->required();
  c->add_flag("--force", *force, "overwrite an existing --dump");
  c->callback([=] {
    CMDR_CHECK(*force || !std::filesystem::exists(*dump), "score: --dump '", *dump,
               "' exists; pass --force to overwrite");
    models::LoadedCheckpoint ck = open_checkpoint(*ca);
    const models::Extractors ex = extractors_for(ck, *ea, "score");
    const models::ScoredSample r = models::score_sample(*ck.model, ex, *rgb, *xyz, true);
    if (!r.warning.empty()) std::cerr << "score: WARNING: " << r.warning << "\n";
    st::Writer w;
    const models::SampleFeatures& f = r.features;
    if (f.rgb_input.defined()) w.add("rgb_input", f.rgb_input);
    if (f.pc_resized.defined()) w.add("pc_resized", f.pc_resized);
    if (f.has_rgb) w.add("rgb_tokens", f.rgb_tokens);
    if (f.has_3d) {
      w.add("xyz_centers", f.centers);
      w.add("xyz_group_features", f.group_features);
    }
    w.add("rgb_patch", r.expanded.rgb);
    w.add("xyz_patch", r.expanded.xyz);
    w.add("valid", r.expanded.valid);
    for (const auto& [name, t] : models::dump_tensors(r.out)) w.add(name, t);
    w.set_metadata("cmdr.checkpoint", ck.path);
    w.set_metadata("cmdr.checkpoint_sha256", ck.sha256);
    w.set_metadata("cmdr.mode_used", models::mode_name(r.mode_used));
    w.set_metadata("cmdr.rgb", *rgb);
    w.set_metadata("cmdr.xyz", *xyz);
    w.write(*dump);
    if (!globals().quiet) {
      std::cerr << "score: wrote " << *dump << " (image score " << r.out.fusion.image_score
                << ")\n";
    }
  });
}

}  // namespace cmdr::app
