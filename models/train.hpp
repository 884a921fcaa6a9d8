#pragma once
// SPEC 6 training loop, independent of the CLI: frozen features cached once per sample
// (FeatureCache: in memory up to a budget, then spilled to disk), a seeded shuffle per epoch,
// one Cmdr::train_step per sample (batch size 1), per-epoch mean losses and a progress bar
// with ETA on stderr.
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "models/cmdr.hpp"
#include "models/feature_assembly.hpp"

namespace cmdr::models {

// One training sample as the networks see it (SPEC 4.3): rgb_patch [S², 768],
// xyz_patch [S², 1152], valid [S²] (dense; undefined when only the compact form was
// asked for), and/or the compact form (SPEC 10: tokens + U, group features + P), which
// train() and the workflow's inference use whenever it is defined.
struct Sample {
  Tensor rgb, xyz, valid;
  CompactPatches compact;
};

// Per-sample cache of named tensors (whatever the producer considers the compact form of
// the frozen features, e.g. the 28×28 DINO tokens before upsampling, SPEC 10) plus an
// `expand` function turning an entry into a Sample. Entries live in memory until
// `memory_budget_bytes` is used up; later ones are written to `spill_dir` (one safetensors
// file each, written atomically, named cmdr-features-<pid>-<cache>-<i>.safetensors) and read
// back on demand. While it has spilled, the cache holds an flock on
// cmdr-features-<pid>-<cache>.lock in that folder; the destructor removes its files and the
// lock (a killed run leaves them: remove_stale_files cleans them on the next run).
class FeatureCache {
 public:
  using Entry = std::map<std::string, Tensor>;
  using Expand = std::function<Sample(const Entry&)>;
  // The default expand reads entries named "rgb", "xyz", "valid" as they are.
  explicit FeatureCache(int64_t memory_budget_bytes = int64_t{4} << 30, std::string spill_dir = "",
                        Expand expand = nullptr);
  ~FeatureCache();
  FeatureCache(const FeatureCache&) = delete;
  FeatureCache& operator=(const FeatureCache&) = delete;

  int64_t add(Entry e);  // returns the sample index
  Sample get(int64_t i) const;
  int64_t size() const { return static_cast<int64_t>(slots_.size()); }
  int64_t bytes_in_memory() const { return mem_bytes_; }
  int64_t bytes_on_disk() const { return disk_bytes_; }
  int64_t spilled() const;  // entries on disk

 private:
  struct Slot {
    Entry mem;         // empty when spilled
    std::string path;  // non-empty when spilled
  };
  int64_t budget_;
  std::string dir_;
  Expand expand_;
  std::vector<Slot> slots_;
  int64_t mem_bytes_ = 0, disk_bytes_ = 0;
  int64_t id_ = 0;    // distinguishes caches of one process sharing a spill folder
  int lock_fd_ = -1;  // flock'ed lock file while entries are spilled
  std::string lock_path_;
};

// ---- Stale files of interrupted runs (issue 9 item 5) ----
// In each folder (not recursive) removes our own leftovers: st::Writer temporary files
// ("<name>.tmp.<pid>.<random>", io/safetensors temp_file_pid) and FeatureCache spill / lock
// files ("cmdr-features-<pid>-….safetensors", "cmdr-features-<pid>-….lock"). A file is removed
// only when all hold: its PID is not ours and is no live process (kill(pid, 0) fails with
// ESRCH), and nobody holds an flock on it (temporary file: the file itself, which a live
// writer locks; spill file: any lock file of that PID in the folder, which a live cache
// locks) — so a concurrent run's files (also one in another PID namespace on a shared file
// system) and files of any other naming are never touched. A spill folder left empty is
// removed too. Unless quiet, every removal is printed to stderr with its size.
struct StaleFile {
  std::string path;
  int64_t bytes = 0;
  long pid = 0;
};
struct StaleCleanup {
  std::vector<StaleFile> removed;
  std::vector<StaleFile> kept;  // our naming, but the owner is alive or holds a lock
  int64_t bytes = 0;            // removed
};
StaleCleanup remove_stale_files(const std::vector<std::string>& dirs, bool quiet);
// The PID in a FeatureCache spill / lock file name, else -1.
long spill_file_pid(const std::string& filename);

struct EpochStats {
  int epoch = 0;  // 1-based
  // Mean loss per Net slot over the epoch's steps whose loss was finite (NaN when none or
  // when the mode does not train that network).
  std::array<double, 4> mean_loss{};
  int64_t steps = 0;
  int64_t rollbacks = 0;  // network steps rolled back in this epoch
  double seconds = 0.0;
};

struct TrainOptions {
  int epochs = 50;         // SPEC 6
  int start_epoch = 0;     // epochs already done (resume): the loop runs start_epoch+1..epochs
  uint64_t seed = 0;       // shuffle order and dropout streams
  bool shuffle = true;     // false: samples in cache order (the training-parity hook)
  int64_t max_steps = -1;  // > 0: stop after this many steps in total (`--steps K`)
  bool progress = true;    // progress bar with ETA on stderr
  // Called after every step (1-based global step) and after every epoch (e.g. to write a
  // resumable checkpoint).
  std::function<void(int64_t step, const StepResult&)> on_step;
  std::function<void(const EpochStats&)> on_epoch;
};

// The order in which epoch `epoch` (1-based) visits n samples: a Fisher-Yates shuffle from
// an Rng seeded by (seed, epoch), so a resumed run repeats the original order exactly.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int epoch, bool shuffle);

// Runs the epochs on `model` (train mode). Each epoch reseeds the networks' dropout streams
// from (seed, epoch), again for exact resumption. Returns the per-epoch statistics.
std::vector<EpochStats> train(Cmdr& model, const FeatureCache& data, const TrainOptions& opt);

}  // namespace cmdr::models
