#pragma once
// Loading named parameters of a frozen network from a safetensors file (SPEC 4.1/4.2,
// WEIGHTS.md). A network lists its parameters once as ParamSpec rows (name, shape, target);
// the same list drives loading, `init-extractors` (random weights in the exact layout) and
// the error messages: missing keys are listed together in one error, a shape mismatch names
// the tensor and both shapes, unexpected keys are reported as a note, not an error.
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"
#include "io/safetensors.hpp"

namespace cmdr::models {

// How init-extractors fills a parameter (timm / Point-MAE initialisation).
enum class Init { TruncNormal02, Zeros, Ones, BnRunningMean, BnRunningVar };

struct ParamSpec {
  std::string name;  // exact tensor name in the file (after prefix stripping)
  Shape shape;       // expected shape
  Tensor* target;    // where the loaded tensor goes
  Init init = Init::TruncNormal02;
};

// The metadata key written by init-extractors; a file carrying it with value "true" holds
// random weights and every load of it prints a loud warning on stderr.
inline constexpr const char* kRandomWeightsKey = "cmdr.random_weights";

struct LoadReport {
  std::string path;
  std::vector<std::string> unexpected;  // keys in the file that no parameter uses
  std::vector<std::string> ignored;     // keys dropped on purpose (decoder, head, ...)
  bool random_weights = false;          // file metadata says the weights are random
  std::string note() const;             // one human-readable note ("" when nothing to say)
};

// Maps a file key to a parameter name; returns "" to mark the key as ignored on purpose.
using KeyMap = std::function<std::string(const std::string&)>;

// Loads every spec from `file`. Throws cmdr::Error naming the file and listing ALL missing
// keys (after mapping) or the first shape mismatch (tensor, expected and found shapes).
// Non-F32 float tensors (F16/BF16/F64) are converted. Integer tensors in the file (e.g.
// BatchNorm num_batches_tracked) that match no spec are silently accepted when their name
// ends in "num_batches_tracked". Prints the random-weights warning (stderr) when flagged.
LoadReport load_params(const st::File& file, const std::vector<ParamSpec>& specs,
                       const std::string& what, const KeyMap& map = nullptr);

// Fills every spec's target with fresh random values by its init rule, in list order from
// one generator (timm / Point-MAE style: trunc-normal std .02 for weights, cls_token and
// pos_embed; zeros; ones; BatchNorm running mean N(0, 0.05²), running var U[0.5, 1.5)).
void init_params(const std::vector<ParamSpec>& specs, Rng& rng);

// Writes specs (+ I64 scalar counters such as num_batches_tracked, value 0) to `path`,
// flagged as random weights (kRandomWeightsKey = "true") with the given metadata.
void write_params(const std::vector<ParamSpec>& specs, const std::vector<std::string>& counters,
                  const std::map<std::string, std::string>& metadata, const std::string& path);

// Writes a loud warning to stderr if the file is flagged as random weights; returns the flag.
bool warn_if_random(const st::File& file, const std::string& what);

}  // namespace cmdr::models
