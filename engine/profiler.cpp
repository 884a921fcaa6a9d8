#include "engine/profiler.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <ostream>
#include <vector>

#include "engine/error.hpp"

namespace cmdr {
namespace {
struct Stat {
  int64_t calls = 0;
  int64_t ns = 0;
  double flops = 0, bytes = 0;
};
struct Event {
  const char* name;
  int64_t start, dur;
};
std::atomic<bool> g_enabled{false};
std::mutex g_mu;
std::map<std::string, Stat> g_stats;
std::vector<Event> g_events;
constexpr std::size_t kMaxEvents = 2'000'000;  // bounds trace memory on long runs
int64_t g_origin = 0;
}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Profiler::enable(bool on) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (on && g_origin == 0) g_origin = now_ns();
  g_enabled.store(on, std::memory_order_relaxed);
}
bool Profiler::enabled() {
  return g_enabled.load(std::memory_order_relaxed);
}

void Profiler::reset() {
  std::lock_guard<std::mutex> lk(g_mu);
  g_stats.clear();
  g_events.clear();
  g_origin = now_ns();
}

void Profiler::record(const char* name, int64_t start_ns, int64_t dur_ns, double flops,
                      double bytes) {
  std::lock_guard<std::mutex> lk(g_mu);
  Stat& s = g_stats[name];
  s.calls++;
  s.ns += dur_ns;
  s.flops += flops;
  s.bytes += bytes;
  if (g_events.size() < kMaxEvents) g_events.push_back({name, start_ns, dur_ns});
}

void Profiler::print_table(std::ostream& os) {
  std::lock_guard<std::mutex> lk(g_mu);
  std::vector<std::pair<std::string, Stat>> rows(g_stats.begin(), g_stats.end());
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  int64_t total = 0;
  for (auto& r : rows) total += r.second.ns;
  char line[256];
  std::snprintf(line, sizeof line, "%-28s %8s %11s %7s %9s %8s\n", "op", "calls", "ms", "share",
                "GFLOP/s", "GB/s");
  os << line;
  for (auto& [name, s] : rows) {
    double sec = s.ns * 1e-9;
    std::snprintf(line, sizeof line, "%-28s %8lld %11.2f %6.1f%% %9.2f %8.2f\n", name.c_str(),
                  static_cast<long long>(s.calls), s.ns * 1e-6, total ? 100.0 * s.ns / total : 0.0,
                  sec > 0 ? s.flops / sec * 1e-9 : 0.0, sec > 0 ? s.bytes / sec * 1e-9 : 0.0);
    os << line;
  }
  std::snprintf(line, sizeof line, "%-28s %8s %11.2f\n", "total (profiled ops)", "", total * 1e-6);
  os << line;
}

void Profiler::write_chrome_trace(const std::string& path) {
  std::lock_guard<std::mutex> lk(g_mu);
  std::ofstream f(path);
  CMDR_CHECK(f.good(), "profiler: cannot write Chrome trace to '", path, "'");
  f << "{\"traceEvents\":[";
  for (std::size_t i = 0; i < g_events.size(); ++i) {
    const Event& e = g_events[i];
    f << (i ? ",\n" : "\n") << "{\"name\":\"" << e.name << "\",\"ph\":\"X\",\"pid\":1,\"tid\":1,"
      << "\"ts\":" << (e.start - g_origin) / 1000.0 << ",\"dur\":" << e.dur / 1000.0 << "}";
  }
  f << "\n],\"displayTimeUnit\":\"ms\"}\n";
  CMDR_CHECK(f.good(), "profiler: write failed for '", path, "'");
}

ProfileScope::ProfileScope(const char* name, double flops, double bytes)
    : name_(name), flops_(flops), bytes_(bytes) {
  if (Profiler::enabled()) start_ns_ = now_ns();
}

ProfileScope::~ProfileScope() {
  if (start_ns_ >= 0) Profiler::record(name_, start_ns_, now_ns() - start_ns_, flops_, bytes_);
}

}  // namespace cmdr
