// `cmdr-iad preprocess --data ROOT --out NEWROOT [--force]` (global --seed K): SPEC 2
// point-cloud preprocessing of a whole MVTec 3D-AD root into a NEW root (rgb/gt copied).
#include <cstdio>
#include <iostream>
#include <memory>

#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "io/preprocess.hpp"

namespace cmdr::app {

namespace {

struct PreprocessArgs {
  std::string data, out;
  bool force = false;
};

// One-line progress bar on stderr, redrawn in place.
void draw_progress(int64_t done, int64_t total, const std::string& rel) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, '.');
  std::string name = rel.size() > 40 ? "..." + rel.substr(rel.size() - 37) : rel;
  std::fprintf(stderr, "\rpreprocess [%s] %lld/%lld %-40s", bar.c_str(),
               static_cast<long long>(done), static_cast<long long>(total), name.c_str());
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

void run_preprocess(const PreprocessArgs& a) {
  preprocess::Progress progress;
  if (!globals().quiet) progress = draw_progress;
  const preprocess::RootSummary s =
      preprocess::preprocess_root(a.data, a.out, a.force, globals().seed, {}, progress);
  std::cout << "preprocess: " << s.clouds << " clouds processed, " << s.copied << " files copied, "
            << s.failed << " skipped, in " << s.seconds << " s"
            << (s.clouds > 0 ? " (" + std::to_string(s.seconds / static_cast<double>(s.clouds)) +
                                   " s per file incl. copies)"
                             : std::string())
            << "\n  points: " << s.plane_removed << " on the support plane, " << s.cluster_removed
            << " outside the largest cluster, " << s.kept << " kept; " << s.invalid_points
            << " NaN/Inf treated as missing\n  output: " << a.out << "\n";
  CMDR_CHECK(s.failed == 0, "preprocess: ", s.failed, " of ", s.clouds + s.failed,
             " clouds could not be processed (see the messages above); the others were written");
}

}  // namespace

void add_preprocess(CLI::App& root) {
  auto args = std::make_shared<PreprocessArgs>();
  CLI::App* c = root.add_subcommand(
      "preprocess", "SPEC 2 plane removal + padding + DBSCAN cleaning into a NEW dataset root");
  c->add_option("--data", args->data, "input MVTec 3D-AD root (never modified)")->required();
  c->add_option("--out", args->out, "new root to write (must be empty unless --force)")->required();
  c->add_flag("--force", args->force, "write into a non-empty --out (overwrites files)");
  c->callback([args] { run_preprocess(*args); });
}

}  // namespace cmdr::app
