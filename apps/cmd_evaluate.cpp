// `cmdr-iad evaluate --data ROOT --class C|--all --checkpoint CKPT [--json OUT]
//  [--save-maps DIR] [--heatmaps DIR] [--profile]`: SPEC 8 metrics of a checkpoint on the
// test split, in the paper's protocol (S×S, per-image normalised maps, 99 thresholds) and
// the official MVTec 3D-AD protocol (maps at native gt resolution, no normalisation, image
// score = map max, 100 thresholds).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "apps/cli_common.hpp"
#include "apps/commands.hpp"
#include "apps/points3d_cmd.hpp"
#include "engine/error.hpp"
#include "io/metrics.hpp"
#include "io/mvtec.hpp"

namespace cmdr::app {

namespace {

nlohmann::json class_json(const metrics::Result& r) {
  nlohmann::json j = metrics::to_json(r);
  j.erase("protocol");
  return j;
}

nlohmann::json mean_json(const std::vector<metrics::Result>& rs) {
  metrics::Result m;
  for (const auto& r : rs) {
    m.i_auroc += r.i_auroc / static_cast<double>(rs.size());
    m.p_auroc += r.p_auroc / static_cast<double>(rs.size());
    for (int k = 0; k < 4; ++k) m.aupro[k] += r.aupro[k] / static_cast<double>(rs.size());
  }
  return class_json(m);
}

nlohmann::json finite_or_null(float v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

// "  bagel: threshold 1.234 (checkpoint): 3/12 defective caught (TP 3, FN 9), 8/8 good passed
// (TN 8, FP 0); 0 UNKNOWN, 0 ERROR, 0 skipped"
std::string confusion_line(const std::string& cls, const models::EvalReport& r) {
  char buf[512];
  const std::string thr =
      std::isfinite(r.threshold) ? std::to_string(r.threshold) : std::string("none");
  std::snprintf(
      buf, sizeof buf,
      "  %s: threshold %s (%s): %lld/%lld defective caught (TP %lld, FN %lld), "
      "%lld/%lld good passed (TN %lld, FP %lld); %lld UNKNOWN, %lld ERROR, %lld skipped",
      cls.c_str(), thr.c_str(), r.threshold_source.c_str(), static_cast<long long>(r.true_pos),
      static_cast<long long>(r.true_pos + r.false_neg), static_cast<long long>(r.true_pos),
      static_cast<long long>(r.false_neg), static_cast<long long>(r.true_neg),
      static_cast<long long>(r.true_neg + r.false_pos), static_cast<long long>(r.true_neg),
      static_cast<long long>(r.false_pos), static_cast<long long>(r.unknown),
      static_cast<long long>(r.errors), static_cast<long long>(r.skipped));
  return buf;
}

}  // namespace

nlohmann::json run_evaluate(const EvaluateArgs& a, const CheckpointArgs& ca,
                            const ExtractorArgs& exa) {
  namespace fs = std::filesystem;
  std::vector<std::string> classes = a.classes;
  if (a.all) {
    classes = io::list_classes(a.data);
    CMDR_CHECK(!classes.empty(), "evaluate: --all: no class folder under --data '", a.data, "'");
  }
  CMDR_CHECK(!classes.empty(), "evaluate: give --class C or --all");
  // --checkpoint is one file, or a folder holding <class>.safetensors per class.
  const bool per_class = fs::is_directory(ca.path);
  auto ckpt_of = [&](const std::string& cls) {
    CheckpointArgs c = ca;
    if (per_class) {
      c.path = (fs::path(ca.path) / (cls + ".safetensors")).string();
      CMDR_CHECK(fs::is_regular_file(c.path), "evaluate: --checkpoint folder '", ca.path,
                 "' has no '", cls, ".safetensors'");
    }
    return c;
  };
  // Nothing overwritten silently (the rule of train / detect / score): every output is
  // checked before any work.
  if (!a.json.empty()) check_output_file(a.json, a.force, "evaluate", "--json");
  const std::string trace = (a.json.empty() ? std::string("evaluate") : a.json) + ".trace.json";
  if (a.profile) check_output_file(trace, a.force, "evaluate", "--profile");
  for (const std::string& cls : classes) {
    if (!a.save_maps.empty()) {
      for (const std::string suffix : {".safetensors", "_mvtec.safetensors"}) {
        check_output_file((fs::path(a.save_maps) / (cls + suffix)).string(), a.force, "evaluate",
                          "--save-maps");
      }
    }
    if (!a.heatmaps.empty()) {
      const fs::path d = fs::path(a.heatmaps) / cls;
      std::error_code ec;
      CMDR_CHECK(a.force || !fs::is_directory(d, ec) || fs::is_empty(d, ec),
                 "evaluate: --heatmaps '", d.string(),
                 "' is not empty; pass --force to overwrite its files");
      make_output_dir(d.string(), "evaluate", "--heatmaps");
    }
  }
  models::LoadedCheckpoint first = open_checkpoint(ckpt_of(classes[0]));
  const models::Extractors ex = extractors_for(first, exa, "evaluate");
  const int64_t side = first.model->config().side;
  std::vector<std::pair<std::string, metrics::Result>> paper_rows, official_rows;
  std::vector<std::string> confusion_lines;
  int64_t failures = 0, unknown = 0;
  nlohmann::json out;
  out["protocol"] = "paper";
  out["checkpoint"] = ca.path;
  out["classes"] = nlohmann::json::object();
  out["official"] = {{"protocol", "mvtec"}, {"classes", nlohmann::json::object()}};
  for (const std::string& cls : classes) {
    models::LoadedCheckpoint ck =
        cls == classes[0] ? std::move(first) : open_checkpoint(ckpt_of(cls));
    models::check_extractor_hashes(ck.meta, ex, exa.allow_mismatch);
    CMDR_CHECK(ck.model->config().side == side, "evaluate: checkpoint '", ck.path,
               "' has S = ", ck.model->config().side, ", the first one ", side,
               ": one table needs one size");
    if (!ck.meta.cls.empty() && ck.meta.cls != cls && !globals().quiet) {
      std::cerr << "evaluate: note: checkpoint '" << ck.path << "' was trained on class '"
                << ck.meta.cls << "', evaluating it on '" << cls << "'\n";
    }
    models::EvalJob job;
    job.data = a.data;
    job.cls = cls;
    job.save_maps = a.save_maps;
    job.heatmaps = a.heatmaps;
    job.quiet = globals().quiet;
    job.threshold_override = a.threshold;
    const models::EvalReport r = models::evaluate_class(*ck.model, ck.meta, ex, job);
    confusion_lines.push_back(confusion_line(cls, r));
    failures += r.skipped + r.errors;
    unknown += r.unknown;
    if (!r.ok) {
      std::cerr << "evaluate: class '" << cls << "': no metrics: " << r.problem << "\n";
      continue;
    }
    if (!r.problem.empty()) std::cerr << "evaluate: class '" << cls << "': " << r.problem << "\n";
    paper_rows.emplace_back(cls, r.paper);
    official_rows.emplace_back(cls, r.official);
    nlohmann::json cj = class_json(r.paper);
    cj["checkpoint"] = ck.path;
    cj["checkpoint_sha256"] = ck.sha256;
    cj["samples"] = r.samples;
    cj["skipped"] = r.skipped;  // scanner drops + samples that could not be scored
    cj["skipped_samples"] = r.skipped_messages;
    cj["errors"] = r.errors;  // score not computable (not in the metrics)
    cj["unknown"] = r.unknown;
    cj["fallbacks"] = r.fallbacks;
    cj["seconds"] = r.seconds;
    cj["threshold"] = finite_or_null(r.threshold);
    cj["threshold_source"] = r.threshold_source;
    cj["threshold_rule"] = ck.meta.threshold_rule;
    cj["fallback_thresholds"] = nlohmann::json::object();
    for (const auto& [m, t] : ck.meta.fallback_thresholds) cj["fallback_thresholds"][m] = t;
    cj["confusion_at_threshold"] = {
        {"tp", r.true_pos}, {"fp", r.false_pos}, {"tn", r.true_neg}, {"fn", r.false_neg}};
    nlohmann::json per = nlohmann::json::array();
    for (const models::EvalSampleRecord& rec : r.records) {
      nlohmann::json sj{{"path", rec.rgb},
                        {"xyz", rec.xyz},
                        {"defect", rec.defect},
                        {"gt", rec.gt ? "NOK" : "OK"},
                        {"score", finite_or_null(rec.score)},
                        {"label", models::verdict_name(rec.verdict)},
                        {"mode", rec.mode},
                        {"threshold", finite_or_null(rec.threshold)}};
      if (!rec.error.empty()) sj["error"] = rec.error;
      per.push_back(sj);
    }
    cj["per_sample"] = per;
    out["classes"][cls] = cj;
    out["official"]["classes"][cls] = class_json(r.official);
    if (!globals().quiet) {
      const double n = static_cast<double>(std::max<int64_t>(1, r.samples));
      std::fprintf(stderr,
                   "evaluate %s: %lld samples in %.1f s; per sample (ms): read %.0f, transform "
                   "%.0f, rgb extractor %.0f, xyz extractor %.0f, assemble %.0f, networks+fusion "
                   "%.0f\n",
                   cls.c_str(), static_cast<long long>(r.samples), r.seconds, r.t.read / n,
                   r.t.transform / n, r.t.rgb_extractor / n, r.t.xyz_extractor / n,
                   r.t.assemble / n, r.t.networks / n);
    }
  }
  profile_end(a.profile, trace);
  CMDR_CHECK(!paper_rows.empty(), "evaluate: no class could be evaluated");
  std::vector<metrics::Result> pr, orr;
  for (auto& [k, v] : paper_rows) pr.push_back(v);
  for (auto& [k, v] : official_rows) orr.push_back(v);
  out["mean"] = mean_json(pr);
  out["official"]["mean"] = mean_json(orr);
  std::cout << "Paper protocol (S = " << side << ", per-image normalised maps, 99 thresholds):\n"
            << metrics::format_table(paper_rows) << "\n"
            << "Official MVTec 3D-AD protocol (native gt resolution, raw maps, image score = max, "
               "100 thresholds):\n"
            << metrics::format_table(official_rows) << "\n"
            << "Decisions at the threshold (label NOK when score > threshold):\n";
  for (const std::string& l : confusion_lines) std::cout << l << "\n";
  if (!a.json.empty()) {
    std::ofstream os(a.json);
    CMDR_CHECK(os.good(), "evaluate: cannot write --json '", a.json, "'");
    os << out.dump(2) << "\n";
    CMDR_CHECK(os.good(), "evaluate: error writing --json '", a.json, "'");
  }
  report_sample_outcomes(failures, unknown);
  return out;
}

void add_evaluate(CLI::App& root) {
  auto a = std::make_shared<EvaluateArgs>();
  auto ca = std::make_shared<CheckpointArgs>();
  auto ea = std::make_shared<ExtractorArgs>();
  auto cls = std::make_shared<std::string>();
  CLI::App* c = root.add_subcommand(
      "evaluate",
      "SPEC 8 metrics of a checkpoint on a class's test split: the paper table (I-AUROC,\n"
      "P-AUROC, AUPRO@30/10/5/1%) and the official MVTec 3D-AD protocol table");
  c->add_option("--data", a->data, "dataset root (SPEC 1 layout); required unless --points")
      ->check(CLI::ExistingDirectory);
  auto points = std::make_shared<std::string>();
  c->add_option("--points", *points,
                "the point-cloud experiment (mode 3d, issue 5 item 6): test chunks under "
                "DIR/test with a checkpoint of `train --mode 3d --points`; prints I-AUROC, "
                "P-AUROC (per point), AUPRO")
      ->check(CLI::ExistingDirectory);
  auto* oc = c->add_option("--class", *cls, "class to evaluate");
  auto* oa = c->add_flag("--all", a->all, "every class folder under --data (same checkpoint)");
  oc->excludes(oa);
  add_checkpoint_flags(c, *ca, true);
  add_weight_flags(c, *ea, true);
  c->add_option("--json", a->json,
                "write {protocol, classes{<c>{i_auroc,p_auroc,aupro{0.3,0.1,0.05,0.01}}}, mean, "
                "official}");
  c->add_option("--save-maps", a->save_maps,
                "directory: <class>.safetensors (paper maps) and <class>_mvtec.safetensors, "
                "readable by `cmdr-iad metrics --maps`");
  c->add_option("--heatmaps", a->heatmaps, "directory: <class>/<defect>_<name>.png overlays");
  c->add_option("--threshold", a->threshold,
                "decision threshold for samples scored in the checkpoint's mode (default: the "
                "checkpoint's; fallback samples keep their per-mode threshold)")
      ->check(finite())
      ->default_str("checkpoint");
  c->add_flag("--force", a->force, "overwrite existing --json / --save-maps / --heatmaps files");
  c->add_flag("--profile", a->profile, "per-op profile table and a Chrome trace next to --json");
  c->callback([a, ca, ea, cls, points, c] {
    if (!points->empty()) {
      if (!a->json.empty()) check_output_file(a->json, a->force, "evaluate", "--json");
      evaluate_points_from_flags(*c, {*points, ca->path, ca->mode, ea->xyz_weights, a->json,
                                      ea->allow_mismatch, a->profile});
      return;
    }
    CMDR_CHECK(!a->data.empty(), "evaluate: --data ROOT is required (or --points DIR)");
    EvaluateArgs args = *a;
    if (!cls->empty()) args.classes = {*cls};
    CMDR_CHECK(args.all || !args.classes.empty(), "evaluate: give --class C or --all");
    run_evaluate(args, *ca, *ea);
  });
}

}  // namespace cmdr::app
