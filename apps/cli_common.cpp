#include "apps/cli_common.hpp"

#include <filesystem>
#include <iostream>

#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "engine/precision.hpp"
#include "engine/profiler.hpp"

namespace cmdr::app {

namespace fs = std::filesystem;

void add_weight_flags(CLI::App* c, ExtractorArgs& a, bool inference) {
  c->add_option("--rgb-weights", a.rgb_weights,
                inference ? "DINO ViT-B/8 safetensors (default: the path recorded in the "
                            "checkpoint, when it exists)"
                          : "DINO ViT-B/8 safetensors (timm vit_base_patch8_224.dino)");
  c->add_option("--xyz-weights", a.xyz_weights,
                inference ? "Point-MAE safetensors (default: the path recorded in the checkpoint)"
                          : "Point-MAE safetensors (converted pretrain.pth)");
  // Process-wide GEMM/conv precision (engine/precision.hpp), set while parsing so a CPU
  // without AVX512_BF16 is refused before any work starts.
  c->add_option("--precision", a.precision,
                "dense products (linear, attention, conv): fp32 (default, the reference) or "
                "bf16 (bfloat16 operands, float32 accumulation; needs AVX512_BF16)")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->each([](const std::string& v) { set_precision(parse_precision(v, "--precision")); });
  if (inference) {
    c->add_flag("--allow-weight-mismatch", a.allow_mismatch,
                "proceed (with a loud warning) when the extractor files' SHA-256 differ from "
                "those recorded in the checkpoint");
  }
}

void add_group_flags(CLI::App* c, ExtractorArgs& a) {
  c->add_option("--groups", a.groups, "Point-MAE FPS centres (SPEC 4.2: 1024)")
      ->check(CLI::PositiveNumber);
  c->add_option("--group-size", a.group_size, "Point-MAE points per group (SPEC 4.2: 128)")
      ->check(CLI::PositiveNumber);
  c->add_flag("--bn-running-stats", a.bn_running_stats,
              "Point-MAE BatchNorm with its running statistics (SPEC 4.2 option)");
}

models::Extractors extractors_for(const models::LoadedCheckpoint& ck, const ExtractorArgs& a,
                                  const char* verb) {
  const models::Mode mode = ck.meta.mode;
  auto pick = [&](const std::string& given, const std::string& recorded, const char* flag,
                  bool needed) -> std::string {
    if (!needed) return "";
    if (!given.empty()) return given;
    CMDR_CHECK(!recorded.empty() && fs::exists(recorded), verb, ": ", flag,
               " is required (the checkpoint ",
               recorded.empty() ? std::string("records no weight path")
                                : "records '" + recorded + "', which does not exist",
               ")");
    return recorded;
  };
  const bool need_rgb = models::mode_uses_dec2d(mode) || models::mode_uses_mapping(mode);
  const bool need_xyz = models::mode_uses_dec3d(mode) || models::mode_uses_mapping(mode);
  const std::string rgb = pick(a.rgb_weights, ck.meta.rgb_weights, "--rgb-weights", need_rgb);
  const std::string xyz = pick(a.xyz_weights, ck.meta.xyz_weights, "--xyz-weights", need_xyz);
  models::ExtractorOptions eo = ck.meta.extractor;
  models::Extractors ex = models::load_extractors(rgb, xyz, eo, globals().quiet);
  models::check_extractor_hashes(ck.meta, ex, a.allow_mismatch);
  if (ex.random && !globals().quiet) {
    std::cerr << verb
              << ": WARNING: RANDOM extractor weights: scores are for plumbing / "
                 "demos only.\n";
  }
  return ex;
}

void add_checkpoint_flags(CLI::App* c, CheckpointArgs& a, bool allow_dir) {
  c->add_option("--checkpoint", a.path,
                allow_dir ? "checkpoint written by `cmdr-iad train`, or a folder of "
                            "<class>.safetensors checkpoints (one per class)"
                          : "checkpoint written by `cmdr-iad train`")
      ->required()
      ->check(allow_dir ? CLI::Validator(CLI::ExistingPath) : CLI::Validator(CLI::ExistingFile));
  c->add_option("--mode", a.mode,
                "for a bare state dict: 2d3d|2d|3d (a full checkpoint must agree)")
      ->check(CLI::IsMember({"2d3d", "2d", "3d"}));
  c->add_option("--size", a.size, "for a bare state dict: side S (a full checkpoint must agree)");
}

models::LoadedCheckpoint open_checkpoint(const CheckpointArgs& a) {
  models::LoadOptions lo;
  lo.mode = a.mode;
  lo.side = a.size;
  lo.quiet = globals().quiet;
  return models::load_checkpoint(a.path, lo);
}

void profile_begin(bool on) {
  if (!on) return;
  Profiler::reset();
  Profiler::enable(true);
}

void profile_end(bool on, const std::string& trace_path) {
  if (!on) return;
  Profiler::enable(false);
  std::cerr << "\nprofile (per op):\n";
  Profiler::print_table(std::cerr);
  Profiler::write_chrome_trace(trace_path);
  std::cerr << "chrome trace: " << trace_path << " (open in chrome://tracing or Perfetto)\n";
}

void require_empty_dir(const std::string& dir, bool force, const char* flag) {
  if (fs::exists(dir)) {
    CMDR_CHECK(fs::is_directory(dir), flag, " '", dir, "' exists and is not a directory");
    CMDR_CHECK(force || fs::is_empty(dir), flag, " '", dir,
               "' is not empty; pass --force to write into it anyway");
  }
  fs::create_directories(dir);
}

}  // namespace cmdr::app
