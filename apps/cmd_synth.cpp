// `cmdr-iad synth`: writes a procedurally generated MVTec-3D-AD-style dataset (io/synth.hpp).
#include <iomanip>
#include <iostream>

#include "apps/commands.hpp"
#include "io/synth.hpp"

namespace cmdr::app {

void add_synth(CLI::App& root) {
  auto opt = std::make_shared<io::SynthOptions>();
  auto out = std::make_shared<std::string>();
  CLI::App* cmd =
      root.add_subcommand("synth",
                          "write a synthetic MVTec 3D-AD-style dataset (objects on a tilted plane; "
                          "defects: bump, crack, cut, dent, hole, stain)");
  cmd->add_option("--out", *out, "output dataset root (must be empty or new)")->required();
  cmd->add_option("--classes", opt->classes, "number of classes")->check(CLI::Range(1, 64));
  cmd->add_option("--size", opt->size, "image width (and height unless --height) in pixels")
      ->check(CLI::Range(16, 4096));
  cmd->add_option("--height", opt->height, "image height in pixels (default: square)")
      ->check(CLI::Range(16, 4096));
  cmd->add_option("--train", opt->train, "train/good samples per class")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--validation", opt->validation, "validation/good samples per class")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--test-good", opt->test_good, "test/good samples per class")
      ->check(CLI::Range(0, 100000));
  cmd->add_option("--test-defect", opt->test_defect,
                  "defective test samples per class (spread over the 6 defect types)")
      ->check(CLI::Range(0, 100000));
  cmd->add_flag("--thin-rod", opt->thin_rod,
                "every class a thin rod (17 mm diameter, 100 mm long; issue 9 item 6)");
  cmd->add_flag("--remove-plane", opt->remove_plane,
                "zero the support plane in the clouds (points < 5 mm above it), as preprocess");
  cmd->add_flag("--force", opt->force, "write into a non-empty --out (replaces those classes)");
  // --seed is the global option (root has fallthrough, so `synth --seed K` works).
  cmd->callback([opt, out] {
    opt->seed = globals().seed;
    opt->quiet = globals().quiet;
    const io::SynthSummary s = io::synth_dataset(*out, *opt);
    if (!globals().quiet) {
      std::cout << "synth: wrote " << s.classes.size() << " class(es) (";
      for (size_t i = 0; i < s.classes.size(); ++i) std::cout << (i ? ", " : "") << s.classes[i];
      std::cout << "), " << s.files << " files, " << opt->size << "x"
                << (opt->height > 0 ? opt->height : opt->size) << ", seed " << opt->seed << ", in "
                << std::fixed << std::setprecision(2) << s.seconds << " s -> " << *out << "\n";
    }
  });
}

}  // namespace cmdr::app
