// io/safetensors and io/sha256 tests: the malformed-file table (one row per reader rule,
// each rejected with a message naming the file, the tensor and the rule), round trips of
// every dtype, the reference writer's byte layout and order, a fixture written by
// tools/golden/st.py from torch (tools/golden/safetensors_fixture.py), writer atomicity,
// the fuzz corpus and regressions, and SHA-256 known-answer vectors.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "io/safetensors.hpp"
#include "io/sha256.hpp"

using namespace cmdr;
namespace fs = std::filesystem;

namespace {

// A fresh per-process scratch directory (removed by the caller's TempDir destructor).
struct TempDir {
  fs::path dir;
  TempDir() {
    dir = fs::temp_directory_path() /
          ("cmdr_st_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir, ec);
  }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  static int& counter() {
    static int c = 0;
    return c;
  }
};

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}
// A file from a header string (length prefix computed unless given) and a data buffer.
std::string make_file(const std::string& header, std::size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\x01');
}
void put(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}
std::string rejection(const std::string& path) {
  try {
    st::File f(path);
  } catch (const cmdr::Error& e) {
    return e.what();
  }
  return "";
}
uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
std::vector<std::string> dir_files(const fs::path& d) {
  std::vector<std::string> out;
  if (!fs::exists(d)) return out;
  for (const auto& e : fs::directory_iterator(d))
    if (e.is_regular_file()) out.push_back(e.path().string());
  return out;
}

struct BadRow {
  const char* rule;  // also the file name
  std::string bytes;
  std::vector<std::string> words;  // all must appear in the message
};

const std::string kT = R"("dtype":"F32","shape":[1],"data_offsets":[0,4])";

std::vector<BadRow> bad_rows() {
  std::vector<BadRow> r;
  auto f32 = [](const std::string& name, uint64_t b, uint64_t e, const std::string& shape) {
    return "\"" + name + R"(":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[)" +
           std::to_string(b) + "," + std::to_string(e) + "]}";
  };
  r.push_back({"too_short", std::string("\x02\0\0", 3), {"shorter than the 8-byte header length"}});
  r.push_back({"header_over_limit",
               le64(100'000'001) + "{}",
               {"header length 100000001", "exceeds the limit"}});
  r.push_back({"header_len_u64_max", le64(~0ull) + "{}", {"exceeds the limit"}});
  r.push_back({"header_past_eof", le64(1000) + "{}      ", {"runs past the end of the file"}});
  r.push_back({"utf8_invalid_byte", make_file("{\"a\xff\":{" + kT + "}}", 4), {"not valid UTF-8"}});
  r.push_back({"utf8_overlong", make_file("{\"a\xc0\xaf\":{" + kT + "}}", 4), {"not valid UTF-8"}});
  r.push_back(
      {"utf8_surrogate", make_file("{\"a\xed\xa0\x80\":{" + kT + "}}", 4), {"not valid UTF-8"}});
  r.push_back({"utf8_truncated", make_file("{}\xe2\x82", 0), {"not valid UTF-8"}});
  r.push_back({"no_brace_leading_space", make_file(" {}", 0), {"does not start with '{'"}});
  r.push_back({"no_brace_array", make_file("[]", 0), {"does not start with '{'"}});
  r.push_back({"empty_header", make_file("", 0), {"does not start with '{'"}});
  r.push_back({"json_broken", make_file("{\"a\":", 0), {"not valid JSON"}});
  r.push_back({"json_trailing_garbage", make_file("{}x", 0), {"not valid JSON"}});
  r.push_back({"json_trailing_nul", make_file(std::string("{}\0\0", 4), 0), {"not valid JSON"}});
  r.push_back({"json_nul_inside", make_file(std::string("{\"a\":\0}", 7), 0), {"not valid JSON"}});
  r.push_back({"json_two_objects", make_file("{}{}", 0), {"not valid JSON"}});
  r.push_back({"dtype_unknown",
               make_file(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1),
               {"tensor 'w'", "unsupported dtype 'F8_E4M3'"}});
  r.push_back({"dtype_wrong_case",
               make_file(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4),
               {"tensor 'w'", "unsupported dtype 'f32'"}});
  r.push_back({"dtype_not_string",
               make_file(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4),
               {"tensor 'w'", "dtype must be a string"}});
  r.push_back({"shape_negative",
               make_file("{" + f32("w", 0, 4, "[-1]") + "}", 4),
               {"tensor 'w'", "shape entries must be non-negative integers"}});
  r.push_back({"shape_float",
               make_file("{" + f32("w", 0, 4, "[1.0]") + "}", 4),
               {"tensor 'w'", "shape entries must be non-negative integers"}});
  r.push_back({"shape_beyond_u64",
               make_file("{" + f32("w", 0, 4, "[18446744073709551616]") + "}", 4),
               {"tensor 'w'", "shape entries must be non-negative integers"}});
  r.push_back({"shape_not_array",
               make_file("{" + f32("w", 0, 4, "4") + "}", 4),
               {"tensor 'w'", "shape must be an array"}});
  r.push_back({"shape_nested",
               make_file("{" + f32("w", 0, 4, "[[1]]") + "}", 4),
               {"tensor 'w'", "shape entries must be non-negative integers"}});
  r.push_back({"shape_count_overflow",
               make_file("{" + f32("w", 0, 4, "[4294967296,4294967296]") + "}", 4),
               {"tensor 'w'", "overflows"}});
  r.push_back({"shape_dim_over_int64",
               make_file("{" + f32("w", 0, 4, "[9223372036854775808]") + "}", 4),
               {"tensor 'w'", "overflows"}});
  r.push_back({"shape_bytes_overflow",
               make_file("{" + f32("w", 0, 4, "[4611686018427387904]") + "}", 4),
               {"tensor 'w'", "size overflows"}});
  r.push_back({"shape_zero_dim_overflow",
               make_file("{" + f32("w", 0, 0, "[0,4294967296,4294967296]") + "}", 0),
               {"tensor 'w'", "overflows"}});
  r.push_back({"offsets_three",
               make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}})", 4),
               {"tensor 'w'", "exactly two"}});
  r.push_back({"offsets_one",
               make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4),
               {"tensor 'w'", "exactly two"}});
  r.push_back({"offsets_negative",
               make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
               {"tensor 'w'", "data_offsets must be non-negative integers"}});
  r.push_back({"offsets_begin_after_end",
               make_file("{" + f32("w", 8, 4, "[1]") + "}", 8),
               {"tensor 'w'", "begin > end"}});
  r.push_back({"offsets_outside_buffer",
               make_file("{" + f32("w", 0, 400, "[100]") + "}", 4),
               {"tensor 'w'", "outside the 4-byte data buffer"}});
  r.push_back(
      {"offsets_u64_max",
       make_file("{" + f32("w", 18446744073709551611ull, 18446744073709551615ull, "[1]") + "}", 4),
       {"tensor 'w'", "outside"}});
  r.push_back({"size_mismatch",
               make_file("{" + f32("w", 0, 4, "[2]") + "}", 4),
               {"tensor 'w'", "shape [2] x dtype size", "needs 8"}});
  r.push_back({"gap_between",
               make_file("{" + f32("a", 0, 4, "[1]") + "," + f32("b", 8, 12, "[1]") + "}", 12),
               {"tensor 'b'", "gap"}});
  r.push_back(
      {"gap_at_start", make_file("{" + f32("a", 4, 8, "[1]") + "}", 8), {"tensor 'a'", "gap"}});
  r.push_back({"overlap",
               make_file("{" + f32("a", 0, 8, "[2]") + "," + f32("b", 4, 12, "[2]") + "}", 12),
               {"tensor 'b'", "inside tensor 'a'", "overlap"}});
  r.push_back({"overlap_same_range",
               make_file("{" + f32("a", 0, 4, "[1]") + "," + f32("b", 0, 4, "[1]") + "}", 4),
               {"overlap"}});
  r.push_back({"trailing_bytes",
               make_file("{" + f32("a", 0, 4, "[1]") + "}", 8),
               {"4 trailing bytes after tensor 'a'"}});
  r.push_back({"trailing_bytes_no_tensor", make_file("{}", 3), {"3 trailing bytes"}});
  r.push_back({"duplicate_tensor",
               make_file("{" + f32("a", 0, 4, "[1]") + "," + f32("a", 4, 8, "[1]") + "}", 8),
               {"tensor 'a'", "duplicate tensor name"}});
  r.push_back({"duplicate_metadata_key",
               make_file(R"({"__metadata__":{"k":"1","k":"2"}})", 0),
               {"duplicate __metadata__ key 'k'"}});
  r.push_back({"duplicate_metadata_entry",
               make_file(R"({"__metadata__":{"k":"1"},"__metadata__":{}})", 0),
               {"duplicate __metadata__ entry"}});
  r.push_back({"metadata_value_number",
               make_file(R"({"__metadata__":{"k":1}})", 0),
               {"__metadata__ value of 'k' is not a string"}});
  r.push_back({"metadata_value_object",
               make_file(R"({"__metadata__":{"k":{"x":"y"}}})", 0),
               {"__metadata__ value of 'k' is not a string"}});
  r.push_back({"metadata_value_null",
               make_file(R"({"__metadata__":{"k":null}})", 0),
               {"__metadata__ value of 'k' is not a string"}});
  r.push_back({"metadata_not_object",
               make_file(R"({"__metadata__":"x"})", 0),
               {"__metadata__ must be an object mapping strings to strings"}});
  r.push_back({"field_missing",
               make_file(R"({"w":{"dtype":"F32","shape":[1]}})", 4),
               {"tensor 'w'", "missing data_offsets"}});
  r.push_back({"field_unknown",
               make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4),
               {"tensor 'w'", "unknown field 'x'"}});
  r.push_back(
      {"field_duplicate",
       make_file(R"({"w":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
       {"tensor 'w'", "duplicate field 'dtype'"}});
  r.push_back({"tensor_not_object",
               make_file(R"({"w":[1,2]})", 0),
               {"tensor 'w'", "tensor entry must be an object"}});
  return r;
}

}  // namespace

TEST_CASE("safetensors: every malformed file is rejected naming the file, tensor and rule") {
  TempDir tmp;
  const auto rows = bad_rows();
  for (const auto& row : rows) {
    const std::string path = tmp.file(std::string(row.rule) + ".safetensors");
    put(path, row.bytes);
    const std::string msg = rejection(path);
    INFO("rule ", std::string(row.rule), ": message '", msg, "'");
    CHECK(!msg.empty());
    CHECK(msg.find(path) != std::string::npos);
    for (const auto& w : row.words)
      CHECK_MESSAGE(msg.find(w) != std::string::npos, "missing '", w, "'");
    // The in-memory parser applies the same rules (the fuzz target uses it).
    if (row.bytes.size() >= 8) {
      bool threw = false;
      try {
        st::File::from_bytes(row.rule, reinterpret_cast<const uint8_t*>(row.bytes.data()),
                             row.bytes.size());
      } catch (const cmdr::Error& e) {
        threw = std::string(e.what()).find(row.rule) != std::string::npos;
      }
      CHECK(threw);
    }
  }
  CHECK(rows.size() >= 45);
}

TEST_CASE("safetensors: accepted corner cases") {
  TempDir tmp;
  // Trailing spaces (the writer's padding) and no tensors at all.
  put(tmp.file("spaces.safetensors"), make_file("{}      ", 0));
  st::File a(tmp.file("spaces.safetensors"));
  CHECK(a.tensors().empty());
  CHECK(a.metadata().empty());
  // Empty tensors anywhere in the order, a scalar, key order not by offset.
  put(tmp.file("empty.safetensors"),
      make_file(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                R"("e":{"dtype":"I64","shape":[3,0],"data_offsets":[4,4]},)"
                R"("__metadata__":{"k":"v","caf\u00e9":"\u2603"}})",
                4));
  st::File b(tmp.file("empty.safetensors"));
  REQUIRE(b.tensors().size() == 2);
  CHECK(b.info("e").shape == Shape{3, 0});
  CHECK(b.get("e", true).numel() == 0);
  CHECK(b.get_i64("e").empty());
  CHECK(b.info("s").shape == Shape{});
  CHECK(b.metadata().at("caf\xc3\xa9") == "\xe2\x98\x83");
  // Unknown tensor: error names file and tensor.
  try {
    b.get("nope");
    FAIL("no throw");
  } catch (const cmdr::Error& e) {
    CHECK(std::string(e.what()).find("'nope'") != std::string::npos);
    CHECK(std::string(e.what()).find("empty.safetensors") != std::string::npos);
  }
  // Dtype and shape checks on get().
  CHECK_THROWS_WITH_AS(b.get("e"), doctest::Contains("is I64, expected F32"), cmdr::Error);
  CHECK_THROWS_WITH_AS(b.get("s", Shape{2}), doctest::Contains("has shape [], expected [2]"),
                       cmdr::Error);
  CHECK_THROWS_WITH_AS(st::File(tmp.file("missing.safetensors")),
                       doctest::Contains("missing.safetensors"), cmdr::Error);
  CHECK_THROWS_WITH_AS(st::File(tmp.dir.string()), doctest::Contains("not a regular file"),
                       cmdr::Error);
  REQUIRE(::mkfifo(tmp.file("fifo").c_str(), 0600) == 0);  // must not block opening it
  CHECK_THROWS_WITH_AS(st::File(tmp.file("fifo")), doctest::Contains("not a regular file"),
                       cmdr::Error);
}

TEST_CASE("safetensors: aligned F32 is used in place, unaligned is copied; views outlive File") {
  TempDir tmp;
  const std::vector<float> v = {1.5f, -2.0f, 3.25f};
  std::string data(12, '\0');
  std::memcpy(data.data(), v.data(), 12);
  const std::string h = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";  // 55 bytes
  REQUIRE(h.size() % 4 != 0);
  put(tmp.file("unaligned.safetensors"), le64(h.size()) + h + data);
  std::string padded = h;
  while (padded.size() % 8) padded += ' ';
  put(tmp.file("aligned.safetensors"), le64(padded.size()) + padded + data);

  st::F32View un, al;
  {
    st::File fu(tmp.file("unaligned.safetensors"));
    st::File fa(tmp.file("aligned.safetensors"));
    un = fu.view_f32("x");
    al = fa.view_f32("x");
    CHECK(!un.in_place());
    CHECK(al.in_place());
    CHECK(al.data() == reinterpret_cast<const float*>(fa.raw("x")));
    CHECK(fu.get("x").to_vector() == v);  // the copying path reads unaligned data too
    CHECK_THROWS_WITH_AS(st::File::from_bytes("mem", nullptr, 0).tensors(),
                         doctest::Contains("shorter than the 8-byte"), cmdr::Error);
  }
  // Both Files are gone: the views keep their bytes alive (mapping or copy).
  for (int i = 0; i < 3; ++i) {
    CHECK(un.data()[i] == v[i]);
    CHECK(al.data()[i] == v[i]);
  }
  CHECK(al.to_tensor().to_vector() == v);
  CHECK(al.shape() == Shape{3});
}

TEST_CASE("safetensors: round trip of every dtype, reference order and 8-byte alignment") {
  TempDir tmp;
  std::mt19937 gen(7);
  const st::DType all[] = {st::DType::F32, st::DType::F16, st::DType::BF16, st::DType::F64,
                           st::DType::I64, st::DType::I32, st::DType::I16,  st::DType::I8,
                           st::DType::U8,  st::DType::BOOL};
  st::Writer w;
  std::map<std::string, std::vector<uint8_t>> want;
  std::map<std::string, Shape> shapes;
  int k = 0;
  for (st::DType d : all) {
    // Odd sizes so that a wrong element size or offset shows.
    const Shape shape = {static_cast<int64_t>(1 + k % 3), static_cast<int64_t>(3 + k)};
    const std::size_t n = static_cast<std::size_t>(shape_numel(shape) * st::dtype_size(d));
    std::vector<uint8_t> b(n);
    for (auto& x : b) x = d == st::DType::BOOL ? gen() % 2 : static_cast<uint8_t>(gen());
    const std::string name = std::string("t_") + st::dtype_name(d);
    want[name] = b;
    shapes[name] = shape;
    w.add_raw(name, d, shape, b);
    ++k;
  }
  w.add("empty", Tensor::zeros({0, 5}));
  want["empty"] = {};
  shapes["empty"] = {0, 5};
  w.set_metadata("format", "pt");
  w.set_metadata("note", "caf\xc3\xa9");
  const std::string path = tmp.file("all.safetensors");
  w.write(path);
  CHECK(dir_files(tmp.dir).size() == 1);  // no temporary file left behind

  st::File f(path);
  CHECK(f.header_size() % 8 == 0);
  CHECK(f.metadata() ==
        std::map<std::string, std::string>{{"format", "pt"}, {"note", "caf\xc3\xa9"}});
  REQUIRE(f.tensors().size() == want.size());
  for (const auto& [name, bytes] : want) {
    const st::TensorInfo& ti = f.info(name);
    CHECK(ti.shape == shapes[name]);
    REQUIRE(ti.nbytes() == bytes.size());
    CHECK(std::memcmp(f.raw(name), bytes.data(), bytes.size()) == 0);
    // Sorted larger dtypes first: every tensor is aligned to its element size.
    CHECK(ti.begin % static_cast<uint64_t>(st::dtype_size(ti.dtype)) == 0);
  }
  CHECK(f.view_f32("t_F32").in_place());
  // The reference order: dtype (I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL), then name.
  std::vector<std::string> order;
  for (const auto& t : f.tensors()) order.push_back(t.name);
  CHECK(order == std::vector<std::string>{"t_I64", "t_F64", "empty", "t_F32", "t_I32", "t_BF16",
                                          "t_F16", "t_I16", "t_I8", "t_U8", "t_BOOL"});
  // The file on disk is exactly serialize().
  const std::vector<uint8_t> mem = w.serialize();
  CHECK(slurp(path) == std::string(mem.begin(), mem.end()));
  // Integer access.
  const std::vector<int64_t> i64 = f.get_i64("t_I64");
  int64_t first;
  std::memcpy(&first, want["t_I64"].data(), 8);
  CHECK(i64.at(0) == first);

  // Writer errors.
  CHECK_THROWS_WITH_AS(w.add("empty", Tensor::zeros({1})), doctest::Contains("added twice"),
                       cmdr::Error);
  CHECK_THROWS_WITH_AS(w.add("__metadata__", Tensor::zeros({1})), doctest::Contains("reserved"),
                       cmdr::Error);
  CHECK_THROWS_WITH_AS(w.add_raw("bad", st::DType::F16, {3}, std::vector<uint8_t>(5)),
                       doctest::Contains("5 bytes for shape [3] x F16"), cmdr::Error);
  CHECK_THROWS_WITH_AS(w.add("bad\xff", Tensor::zeros({1})), doctest::Contains("not valid UTF-8"),
                       cmdr::Error);
}

TEST_CASE("safetensors writer: byte layout of the reference format") {
  // Layout from the format's definition: u64 LE header length, compact JSON with
  // __metadata__ first and fields dtype, shape, data_offsets, spaces to a multiple of 8.
  std::vector<float> v = {0, 1, 2, 3, 4, 5};
  st::Writer w;
  w.add("attn.0", Tensor::from_vector({1, 2, 3}, v));
  const std::string h = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  REQUIRE(h.size() == 64);
  std::string data(24, '\0');
  std::memcpy(data.data(), v.data(), 24);
  const auto got = w.serialize();
  CHECK(std::string(got.begin(), got.end()) == le64(64) + h + data);

  st::Writer e;
  const auto ge = e.serialize();
  CHECK(std::string(ge.begin(), ge.end()) == le64(8) + "{}      ");
  e.set_metadata("framework", "pt");
  const auto gm = e.serialize();
  CHECK(std::string(gm.begin(), gm.end()) ==
        le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

TEST_CASE("safetensors: file written by tools/golden/st.py (torch dtypes) reads back exactly") {
  const std::string path = std::string(CMDR_FIXTURES) + "/io/st_python.safetensors";
  st::File f(path);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("producer") == "tools/golden/safetensors_fixture.py");
  const std::pair<const char*, st::DType> typed[] = {
      {"f16", st::DType::F16},   {"bf16", st::DType::BF16},
      {"f64", st::DType::F64},   {"i64", st::DType::I64},
      {"i32", st::DType::I32},   {"i16", st::DType::I16},
      {"i8", st::DType::I8},     {"u8", st::DType::U8},
      {"bool", st::DType::BOOL}, {"num_batches_tracked", st::DType::I64}};
  for (const auto& [name, dt] : typed) {
    INFO("tensor ", name);
    REQUIRE(f.info(name).dtype == dt);
    // Our conversion against torch's .float() of the same tensor, bit for bit (NaN: any NaN).
    const std::vector<float> got = f.get(name, /*convert=*/true).to_vector();
    const std::vector<float> ref = f.get(std::string(name) + ".as_f32").to_vector();
    CHECK(f.info(name).shape == f.info(std::string(name) + ".as_f32").shape);
    REQUIRE(got.size() == ref.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (std::isnan(ref[i]))
        CHECK(std::isnan(got[i]));
      else
        CHECK_MESSAGE(bits(got[i]) == bits(ref[i]), "element ", i, ": ", got[i], " vs ", ref[i]);
    }
    CHECK_THROWS_WITH_AS(f.get(name), doctest::Contains("expected F32"), cmdr::Error);
  }
  CHECK(f.info("num_batches_tracked").shape == Shape{});
  CHECK(f.get_i64("num_batches_tracked") == std::vector<int64_t>{12345});
  CHECK(f.info("f32_empty").shape == Shape{0, 2});
  CHECK(f.info("f32_scalar").shape == Shape{});
  CHECK(f.get("f32_scalar").item() == 2.5f);

  // Re-written by our writer with the same metadata: byte-identical to the Python writer.
  st::Writer w;
  for (const auto& t : f.tensors()) {
    const uint8_t* p = f.raw(t.name);
    w.add_raw(t.name, t.dtype, t.shape, std::vector<uint8_t>(p, p + t.nbytes()));
  }
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  const auto again = w.serialize();
  CHECK(std::string(again.begin(), again.end()) == slurp(path));

  // SHA-256 of the file against Python's hashlib (written next to the fixture).
  std::string want = slurp(path + ".sha256");
  want = want.substr(0, 64);
  CHECK(sha256_file_hex(path) == want);

  // Optional development-time check: CMDR_ST_DUMP=file writes our writer's output of every
  // dtype for tools/golden/st.py to parse (not part of the test).
  if (const char* dump = std::getenv("CMDR_ST_DUMP")) w.write(dump);
}

TEST_CASE("safetensors writer: a failed write leaves the previous file intact") {
  TempDir tmp;
  const std::string path = tmp.file("model.safetensors");
  st::Writer good;
  good.add("a", Tensor::full({4}, 1.0f));
  good.write(path);
  const std::string before = slurp(path);

  st::Writer big;
  big.add("b", Tensor::full({1 << 18}, 2.0f));  // 1 MiB of data

  // (1) The write itself fails half way (file size limit: also applies to root), as on a
  // full disk.
  {
    struct rlimit old {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
    struct sigaction ign {
    }, prev{};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGXFSZ, &ign, &prev);
    struct rlimit lim = old;
    lim.rlim_cur = 64 * 1024;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    std::string msg;
    try {
      big.write(path);
    } catch (const cmdr::Error& e) {
      msg = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &old);
    ::sigaction(SIGXFSZ, &prev, nullptr);
    CHECK(msg.find("writing tensor data failed") != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(slurp(path) == before);
    CHECK(dir_files(tmp.dir).size() == 1);  // the temporary file was removed
  }
  // (2) The rename is impossible: the target is a directory.
  {
    const std::string d = tmp.file("dir.safetensors");
    fs::create_directories(d);
    CHECK_THROWS_WITH_AS(good.write(d), doctest::Contains("rename over the target failed"),
                         cmdr::Error);
    CHECK(fs::is_directory(d));
    CHECK(dir_files(tmp.dir).size() == 1);
  }
  // (3) The temporary file cannot be created: the parent is a regular file (root-proof).
  CHECK_THROWS_WITH_AS(good.write(path + "/x.safetensors"),
                       doctest::Contains("cannot create temporary file"), cmdr::Error);
  CHECK(slurp(path) == before);
  // And a successful write replaces the file.
  big.write(path);
  CHECK(st::File(path).info("b").shape == Shape{1 << 18});
  CHECK(dir_files(tmp.dir).size() == 1);
}

TEST_CASE("safetensors: fuzz seed corpus parses; fuzz regressions are handled") {
  const fs::path root = fs::path(CMDR_SOURCE_DIR) / "tests" / "fuzz";
  const auto corpus = dir_files(root / "corpus");
  CHECK(corpus.size() >= 10);
  for (const auto& p : corpus) {
    INFO(p);
    st::File f(p);  // every seed is a valid file
    for (const auto& t : f.tensors()) CHECK(f.get(t.name, true).numel() == shape_numel(t.shape));
  }
  for (const auto& p : dir_files(root / "regressions")) {
    INFO(p);
    try {
      st::File f(p);
      for (const auto& t : f.tensors()) (void)f.get(t.name, true);
    } catch (const cmdr::Error& e) {
      CHECK(std::string(e.what()).find(p) != std::string::npos);
    }
  }
}

TEST_CASE("sha256: FIPS 180-4 known answers, streaming and files") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha256_hex(two_blocks) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string million(1'000'000, 'a');
  const std::string million_hash =
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  CHECK(sha256_hex(million) == million_hash);
  // Streaming in uneven pieces (crossing block boundaries) gives the same digest.
  Sha256 s;
  std::size_t at = 0, step = 1;
  while (at < million.size()) {
    const std::size_t n = std::min(step, million.size() - at);
    s.update(million.data() + at, n);
    at += n;
    step = step * 3 + 1;
    if (step > 200'000) step = 7;
  }
  CHECK(s.hex_digest() == million_hash);
  CHECK_THROWS_AS(s.update("x", 1), cmdr::Error);
  s.reset();
  s.update("abc");
  CHECK(s.hex_digest() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Padding edge cases: 55, 56, 63, 64 bytes (one vs two final blocks) agree with streaming.
  for (std::size_t n : {55u, 56u, 63u, 64u, 119u, 120u}) {
    const std::string m(n, 'q');
    Sha256 t;
    for (char c : m) t.update(&c, 1);
    CHECK(t.hex_digest() == sha256_hex(m));
  }
  // Files: streamed in 1 MiB chunks, so use 3 MiB + 5 bytes of 'a'-pattern vs one shot.
  TempDir tmp;
  put(tmp.file("abc"), "abc");
  CHECK(sha256_file_hex(tmp.file("abc")) == sha256_hex("abc"));
  put(tmp.file("million"), million);
  CHECK(sha256_file_hex(tmp.file("million")) == million_hash);
  std::string big((3u << 20) + 5, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 + 7);
  put(tmp.file("big"), big);
  CHECK(sha256_file_hex(tmp.file("big")) == sha256_hex(big));
  CHECK_THROWS_WITH_AS(sha256_file_hex(tmp.file("nope")), doctest::Contains("nope"), cmdr::Error);
}
