// io/sha256 kernels (portable and SHA-NI, bit-identical on known answers, random data and
// every length around the 64-byte block and padding boundaries) and the safetensors
// reader's behaviour when a mapped file shrinks under it (an error, not SIGBUS).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "io/safetensors.hpp"
#include "io/sha256.hpp"
#include "tmpdir.hpp"

using namespace cmdr;

namespace {

// Deterministic bytes (64-bit LCG, top byte); the 1 MiB hash below was computed from the
// same sequence with Python's hashlib.
std::vector<uint8_t> lcg_bytes(std::size_t n) {
  std::vector<uint8_t> b(n);
  uint64_t x = 12345;
  for (auto& v : b) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<uint8_t>(x >> 56);
  }
  return b;
}

std::string hash_with(Sha256Impl impl, const uint8_t* p, std::size_t n) {
  Sha256 h(impl);
  h.update(p, n);
  return h.hex_digest();
}

std::vector<Sha256Impl> impls() {
  std::vector<Sha256Impl> v{Sha256Impl::Portable, Sha256Impl::Auto};
  if (sha256_impl_available(Sha256Impl::ShaNi)) v.push_back(Sha256Impl::ShaNi);
  return v;
}

}  // namespace

TEST_CASE("sha256: portable and SHA-NI kernels agree bit for bit (known answers, boundaries)") {
  if (!sha256_impl_available(Sha256Impl::ShaNi))
    MESSAGE("this CPU has no SHA-NI: only the portable kernel is tested");
  else
    CHECK(std::string(sha256_auto_impl_name()) == "sha-ni");
  const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const std::vector<uint8_t> mib = lcg_bytes(1 << 20);
  for (Sha256Impl impl : impls()) {
    CAPTURE(static_cast<int>(impl));
    CHECK(hash_with(impl, nullptr, 0) ==
          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(hash_with(impl, reinterpret_cast<const uint8_t*>("abc"), 3) ==
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hash_with(impl, reinterpret_cast<const uint8_t*>(two.data()), two.size()) ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hash_with(impl, mib.data(), mib.size()) ==
          "5f566d6ad8960ad24043f8e092c86aaf6e135de02300b90fe7346a94ec3810ca");
    Sha256 million(impl);
    const std::string a1000(1000, 'a');
    for (int i = 0; i < 1000; ++i) million.update(a1000);
    CHECK(million.hex_digest() ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
  // Every length 0..300 (one to five blocks, both padding cases 55/56/63/64) and lengths
  // around larger block multiples, from unaligned starts: SHA-NI == portable.
  if (sha256_impl_available(Sha256Impl::ShaNi)) {
    std::vector<std::size_t> lens;
    for (std::size_t n = 0; n <= 300; ++n) lens.push_back(n);
    for (std::size_t k : {1024u, 4096u, 65536u, 1u << 20})
      for (std::size_t d = 0; d < 3; ++d) lens.insert(lens.end(), {k - 1 - d, k + d});
    for (std::size_t n : lens) {
      for (std::size_t off : {std::size_t{0}, std::size_t{3}}) {
        if (off + n > mib.size()) continue;
        CAPTURE(n);
        CAPTURE(off);
        REQUIRE(hash_with(Sha256Impl::ShaNi, mib.data() + off, n) ==
                hash_with(Sha256Impl::Portable, mib.data() + off, n));
      }
    }
    // Streaming in uneven pieces (partial-block buffer followed by multi-block runs).
    Sha256 s(Sha256Impl::ShaNi);
    std::size_t at = 0, step = 1;
    while (at < mib.size()) {
      const std::size_t take = std::min(step, mib.size() - at);
      s.update(mib.data() + at, take);
      at += take;
      step = step * 3 + 7;
    }
    CHECK(s.hex_digest() == hash_with(Sha256Impl::Portable, mib.data(), mib.size()));
  } else {
    CHECK_THROWS_AS(Sha256(Sha256Impl::ShaNi), cmdr::Error);
  }
}

TEST_CASE("safetensors: File::sha256_hex of the mapping equals sha256_file_hex") {
  cmdr::testing::TempDir d;
  st::Writer w;
  Tensor t = Tensor::empty({1000, 37});
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = static_cast<float>(i % 977) * 0.5f;
  w.add("a", t);
  w.set_metadata("k", "v");
  w.write(d.file("w.safetensors"));
  st::File f(d.file("w.safetensors"));
  CHECK(f.sha256_hex() == sha256_file_hex(d.file("w.safetensors")));
  const std::vector<uint8_t> bytes = w.serialize();
  CHECK(st::File::from_bytes("mem", bytes.data(), bytes.size()).sha256_hex() == f.sha256_hex());
}

TEST_CASE("safetensors: a file truncated after it was mapped gives an error, not SIGBUS") {
  cmdr::testing::TempDir d;
  const std::string path = d.file("shrinks.safetensors");
  st::Writer w;
  Tensor big = Tensor::zeros({64, 1024});  // 256 KiB: many pages past the cut
  w.add("big", big);
  w.add_i64("count", std::vector<int64_t>(8192, 7), {8192});
  w.write(path);
  st::File f(path);
  REQUIRE(f.get("big").numel() == 64 * 1024);  // fine while the file is whole
  // Keep only the first page: the header and the start of the data stay readable.
  REQUIRE(::truncate(path.c_str(), 4096) == 0);
  CHECK_THROWS_WITH_AS(f.get("big"), doctest::Contains("shrank after it was opened"), cmdr::Error);
  CHECK_THROWS_WITH_AS(f.get_i64("count"), doctest::Contains("shrinks.safetensors"), cmdr::Error);
  CHECK_THROWS_WITH_AS(f.sha256_hex(), doctest::Contains("shrank"), cmdr::Error);
  // The reader still works afterwards (the handler is left in a usable state), and a fresh
  // open of the truncated file is rejected by the size checks as before.
  CHECK_THROWS_WITH_AS(f.get("big"), doctest::Contains("shrank"), cmdr::Error);
  CHECK_THROWS_AS(st::File{path}, cmdr::Error);
}
