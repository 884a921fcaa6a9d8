#pragma once
// One thread-count setting for the whole process. oneDNN in Debian 12 is built with the
// OpenMP runtime (DNNL_CPU_RUNTIME=OMP), so OpenMP's setting governs both our kernels and
// oneDNN's. Same inputs + seed + thread count -> bit-identical outputs.
namespace cmdr {
void set_num_threads(int n);  // n <= 0: all hardware threads
int num_threads();
}  // namespace cmdr
