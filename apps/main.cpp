// cmdr-iad: the command-line tool. Verbs live in apps/cmd_*.cpp (see commands.hpp).
#include <algorithm>
#include <exception>
#include <filesystem>
#include <iostream>
#include <thread>

#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "engine/threads.hpp"

namespace cmdr::app {
Globals& globals() {
  static Globals g;
  return g;
}

namespace {
int severity(int s) {  // higher = worse
  switch (s) {
    case kExitUsage:
      return 3;
    case kExitFailures:
      return 2;
    case kExitUnknown:
      return 1;
    default:
      return 0;
  }
}
}  // namespace

void report_exit_status(int s) {
  if (severity(s) > severity(globals().exit_status)) globals().exit_status = s;
}

void report_sample_outcomes(int64_t failures, int64_t unknown) {
  report_exit_status(failures > 0 ? kExitFailures : unknown > 0 ? kExitUnknown : kExitOk);
}
}  // namespace cmdr::app

namespace {

// Upper bound of --threads: far above any machine this runs on, low enough that a typo
// (1000) is caught instead of starting a thousand OpenMP threads.
constexpr int kMaxThreads = 256;

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> d(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) d[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t prev = d[0];
    d[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cur = d[j];
      d[j] = std::min({d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1)});
      prev = cur;
    }
  }
  return d[b.size()];
}

// The verb (or sub-verb) `word` is not one of `app`'s: name it, suggest a close one, list all.
std::string unknown_verb(CLI::App& app, const std::string& prefix, const std::string& word) {
  std::string list, best;
  std::size_t bd = 3;  // suggest only close matches
  for (const CLI::App* s : app.get_subcommands([](CLI::App*) { return true; })) {
    list += (list.empty() ? "" : ", ") + s->get_name();
    const std::size_t d = edit_distance(word, s->get_name());
    if (d < bd) bd = d, best = s->get_name();
  }
  if (word.empty()) return prefix + "no verb given; verbs: " + list;
  return prefix + "unknown verb '" + word + "'" +
         (best.empty() ? "" : " (did you mean '" + best + "'?)") + "; verbs: " + list;
}

// A plain message for a command-line mistake (CLI11's own texts are kept where they are
// already plain, with the verb named and a pointer to --help).
std::string plain_parse_error(CLI::App& root, const CLI::ParseError& e, int argc, char** argv) {
  const std::string msg = e.what();
  // The deepest verb chosen (e.g. `points` in `points trian`).
  CLI::App* app = &root;
  std::string path;
  while (!app->get_subcommands().empty()) {
    app = app->get_subcommands().front();
    path += (path.empty() ? "" : " ") + app->get_name();
  }
  if (msg.rfind("--threads", 0) == 0 || msg.rfind("--seed", 0) == 0)
    return msg + " (a global option; see `cmdr-iad --help`)";
  const bool has_verbs = !app->get_subcommands([](CLI::App*) { return true; }).empty();
  if (has_verbs) {
    // The first word after the chosen verb(s) that is neither an option nor the value of a
    // global option is the unknown (sub-)verb.
    std::size_t depth = 0;
    std::string word;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--threads" || a == "--seed") {
        ++i;
        continue;
      }
      if (a.rfind("-", 0) == 0) continue;
      if (depth < static_cast<std::size_t>(std::count(path.begin(), path.end(), ' ') +
                                           (path.empty() ? 0 : 1))) {
        ++depth;
        continue;
      }
      word = a;
      break;
    }
    const std::string prefix = path.empty() ? "" : path + ": ";
    return unknown_verb(*app, prefix, word) + " (see `cmdr-iad " +
           (path.empty() ? "" : path + " ") + "--help`)";
  }
  std::string m = msg;
  if (m.rfind("The following argument", 0) == 0) {
    const auto colon = m.find(':');
    m = "unknown option or argument" + (colon == std::string::npos ? "" : m.substr(colon));
  }
  return path + ": " + m + " (see `cmdr-iad " + path + " --help`)";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cmdr::app;
  CLI::App root{"cmdr-iad: CMDR-IAD 2D+3D industrial anomaly detection on the CPU"};
  root.require_subcommand(1);
  root.fallthrough();
  // --help shows every option's default (the subcommands inherit this).
  root.option_defaults()->always_capture_default();
  root.add_option("--threads", globals().threads,
                  "worker threads (0 = all cores, at most " + std::to_string(kMaxThreads) + ")")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            std::size_t used = 0;
            long v = -1;
            try {
              v = std::stol(s, &used);
            } catch (const std::exception&) {
              used = 0;
            }
            if (used != s.size() || v < 0 || v > kMaxThreads)
              return "got " + s + ", expected 0 (all cores) to " + std::to_string(kMaxThreads);
            return std::string();
          },
          "0.." + std::to_string(kMaxThreads)));
  root.add_option("--seed", globals().seed, "random seed");
  root.add_flag("--quiet", globals().quiet, "no progress output");
  root.parse_complete_callback([] {
    const unsigned hw = std::thread::hardware_concurrency();
    if (hw > 0 && globals().threads > static_cast<int>(hw) && !globals().quiet) {
      std::cerr << "cmdr-iad: note: --threads " << globals().threads << " on a machine with " << hw
                << " hardware threads (oversubscribed; results stay deterministic for this "
                   "thread count)\n";
    }
    cmdr::set_num_threads(globals().threads);
  });
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
  } catch (const CLI::CallForHelp& e) {
    return root.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return root.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return root.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "cmdr-iad: error: " << plain_parse_error(root, e, argc, argv) << "\n";
    return kExitUsage;
  } catch (const cmdr::Error& e) {
    std::cerr << "cmdr-iad: error: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "cmdr-iad: error: " << e.code().message() << ": '" << e.path1().string() << "'"
              << (e.path2().empty() ? "" : " -> '" + e.path2().string() + "'") << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "cmdr-iad: unexpected error: " << e.what() << "\n";
    return kExitUsage;
  }
  return globals().exit_status;
}
