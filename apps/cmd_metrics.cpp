// `cmdr-iad metrics --maps FILE.safetensors [--json OUT] [--protocol paper|mvtec]`:
// recomputes the SPEC 8 metrics of one class from saved maps and prints the table.
// Tensors: pixel_maps N×H×W, aupro_maps N×H×W, gt N×H×W (0/1), image_scores N, labels N
// (any float/int dtype). The protocol comes from the file's "protocol" metadata when present
// (the writer knows how the maps were made); --protocol must agree with it.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "apps/commands.hpp"
#include "engine/error.hpp"
#include "io/metrics.hpp"
#include "io/safetensors.hpp"

namespace cmdr::app {

namespace {

struct MetricsArgs {
  std::string maps, json, protocol;
};

// 0/1 values of a float tensor as bytes; anything else is an error naming file + tensor.
std::vector<uint8_t> binary_values(const Tensor& t, const std::string& file,
                                   const std::string& name) {
  std::vector<uint8_t> out;
  out.reserve(static_cast<std::size_t>(t.numel()));
  const std::vector<float> v = t.to_vector();
  for (std::size_t i = 0; i < v.size(); ++i) {
    CMDR_CHECK(v[i] == 0.0f || v[i] == 1.0f, "metrics: ", file, ": tensor '", name,
               "' must be 0/1, found ", v[i], " at flat index ", i);
    out.push_back(v[i] == 1.0f ? 1 : 0);
  }
  return out;
}

void run_metrics(const MetricsArgs& a) {
  st::File f(a.maps);
  for (const char* name : {"pixel_maps", "aupro_maps", "gt", "image_scores", "labels"})
    CMDR_CHECK(f.has(name), "metrics: ", a.maps, ": missing tensor '", name,
               "' (need pixel_maps, aupro_maps, gt N×H×W and image_scores, labels N)");
  const Tensor pm = f.get("pixel_maps", true);
  CMDR_CHECK(pm.dim() == 3, "metrics: ", a.maps, ": pixel_maps must be N×H×W, found ", pm.str());
  const Shape s = pm.shape();
  const Tensor am = f.get("aupro_maps", s, true);
  const Tensor gt = f.get("gt", s, true);
  const Tensor is = f.get("image_scores", Shape{s[0]}, true);
  const Tensor lb = f.get("labels", Shape{s[0]}, true);

  metrics::Protocol proto = metrics::Protocol::Paper;
  const auto it = f.metadata().find("protocol");
  if (it != f.metadata().end()) proto = metrics::parse_protocol(it->second);
  if (!a.protocol.empty()) {
    const metrics::Protocol want = metrics::parse_protocol(a.protocol);
    CMDR_CHECK(it == f.metadata().end() || want == proto, "metrics: --protocol ", a.protocol,
               " but ", a.maps, " states protocol '", it->second, "'");
    proto = want;
  }

  metrics::Inputs in;
  in.n = s[0];
  in.h = s[1];
  in.w = s[2];
  in.pixel_maps = pm.to_vector();
  in.aupro_maps = am.to_vector();
  in.gt = binary_values(gt, a.maps, "gt");
  in.image_scores = is.to_vector();
  in.labels = binary_values(lb, a.maps, "labels");
  metrics::Result r;
  try {
    r = metrics::evaluate(in, proto);
  } catch (const cmdr::Error& e) {
    fail(a.maps, ": ", e.what());
  }

  std::string cls = std::filesystem::path(a.maps).stem().string();
  const auto c = f.metadata().find("class");
  if (c != f.metadata().end()) cls = c->second;
  std::cout << metrics::format_table({{cls, r}});
  if (!a.json.empty()) {
    std::ofstream os(a.json);
    CMDR_CHECK(os.good(), "metrics: cannot write --json ", a.json);
    os << metrics::to_json(r).dump(2) << "\n";
    CMDR_CHECK(os.good(), "metrics: error writing --json ", a.json);
  }
}

}  // namespace

void add_metrics(CLI::App& root) {
  auto args = std::make_shared<MetricsArgs>();
  CLI::App* c =
      root.add_subcommand("metrics", "recompute I-AUROC / P-AUROC / AUPRO from saved maps");
  c->add_option("--maps", args->maps,
                "safetensors with pixel_maps, aupro_maps, gt, image_scores, labels")
      ->required()
      ->check(CLI::ExistingFile);
  c->add_option("--json", args->json, "also write the result as JSON here");
  c->add_option("--protocol", args->protocol,
                "paper | mvtec (default: the file's 'protocol' metadata, else paper)")
      ->check(CLI::IsMember({"paper", "mvtec"}));
  c->callback([args] { run_metrics(*args); });
}

}  // namespace cmdr::app
