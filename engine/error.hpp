#pragma once
// Errors: every failure in cmdr-iad is a cmdr::Error whose message names the op / file /
// tensor / flag and what was expected. Never a segfault, never a silent fix-up.
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace cmdr {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Builds a message from any streamable pieces: fail("linear: x ", shape_str(x), " ...").
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  throw Error(os.str());
}

}  // namespace cmdr

// CMDR_CHECK(cond, pieces...): throws cmdr::Error with the pieces when cond is false.
#define CMDR_CHECK(cond, ...)               \
  do {                                      \
    if (!(cond)) ::cmdr::fail(__VA_ARGS__); \
  } while (0)
