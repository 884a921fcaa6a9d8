// cmdr-iad: the command-line tool. Verbs live in apps/cmd_*.cpp (see commands.hpp).
#include <exception>
#include <iostream>

#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "engine/threads.hpp"

namespace cmdr::app {
Globals& globals() {
  static Globals g;
  return g;
}
}  // namespace cmdr::app

int main(int argc, char** argv) {
  using namespace cmdr::app;
  CLI::App root{"cmdr-iad: CMDR-IAD 2D+3D industrial anomaly detection on the CPU"};
  root.require_subcommand(1);
  root.fallthrough();
  root.add_option("--threads", globals().threads, "worker threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
  root.add_option("--seed", globals().seed, "random seed");
  root.add_flag("--quiet", globals().quiet, "no progress output");
  root.parse_complete_callback([] { cmdr::set_num_threads(globals().threads); });
  root.set_version_flag("--version", std::string("cmdr-iad ") + CMDR_VERSION);

  add_info(root);
  add_inspect(root);
  add_synth(root);
  add_metrics(root);
  add_preprocess(root);
  add_init_extractors(root);
  add_features(root);
  add_train(root);
  add_evaluate(root);
  add_detect(root);
  add_score(root);
  add_demo(root);
  add_points(root);

  try {
    root.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return root.exit(e);
  } catch (const cmdr::Error& e) {
    std::cerr << "cmdr-iad: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "cmdr-iad: unexpected error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
