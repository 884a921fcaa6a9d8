#pragma once
// Each verb of the cmdr-iad CLI lives in its own apps/cmd_<verb>.cpp and registers itself
// with one add_<verb>(root) function listed in main.cpp. Global options (--threads, --seed,
// --quiet) are parsed by main.cpp and read through globals().
#include <CLI/CLI.hpp>
#include <cstdint>

namespace cmdr::app {

struct Globals {
  int threads = 0;  // 0: all hardware threads
  uint64_t seed = 0;
  bool quiet = false;
};
Globals& globals();

void add_info(CLI::App& root);
void add_inspect(CLI::App& root);          // cmd_inspect.cpp: safetensors contents + SHA-256
void add_synth(CLI::App& root);            // apps/cmd_synth.cpp
void add_metrics(CLI::App& root);          // apps/cmd_metrics.cpp (SPEC 8)
void add_preprocess(CLI::App& root);       // apps/cmd_preprocess.cpp (SPEC 2)
void add_init_extractors(CLI::App& root);  // apps/cmd_init_extractors.cpp (issue 3)
void add_features(CLI::App& root);         // apps/cmd_features.cpp (SPEC 3-4 audit dump)
// Verbs added by later work register here (one line each).

}  // namespace cmdr::app
