#include "models/train.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>

#include "engine/error.hpp"
#include "io/safetensors.hpp"

namespace cmdr::models {

namespace {

Sample expand_plain(const FeatureCache::Entry& e) {
  Sample s;
  for (const char* k : {"rgb", "xyz", "valid"}) {
    CMDR_CHECK(e.count(k), "FeatureCache: entry has no tensor '", k,
               "' and no expand function was given");
  }
  s.rgb = e.at("rgb");
  s.xyz = e.at("xyz");
  s.valid = e.at("valid");
  return s;
}

int64_t entry_bytes(const FeatureCache::Entry& e) {
  int64_t b = 0;
  for (const auto& [k, t] : e) b += t.numel() * static_cast<int64_t>(sizeof(float));
  return b;
}

std::string hms(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  }
  return buf;
}

}  // namespace

FeatureCache::FeatureCache(int64_t memory_budget_bytes, std::string spill_dir, Expand expand)
    : budget_(memory_budget_bytes),
      dir_(std::move(spill_dir)),
      expand_(expand ? std::move(expand) : Expand(expand_plain)) {
  static std::atomic<int64_t> next_id{0};
  id_ = next_id++;
}

FeatureCache::~FeatureCache() {
  std::error_code ec;
  for (const Slot& s : slots_) {
    // Best effort: a leftover is cleaned by remove_stale_files on the next run.
    if (!s.path.empty()) std::filesystem::remove(s.path, ec);
  }
  if (lock_fd_ >= 0) {
    std::filesystem::remove(lock_path_, ec);
    ::close(lock_fd_);  // releases the flock
  }
}

int64_t FeatureCache::add(Entry e) {
  const int64_t bytes = entry_bytes(e);
  Slot slot;
  if (dir_.empty() || mem_bytes_ + bytes <= budget_) {
    for (auto& [k, t] : e) t = t.contiguous();
    mem_bytes_ += bytes;
    slot.mem = std::move(e);
  } else {
    std::filesystem::create_directories(dir_);
    const std::string stem =
        dir_ + "/cmdr-features-" + std::to_string(::getpid()) + "-" + std::to_string(id_);
    if (lock_fd_ < 0) {
      // Marks this process's spill files as live for remove_stale_files.
      lock_path_ = stem + ".lock";
      lock_fd_ = ::open(lock_path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      CMDR_CHECK(lock_fd_ >= 0, "FeatureCache: cannot create '", lock_path_,
                 "' in the spill folder (", std::strerror(errno), ")");
      (void)::flock(lock_fd_, LOCK_EX | LOCK_NB);
    }
    slot.path = stem + "-" + std::to_string(slots_.size()) + ".safetensors";
    st::Writer w;
    for (const auto& [k, t] : e) w.add(k, t);
    w.write(slot.path);
    disk_bytes_ += bytes;
  }
  slots_.push_back(std::move(slot));
  return size() - 1;
}

Sample FeatureCache::get(int64_t i) const {
  CMDR_CHECK(i >= 0 && i < size(), "FeatureCache: sample ", i, " out of range [0, ", size(), ")");
  const Slot& s = slots_[static_cast<std::size_t>(i)];
  if (s.path.empty()) return expand_(s.mem);
  st::File f(s.path);
  Entry e;
  for (const auto& info : f.tensors()) e[info.name] = f.get(info.name);
  return expand_(e);
}

int64_t FeatureCache::spilled() const {
  int64_t n = 0;
  for (const Slot& s : slots_) n += !s.path.empty();
  return n;
}

long spill_file_pid(const std::string& filename) {
  const std::size_t slash = filename.find_last_of('/');
  const std::string name = slash == std::string::npos ? filename : filename.substr(slash + 1);
  const std::string pre = "cmdr-features-";
  if (name.compare(0, pre.size(), pre) != 0) return -1;
  std::size_t i = pre.size(), j = i;
  while (j < name.size() && j - i < 18 && name[j] >= '0' && name[j] <= '9') ++j;
  if (j == i || j >= name.size() || name[j] != '-') return -1;
  const auto ends = [&](const std::string& suf) {
    return name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
  };
  // Data files and lock files of the cache; a spill file's own writer temp file is matched
  // by st::temp_file_pid.
  if (!ends(".safetensors") && !ends(".lock")) return -1;
  return std::stol(name.substr(i, j - i));
}

namespace {

bool pid_alive(long pid) {
  if (pid <= 0) return true;  // not a process we can reason about: keep
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

// True when some process holds an flock on `path` (our probe cannot take it).
bool locked(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool busy = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // drops our probe lock, if taken
  return busy;
}

std::string mib(int64_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB = %lld bytes",
                static_cast<double>(b) / (1024.0 * 1024.0), static_cast<long long>(b));
  return buf;
}

}  // namespace

StaleCleanup remove_stale_files(const std::vector<std::string>& dirs, bool quiet) {
  namespace fs = std::filesystem;
  StaleCleanup out;
  const long self = static_cast<long>(::getpid());
  for (const std::string& d : dirs) {
    std::error_code ec;
    if (d.empty() || !fs::is_directory(d, ec)) continue;
    struct Cand {
      std::string path;
      long pid;
      bool temp;
    };
    std::vector<Cand> cands;
    std::map<long, std::vector<std::string>> locks;  // spill lock files per PID
    for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code e2;
      if (!it->is_regular_file(e2)) continue;  // never a folder or a link target
      const std::string name = it->path().filename().string();
      const long tp = st::temp_file_pid(name);
      const long sp = tp < 0 ? spill_file_pid(name) : -1;
      if (tp < 0 && sp < 0) continue;  // not our naming: never touched
      cands.push_back({it->path().string(), tp >= 0 ? tp : sp, tp >= 0});
      if (sp >= 0 && name.size() > 5 && name.compare(name.size() - 5, 5, ".lock") == 0)
        locks[sp].push_back(it->path().string());
    }
    std::sort(cands.begin(), cands.end(),
              [](const Cand& a, const Cand& b) { return a.path < b.path; });
    for (const Cand& c : cands) {
      StaleFile sf;
      sf.path = c.path;
      sf.pid = c.pid;
      std::error_code e3;
      sf.bytes = static_cast<int64_t>(fs::file_size(c.path, e3));
      if (e3) sf.bytes = 0;
      bool keep = c.pid == self || pid_alive(c.pid);
      if (!keep && c.temp) keep = locked(c.path);
      if (!keep && !c.temp) {
        for (const std::string& l : locks[c.pid]) keep = keep || locked(l);
      }
      if (keep) {
        out.kept.push_back(sf);
        continue;
      }
      if (!fs::remove(c.path, e3) || e3) {
        out.kept.push_back(sf);
        continue;
      }
      out.bytes += sf.bytes;
      if (!quiet) {
        std::cerr << "cleanup: removed stale '" << c.path << "' (" << mib(sf.bytes)
                  << ", left by process " << c.pid << ", which is no longer running)\n";
      }
      out.removed.push_back(sf);
    }
    // A spill folder emptied by this cleanup goes too (fs::remove refuses a non-empty one).
    if (!out.removed.empty() && fs::path(d).filename() == ".cmdr-feature-cache") fs::remove(d, ec);
  }
  if (!quiet && !out.removed.empty()) {
    std::cerr << "cleanup: " << out.removed.size() << " stale file(s) of interrupted runs removed, "
              << mib(out.bytes) << " freed\n";
  }
  return out;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  if (shuffle) {
    Rng rng(seed * 0xD1B54A32D192ED03ull + static_cast<uint64_t>(epoch));
    rng.shuffle(order);
  }
  return order;
}

std::vector<EpochStats> train(Cmdr& model, const FeatureCache& data, const TrainOptions& opt) {
  CMDR_CHECK(data.size() > 0, "train: no training samples");
  CMDR_CHECK(opt.epochs >= 1 && opt.start_epoch >= 0, "train: epochs ", opt.epochs,
             ", start epoch ", opt.start_epoch);
  using Clock = std::chrono::steady_clock;
  const bool tty = ::isatty(2) != 0;
  const int64_t n = data.size();
  const int64_t total_steps =
      opt.max_steps > 0
          ? std::min<int64_t>(opt.max_steps, n * std::max(0, opt.epochs - opt.start_epoch))
          : n * std::max(0, opt.epochs - opt.start_epoch);
  int64_t done = 0;
  const auto t_start = Clock::now();
  std::vector<EpochStats> history;
  for (int epoch = opt.start_epoch + 1; epoch <= opt.epochs && done < total_steps; ++epoch) {
    const auto t_epoch = Clock::now();
    model.reseed_dropout(opt.seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch));
    EpochStats es;
    es.epoch = epoch;
    std::array<double, 4> sum{};
    std::array<int64_t, 4> cnt{};
    const std::size_t rollbacks_before = model.rollbacks().size();
    const std::vector<int64_t> order = epoch_order(n, opt.seed, epoch, opt.shuffle);
    for (int64_t k = 0; k < n && done < total_steps; ++k) {
      const Sample s = data.get(order[static_cast<std::size_t>(k)]);
      // The restructured (SPEC 10) step when the cache holds the compact form.
      const StepResult r = s.compact.defined() ? model.train_step(s.compact)
                                               : model.train_step(s.rgb, s.xyz, s.valid);
      ++done;
      ++es.steps;
      for (int j = 0; j < 4; ++j) {
        if (std::isfinite(r.loss[j])) {
          sum[j] += r.loss[j];
          ++cnt[j];
        }
      }
      if (opt.on_step) opt.on_step(model.steps(), r);
      if (opt.progress) {
        const double el = std::chrono::duration<double>(Clock::now() - t_start).count();
        const double eta = el / static_cast<double>(done) * static_cast<double>(total_steps - done);
        const int width = 20;
        const int fill = static_cast<int>(width * (k + 1) / n);
        std::string bar(static_cast<std::size_t>(fill), '#');
        bar.resize(width, '.');
        std::string losses;
        for (int j = 0; j < 4; ++j) {
          if (cnt[j] == 0) continue;
          char buf[48];
          std::snprintf(buf, sizeof buf, " %s %.4f", kLossNames[j], sum[j] / cnt[j]);
          losses += buf;
        }
        std::fprintf(stderr, "%sepoch %d/%d [%s] %lld/%lld%s | %.2f s/step ETA %s%s",
                     tty ? "\r" : "", epoch, opt.epochs, bar.c_str(), static_cast<long long>(k + 1),
                     static_cast<long long>(n), losses.c_str(), el / static_cast<double>(done),
                     hms(eta).c_str(), tty ? "\033[K" : "\n");
      }
    }
    for (int j = 0; j < 4; ++j) {
      es.mean_loss[j] = cnt[j] > 0 ? sum[j] / static_cast<double>(cnt[j])
                                   : std::numeric_limits<double>::quiet_NaN();
    }
    es.rollbacks = static_cast<int64_t>(model.rollbacks().size() - rollbacks_before);
    es.seconds = std::chrono::duration<double>(Clock::now() - t_epoch).count();
    if (opt.progress && tty) std::fprintf(stderr, "\n");
    if (opt.progress && es.rollbacks > 0) {
      std::fprintf(stderr, "epoch %d: %lld network step(s) rolled back (non-finite)\n", epoch,
                   static_cast<long long>(es.rollbacks));
    }
    history.push_back(es);
    if (opt.on_epoch) opt.on_epoch(es);
  }
  return history;
}

}  // namespace cmdr::models
