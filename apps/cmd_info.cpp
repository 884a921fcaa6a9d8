// `cmdr-iad info`: what this build can do (threads, oneDNN, ISA, memory tracking).
#include <iostream>
#include <oneapi/dnnl/dnnl.hpp>

#include "apps/commands.hpp"
#include "engine/threads.hpp"

namespace cmdr::app {

void add_info(CLI::App& root) {
  CLI::App* c = root.add_subcommand("info", "print the build's capabilities");
  c->callback([] {
    const dnnl_version_t* v = dnnl_version();
    std::cout << "cmdr-iad " << CMDR_VERSION << "\n"
              << "  threads:  " << cmdr::num_threads() << " (OpenMP, shared with oneDNN)\n"
              << "  oneDNN:   " << v->major << "." << v->minor << "." << v->patch
              << " (cpu runtime " << (v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other")
              << ")\n"
#ifdef __AVX512F__
              << "  ISA:      AVX-512 (compiled with -march=native)\n"
#elif defined(__AVX2__)
              << "  ISA:      AVX2 (compiled with -march=native)\n"
#else
              << "  ISA:      baseline x86-64\n"
#endif
              << "  compiler: " << __VERSION__ << "\n";
  });
}

}  // namespace cmdr::app
