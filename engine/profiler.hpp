#pragma once
// Scoped profiler: per-op wall time, call count, FLOPs and bytes; a table and a Chrome
// trace (chrome://tracing / Perfetto "traceEvents" JSON). Disabled by default: a disabled
// ProfileScope costs one relaxed atomic load.
//
//   { ProfileScope p("linear", 2.0 * m * n * k, bytes); ...kernel... }
#include <cstdint>
#include <iosfwd>
#include <string>

namespace cmdr {

class Profiler {
 public:
  static void enable(bool on);
  static bool enabled();
  static void reset();
  // Table sorted by total time: op, calls, ms, share, GFLOP/s, GB/s.
  static void print_table(std::ostream& os);
  // Writes {"traceEvents":[...]} with one complete event ("ph":"X") per recorded scope.
  static void write_chrome_trace(const std::string& path);
  static void record(const char* name, int64_t start_ns, int64_t dur_ns, double flops,
                     double bytes);
};

class ProfileScope {
 public:
  explicit ProfileScope(const char* name, double flops = 0, double bytes = 0);
  ~ProfileScope();
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const char* name_;
  double flops_, bytes_;
  int64_t start_ns_ = -1;
};

int64_t now_ns();  // steady clock, nanoseconds

}  // namespace cmdr
