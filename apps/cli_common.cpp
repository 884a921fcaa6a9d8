#include "apps/cli_common.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
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
  c->add_option("--groups", a.groups, "Point-MAE FPS centres (SPEC 4.2: 1024)")->check(positive());
  c->add_option("--group-size", a.group_size, "Point-MAE points per group (SPEC 4.2: 128)")
      ->check(positive());
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
  c->add_option("--size", a.size, "for a bare state dict: side S (a full checkpoint must agree)")
      ->default_str("from the checkpoint");
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
  make_output_dir(dir, "", flag);
}

namespace {

CLI::Validator number_check(const std::string& desc, bool (*ok)(double), const char* want) {
  return CLI::Validator(
      [ok, want](std::string& s) -> std::string {
        double v = 0;
        try {
          std::size_t used = 0;
          v = std::stod(s, &used);
          if (used != s.size()) return "'" + s + "' is not a number";
        } catch (const std::exception&) {
          return "'" + s + "' is not a number";
        }
        if (!ok(v)) return "got " + s + ", expected " + want;
        return std::string();
      },
      desc);
}

}  // namespace

CLI::Validator positive() {
  return number_check(
      "POSITIVE", [](double v) { return std::isfinite(v) && v > 0; }, "a number > 0");
}
CLI::Validator non_negative() {
  return number_check(
      "NONNEGATIVE", [](double v) { return std::isfinite(v) && v >= 0; }, "a number >= 0");
}
CLI::Validator finite() {
  return number_check(
      "", [](double v) { return std::isfinite(v) != 0; }, "a finite number");
}

void check_input_file(const std::string& path, const char* verb, const char* flag) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  CMDR_CHECK(fs::exists(st), verb, ": ", flag, " '", path, "' does not exist");
  CMDR_CHECK(!fs::is_directory(st), verb, ": ", flag, " '", path, "' is a directory, not a file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  CMDR_CHECK(f != nullptr, verb, ": ", flag, " '", path, "' is not readable (",
             std::strerror(errno), ")");
  std::fclose(f);
}

void make_output_dir(const std::string& dir, const char* verb, const char* flag) {
  const std::string who = std::string(verb) + (*verb ? ": " : "") + flag;
  // Walk up to the first existing component: it must be a directory.
  fs::path p = fs::path(dir).lexically_normal();
  for (fs::path q = p; !q.empty(); q = q.parent_path()) {
    std::error_code ec;
    const fs::file_status st = fs::status(q, ec);
    if (fs::exists(st)) {
      CMDR_CHECK(fs::is_directory(st), who, " '", dir, "': '", q.string(),
                 "' is a regular file, not a folder");
      break;
    }
    if (q == q.parent_path()) break;
  }
  std::error_code ec;
  fs::create_directories(p, ec);
  CMDR_CHECK(!ec, who, " '", dir, "': cannot create the folder (", ec.message(), ")");
}

void check_output_file(const std::string& file, bool force, const char* verb, const char* flag) {
  std::error_code ec;
  CMDR_CHECK(!fs::is_directory(file, ec), verb, ": ", flag, " '", file, "' is a directory");
  CMDR_CHECK(force || !fs::exists(file, ec), verb, ": ", flag, " '", file,
             "' exists; pass --force to overwrite it");
  const fs::path parent = fs::path(file).parent_path();
  if (!parent.empty()) make_output_dir(parent.string(), verb, flag);
}

}  // namespace cmdr::app
