// libFuzzer target for the safetensors reader (issue 3 item 1).
// Build: CXX=clang++ cmake -S . -B build-fuzz -DCMDR_FUZZ=ON && cmake --build build-fuzz
//        --target fuzz_safetensors
// Run:   build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time=600 corpus-copy/ \
//        tests/fuzz/corpus tests/fuzz/regressions
// Any input must either parse or be rejected with a cmdr::Error; when it parses, every
// tensor is converted, viewed and the file is re-serialised by the writer and re-read, which
// must give the same tensors, bytes and metadata (a crash or an abort() is a finding).
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "engine/error.hpp"
#include "io/safetensors.hpp"

using namespace cmdr;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    st::File f = st::File::from_bytes("fuzz-input", data, size);
    st::Writer w;
    for (const auto& t : f.tensors()) {
      Tensor x = f.get(t.name, /*convert=*/true);
      if (x.numel() != shape_numel(t.shape)) std::abort();
      if (t.dtype == st::DType::F32) {
        st::F32View v = f.view_f32(t.name);
        if (v.numel() && std::memcmp(v.data(), f.raw(t.name), t.nbytes()) != 0) std::abort();
      }
      if (t.dtype == st::DType::I64 || t.dtype == st::DType::I32) (void)f.get_i64(t.name);
      const uint8_t* p = f.raw(t.name);
      w.add_raw(t.name, t.dtype, t.shape, std::vector<uint8_t>(p, p + t.nbytes()));
    }
    for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
    // Round trip through the writer: same tensors, same bytes, same metadata.
    const std::vector<uint8_t> again = w.serialize();
    st::File g = st::File::from_bytes("fuzz-roundtrip", again.data(), again.size());
    if (g.tensors().size() != f.tensors().size() || g.metadata() != f.metadata()) std::abort();
    if (g.header_size() % 8 != 0) std::abort();
    // The writer is a fixed point: what it wrote, read and written again, is the same bytes.
    st::Writer w2;
    for (const auto& t : g.tensors()) {
      const uint8_t* p = g.raw(t.name);
      w2.add_raw(t.name, t.dtype, t.shape, std::vector<uint8_t>(p, p + t.nbytes()));
    }
    for (const auto& [k, v] : g.metadata()) w2.set_metadata(k, v);
    if (w2.serialize() != again) std::abort();
    for (const auto& t : f.tensors()) {
      const st::TensorInfo& u = g.info(t.name);
      if (u.dtype != t.dtype || u.shape != t.shape || u.nbytes() != t.nbytes()) std::abort();
      if (t.nbytes() && std::memcmp(g.raw(t.name), f.raw(t.name), t.nbytes()) != 0) std::abort();
    }
  } catch (const cmdr::Error&) {
    // A rejection: the expected outcome for malformed input.
  }
  return 0;
}
