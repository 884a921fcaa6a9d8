#pragma once
// Each verb of the cmdr-iad CLI lives in its own apps/cmd_<verb>.cpp and registers itself
// with one add_<verb>(root) function listed in main.cpp. Global options (--threads, --seed,
// --quiet) are parsed by main.cpp and read through globals().
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <utility>

namespace cmdr::app {

// Exit status of cmdr-iad (docs/cli.md "Exit status and labels"): the worst outcome wins.
inline constexpr int kExitOk = 0;        // every sample judged (OK or NOK) / verb succeeded
inline constexpr int kExitUsage = 1;     // usage or setup error: nothing (more) was done
inline constexpr int kExitFailures = 2;  // some samples ERROR or SKIPPED, or an output lost
inline constexpr int kExitUnknown = 3;   // all scored, some UNKNOWN (no threshold applies)

struct Globals {
  int threads = 0;  // 0: all hardware threads
  uint64_t seed = 0;
  bool quiet = false;
  int exit_status = kExitOk;  // set by verbs whose samples can fail one by one
};
Globals& globals();
// Raises the exit status to `s` by severity (1 > 2 > 3 > 0).
void report_exit_status(int s);
// 2 when failures > 0, else 3 when unknown > 0, else 0 (then report_exit_status).
void report_sample_outcomes(int64_t failures, int64_t unknown);

void add_info(CLI::App& root);
void add_inspect(CLI::App& root);          // cmd_inspect.cpp: safetensors contents + SHA-256
void add_synth(CLI::App& root);            // apps/cmd_synth.cpp
void add_metrics(CLI::App& root);          // apps/cmd_metrics.cpp (SPEC 8)
void add_preprocess(CLI::App& root);       // apps/cmd_preprocess.cpp (SPEC 2)
void add_init_extractors(CLI::App& root);  // apps/cmd_init_extractors.cpp (issue 3)
void add_features(CLI::App& root);         // apps/cmd_features.cpp (SPEC 3-4 audit dump)
void add_train(CLI::App& root);            // apps/cmd_train.cpp (SPEC 6, issue 5)
void add_evaluate(CLI::App& root);         // apps/cmd_evaluate.cpp (SPEC 8 tables)
void add_detect(CLI::App& root);           // apps/cmd_detect.cpp (per-sample OK/NOK)
void add_score(CLI::App& root);            // apps/cmd_score.cpp (audit dump)
void add_demo(CLI::App& root);             // apps/cmd_demo.cpp (synth -> train -> evaluate)
// apps/cmd_points.cpp: `points train|evaluate` (issue 5 item 6, 3D-only point clouds)
void add_points(CLI::App& root);
// Verbs added by later work register here (one line each).

// Seeded random extractor files (dino_vit_b8.safetensors, point_mae.safetensors) in `dir`;
// returns their paths (apps/cmd_init_extractors.cpp).
std::pair<std::string, std::string> write_random_extractors(const std::string& dir, uint64_t seed,
                                                            bool print);

}  // namespace cmdr::app
