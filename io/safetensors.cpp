#include "io/safetensors.hpp"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>

#include "engine/error.hpp"
#include "io/sha256.hpp"

namespace cmdr::st {
namespace {

// ---- Guarded reads of the mapping ----
// A mapped file can shrink afterwards (another process truncates or rewrites it in place);
// reading a mapped page past the new end raises SIGBUS. Every read of mapped bytes done by
// this reader (header copy, tensor copies and conversions, hashing) runs inside guarded():
// a SIGBUS on this thread, inside the guarded call, at an address inside the range being
// read, jumps back out (siglongjmp) and becomes a cmdr::Error naming the file. Any other
// SIGBUS goes to the handler that was installed before ours (or the default action). The
// guarded bodies are plain loops over trivially destructible objects (nothing to unwind).
thread_local sigjmp_buf* t_jmp = nullptr;
thread_local const uint8_t* t_lo = nullptr;
thread_local const uint8_t* t_hi = nullptr;
struct sigaction g_prev_sigbus {};

void on_sigbus(int sig, siginfo_t* si, void* ctx) {
  const auto* a = static_cast<const uint8_t*>(si->si_addr);
  if (t_jmp && a >= t_lo && a < t_hi) siglongjmp(*t_jmp, 1);
  if (g_prev_sigbus.sa_flags & SA_SIGINFO) {
    g_prev_sigbus.sa_sigaction(sig, si, ctx);
  } else if (g_prev_sigbus.sa_handler != SIG_DFL && g_prev_sigbus.sa_handler != SIG_IGN) {
    g_prev_sigbus.sa_handler(sig);
  } else {
    // Default action: restore it; returning re-runs the faulting access, which then
    // terminates the process as it would have without this handler.
    ::signal(sig, SIG_DFL);
  }
}

void install_sigbus_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &g_prev_sigbus);
  });
}

// Runs body() with reads of [lo, lo + n) guarded; false if one of them hit SIGBUS.
template <typename Body>
bool guarded(const uint8_t* lo, std::size_t n, Body&& body) {
  sigjmp_buf env;
  sigjmp_buf* const prev = t_jmp;
  const uint8_t* const prev_lo = t_lo;
  const uint8_t* const prev_hi = t_hi;
  if (sigsetjmp(env, 1) != 0) {
    t_jmp = prev, t_lo = prev_lo, t_hi = prev_hi;
    return false;
  }
  t_lo = lo, t_hi = lo + n, t_jmp = &env;
  body();
  t_jmp = prev, t_lo = prev_lo, t_hi = prev_hi;
  return true;
}

constexpr uint64_t kMaxHeader = 100'000'000;  // WEIGHTS.md: header length <= 100,000,000

struct DTypeRow {
  DType d;
  const char* name;
  int64_t size;
  // Position in the reference implementation's Dtype enum (BOOL, U8, I8, F8_E5M2, F8_E4M3,
  // I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64); its writer orders tensors by this
  // rank, larger first, then by name.
  int rank;
};
// The closed dtype whitelist (exact names of the safetensors format).
constexpr DTypeRow kDTypes[] = {
    {DType::F32, "F32", 4, 11},  {DType::F16, "F16", 2, 7},  {DType::BF16, "BF16", 2, 8},
    {DType::F64, "F64", 8, 12},  {DType::I64, "I64", 8, 13}, {DType::I32, "I32", 4, 9},
    {DType::I16, "I16", 2, 5},   {DType::I8, "I8", 1, 2},    {DType::U8, "U8", 1, 1},
    {DType::BOOL, "BOOL", 1, 0},
};
static_assert(sizeof(kDTypes) / sizeof(kDTypes[0]) == 10, "one row per DType");

const DTypeRow& row(DType d) {
  for (const auto& r : kDTypes)
    if (r.d == d) return r;
  fail("safetensors: unknown dtype enum value ", static_cast<int>(d));
}

// IEEE binary16 -> binary32 (exact: every half is a float).
float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan (payload kept)
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// double -> float with IEEE round-to-nearest-even, also for finite values beyond the float
// range (a plain cast of those is undefined behaviour in C++): they become +-FLT_MAX or +-inf
// exactly as torch's .float() does.
float double_to_float(double d) {
  if (std::isfinite(d) && std::fabs(d) > static_cast<double>(FLT_MAX)) {
    // Half an ulp above FLT_MAX is 2^128 - 2^103; ties go to even, i.e. to infinity.
    const double limit = std::ldexp(1.0, 128) - std::ldexp(1.0, 103);
    float big = std::fabs(d) >= limit ? std::numeric_limits<float>::infinity() : FLT_MAX;
    return d < 0 ? -big : big;
  }
  return static_cast<float>(d);
}

// Read-only mapping of a whole file; unmapped when the last owner goes.
struct Mapping {
  void* p = nullptr;
  std::size_t n = 0;
  Mapping(void* p_, std::size_t n_) : p(p_), n(n_) {}
  ~Mapping() { ::munmap(p, n); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
};

// SAX consumer of the header: accepts exactly the safetensors schema and stops at the first
// rule broken (error_ set, returns false). nlohmann's DOM would silently keep the last of two
// duplicate keys and accept any value types, hence a schema-checking SAX handler.
class HeaderSax {
 public:
  using json = nlohmann::json;
  HeaderSax(uint64_t buffer_bytes, std::vector<TensorInfo>* tensors,
            std::map<std::string, std::string>* metadata)
      : buf_(buffer_bytes), tensors_(tensors), metadata_(metadata) {}

  std::string error_;   // the rule broken ("" while fine)
  std::string tensor_;  // the tensor concerned ("" for header-level rules)

  bool null() { return bad_value("null"); }
  bool boolean(bool) { return bad_value("a boolean"); }
  bool number_integer(json::number_integer_t v) {
    if (v < 0) return bad_value("a negative number");
    return number_unsigned(static_cast<uint64_t>(v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (ctx_ == Ctx::Shape) {
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return set("shape entry ", v, " overflows int64");
      cur_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (ctx_ == Ctx::Offsets) {
      if (n_offsets_ >= 2) return set("data_offsets must be exactly two integers [begin, end)");
      (n_offsets_ == 0 ? cur_.begin : cur_.end) = v;
      ++n_offsets_;
      return true;
    }
    return bad_value("a number");
  }
  bool number_float(json::number_float_t, const std::string& s) {
    return bad_value("the non-integer number " + s);
  }
  bool binary(json::binary_t&) { return bad_value("binary data"); }
  bool string(std::string& s) {
    if (ctx_ == Ctx::Meta) {
      (*metadata_)[key_] = s;
      return true;
    }
    if (ctx_ == Ctx::Tensor && field_ == Field::DType) {
      DType d;
      if (!dtype_from_name(s, &d))
        return set("unsupported dtype '", s,
                   "' (accepted: F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL, exact names)");
      cur_.dtype = d;
      has_dtype_ = true;
      return true;
    }
    return bad_value("a string");
  }
  bool start_object(std::size_t) {
    if (ctx_ == Ctx::None && !root_seen_) {
      root_seen_ = true;
      ctx_ = Ctx::Top;
      return true;
    }
    if (ctx_ == Ctx::Top) {
      if (key_ == "__metadata__") {
        ctx_ = Ctx::Meta;
        meta_keys_.clear();
      } else {
        ctx_ = Ctx::Tensor;
        cur_ = TensorInfo{};
        cur_.name = key_;
        has_dtype_ = has_shape_ = has_offsets_ = false;
        fields_seen_ = 0;
      }
      return true;
    }
    return bad_value("an object");
  }
  bool key(std::string& k) {
    if (ctx_ == Ctx::Top) {
      if (!top_keys_.insert(k).second) {
        if (k == "__metadata__") return set("duplicate __metadata__ entry");
        tensor_ = k;
        return set("duplicate tensor name (key appears twice)");
      }
      key_ = k;
      return true;
    }
    if (ctx_ == Ctx::Meta) {
      if (!meta_keys_.insert(k).second) return set("duplicate __metadata__ key '", k, "'");
      key_ = k;
      return true;
    }
    if (ctx_ == Ctx::Tensor) {
      int bit;
      if (k == "dtype") {
        field_ = Field::DType;
        bit = 1;
      } else if (k == "shape") {
        field_ = Field::Shape;
        bit = 2;
      } else if (k == "data_offsets") {
        field_ = Field::Offsets;
        bit = 4;
      } else {
        return set("unknown field '", k, "' (a tensor has only dtype, shape, data_offsets)");
      }
      if (fields_seen_ & bit) return set("duplicate field '", k, "'");
      fields_seen_ |= bit;
      return true;
    }
    return set("unexpected key '", k, "'");
  }
  bool end_object() {
    if (ctx_ == Ctx::Meta) {
      ctx_ = Ctx::Top;
      return true;
    }
    if (ctx_ == Ctx::Tensor) {
      if (!(has_dtype_ && has_shape_ && has_offsets_))
        return set("needs dtype, shape and data_offsets (missing ",
                   !has_dtype_   ? "dtype"
                   : !has_shape_ ? "shape"
                                 : "data_offsets",
                   ")");
      if (!check_tensor()) return false;
      tensors_->push_back(std::move(cur_));
      ctx_ = Ctx::Top;
      return true;
    }
    if (ctx_ == Ctx::Top) {
      ctx_ = Ctx::Done;
      return true;
    }
    return set("unbalanced object");
  }
  bool start_array(std::size_t) {
    if (ctx_ == Ctx::Tensor && field_ == Field::Shape) {
      ctx_ = Ctx::Shape;
      return true;
    }
    if (ctx_ == Ctx::Tensor && field_ == Field::Offsets) {
      ctx_ = Ctx::Offsets;
      n_offsets_ = 0;
      return true;
    }
    return bad_value("an array");
  }
  bool end_array() {
    if (ctx_ == Ctx::Shape) {
      has_shape_ = true;
      ctx_ = Ctx::Tensor;
      return true;
    }
    if (ctx_ == Ctx::Offsets) {
      if (n_offsets_ != 2) return set("data_offsets must be exactly two integers [begin, end)");
      has_offsets_ = true;
      ctx_ = Ctx::Tensor;
      return true;
    }
    return set("unbalanced array");
  }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& e) {
    if (error_.empty()) {
      tensor_.clear();
      error_ = "header is not valid JSON (at byte " + std::to_string(pos) + ": " + e.what() + ")";
    }
    return false;
  }

 private:
  enum class Ctx { None, Top, Meta, Tensor, Shape, Offsets, Done };
  enum class Field { DType, Shape, Offsets };

  template <typename... A>
  bool set(const A&... pieces) {
    std::ostringstream os;
    (os << ... << pieces);
    error_ = os.str();
    if (tensor_.empty() && (ctx_ == Ctx::Tensor || ctx_ == Ctx::Shape || ctx_ == Ctx::Offsets))
      tensor_ = cur_.name;
    return false;
  }
  // A value of the wrong JSON type at the current position: name the place.
  bool bad_value(const std::string& what) {
    switch (ctx_) {
      case Ctx::None:
        return set("header is not a JSON object (found ", what, ")");
      case Ctx::Top:
        if (key_ == "__metadata__")
          return set("__metadata__ must be an object mapping strings to strings (found ", what,
                     ")");
        tensor_ = key_;
        return set("tensor entry must be an object {dtype, shape, data_offsets} (found ", what,
                   ")");
      case Ctx::Meta:
        return set("__metadata__ value of '", key_,
                   "' is not a string (metadata maps strings to strings; found ", what, ")");
      case Ctx::Tensor:
        if (field_ == Field::DType) return set("dtype must be a string (found ", what, ")");
        if (field_ == Field::Shape)
          return set("shape must be an array of non-negative integers (found ", what, ")");
        return set("data_offsets must be an array of two non-negative integers (found ", what, ")");
      case Ctx::Shape:
        return set("shape entries must be non-negative integers (found ", what, ")");
      case Ctx::Offsets:
        return set("data_offsets must be non-negative integers (found ", what, ")");
      case Ctx::Done:
        break;
    }
    return set("unexpected ", what, " after the header object");
  }
  // Per-tensor rules: shape x dtype size without overflow, offsets inside the buffer and
  // consistent with the size.
  bool check_tensor() {
    const uint64_t esize = static_cast<uint64_t>(row(cur_.dtype).size);
    // The product of the dimensions (zeros counted as 1, so that strides stay
    // representable too) must fit int64; an empty tensor then has 0 elements.
    const uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    uint64_t count = 1;
    bool zero = false;
    for (int64_t d : cur_.shape) {
      const uint64_t x = d == 0 ? 1 : static_cast<uint64_t>(d);
      zero = zero || d == 0;
      if (count > kMax / x)
        return set("shape ", shape_str(cur_.shape), " overflows (element count exceeds int64)");
      count *= x;
    }
    if (zero) count = 0;
    if (count > kMax / esize)
      return set("shape ", shape_str(cur_.shape), " x ", row(cur_.dtype).name,
                 " size overflows (byte count)");
    const uint64_t bytes = count * esize;
    if (cur_.begin > cur_.end)
      return set("data_offsets [", cur_.begin, ", ", cur_.end, ") have begin > end");
    if (cur_.end > buf_)
      return set("data_offsets [", cur_.begin, ", ", cur_.end, ") outside the ", buf_,
                 "-byte data buffer");
    if (cur_.end - cur_.begin != bytes)
      return set("data_offsets [", cur_.begin, ", ", cur_.end, ") span ", cur_.end - cur_.begin,
                 " bytes but shape ", shape_str(cur_.shape), " x dtype size (",
                 row(cur_.dtype).name, ", ", esize, " bytes) needs ", bytes);
    return true;
  }

  uint64_t buf_;
  std::vector<TensorInfo>* tensors_;
  std::map<std::string, std::string>* metadata_;
  Ctx ctx_ = Ctx::None;
  bool root_seen_ = false;
  Field field_ = Field::DType;
  std::string key_;
  std::set<std::string> top_keys_, meta_keys_;
  TensorInfo cur_;
  bool has_dtype_ = false, has_shape_ = false, has_offsets_ = false;
  int fields_seen_ = 0;
  int n_offsets_ = 0;
};

}  // namespace

const char* dtype_name(DType d) {
  return row(d).name;
}
int64_t dtype_size(DType d) {
  return row(d).size;
}
bool dtype_from_name(const std::string& name, DType* out) {
  for (const auto& r : kDTypes)
    if (name == r.name) {
      *out = r.d;
      return true;
    }
  return false;
}

bool valid_utf8(const char* s, std::size_t n, std::size_t* bad_offset) {
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  std::size_t i = 0;
  auto bad = [&](std::size_t at) {
    if (bad_offset) *bad_offset = at;
    return false;
  };
  while (i < n) {
    const unsigned c = u[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return bad(i);  // stray continuation byte, overlong lead (C0/C1) or > F4
    }
    if (n - i < len) return bad(i);
    for (std::size_t k = 1; k < len; ++k) {
      if ((u[i + k] & 0xC0) != 0x80) return bad(i + k);
      cp = (cp << 6) | (u[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return bad(i);
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Reader

File::File(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO must not hang (it is then rejected as not a regular file).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  CMDR_CHECK(fd >= 0, "safetensors '", path, "': cannot open (", std::strerror(errno), ")");
  struct stat sb {};
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    ::close(fd);
    fail("safetensors '", path, "': not a regular file");
  }
  size_ = static_cast<uint64_t>(sb.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail("safetensors '", path, "': file is ", size_,
         " bytes, shorter than the 8-byte header length");
  }
  install_sigbus_handler();  // before the first read of the mapping
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  CMDR_CHECK(m != MAP_FAILED, "safetensors '", path, "': mmap failed (", std::strerror(map_errno),
             ")");
  auto mapping = std::make_shared<const Mapping>(m, size_);
  // The weights are read front to back once (hash, then tensor copies).
  (void)::madvise(m, size_, MADV_SEQUENTIAL);
  base_ = static_cast<const uint8_t*>(m);
  owner_ = mapping;
  parse();
}

File File::from_bytes(const std::string& label, const uint8_t* bytes, std::size_t size) {
  File f;
  f.path_ = label;
  f.size_ = size;
  CMDR_CHECK(size >= 8, "safetensors '", label, "': file is ", size,
             " bytes, shorter than the 8-byte header length");
  auto copy = std::make_shared<const std::vector<uint8_t>>(bytes, bytes + size);
  f.base_ = copy->data();
  f.owner_ = copy;
  f.parse();
  return f;
}

void File::parse() {
  const std::string& path = path_;
  uint64_t n = 0;
  check_read(guarded(base_, 8, [&] {
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(base_[i]) << (8 * i);
  }));
  CMDR_CHECK(n <= kMaxHeader, "safetensors '", path, "': header length ", n,
             " exceeds the limit of ", kMaxHeader, " bytes");
  CMDR_CHECK(n <= size_ - 8, "safetensors '", path, "': header length ", n,
             " runs past the end of the file (", size_, " bytes)");
  header_len_ = n;
  // The header is validated and parsed from a private copy (the mapping may change).
  std::string header(n, '\0');
  check_read(guarded(base_ + 8, n, [&] {
    if (n) std::memcpy(header.data(), base_ + 8, n);
  }));
  const char* h = header.data();
  std::size_t bad = 0;
  CMDR_CHECK(valid_utf8(h, n, &bad), "safetensors '", path,
             "': header is not valid UTF-8 (bad byte at header offset ", bad, ")");
  CMDR_CHECK(n >= 1 && h[0] == '{', "safetensors '", path, "': header does not start with '{'");
  // nlohmann's lexer takes a NUL byte for the end of input, so "{}\0garbage" would pass;
  // a raw NUL is never valid JSON (inside strings it must be escaped), so reject it here.
  const void* nul = std::memchr(h, 0, n);
  CMDR_CHECK(!nul, "safetensors '", path,
             "': header is not valid JSON (raw NUL byte at header offset ",
             static_cast<const char*>(nul) - h, ")");
  data_ = base_ + 8 + n;
  const uint64_t buf = size_ - 8 - n;

  HeaderSax sax(buf, &tensors_, &metadata_);
  bool ok = false;
  try {
    // strict = true: after the object only JSON whitespace may follow (the spaces of the
    // writer's padding).
    ok = nlohmann::json::sax_parse(h, h + n, &sax, nlohmann::json::input_format_t::json, true);
  } catch (const nlohmann::json::exception& e) {
    fail("safetensors '", path, "': header is not valid JSON (", e.what(), ")");
  }
  if (!ok || !sax.error_.empty()) {
    if (sax.error_.empty()) sax.error_ = "header is not valid JSON";
    if (sax.tensor_.empty()) fail("safetensors '", path, "': ", sax.error_);
    fail("safetensors '", path, "': tensor '", sax.tensor_, "': ", sax.error_);
  }

  // Tiling: sorted by offset, the tensors cover [0, buf) exactly.
  std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  std::string prev;
  for (const auto& t : tensors_) {
    if (t.begin != at) {
      if (t.begin < at)
        fail("safetensors '", path, "': tensor '", t.name, "' starts at ", t.begin,
             " inside tensor '", prev, "' which ends at ", at,
             " (overlap: tensors must tile the data buffer exactly)");
      fail("safetensors '", path, "': tensor '", t.name, "' starts at ", t.begin,
           " but the previous tensor ends at ", at,
           " (gap: tensors must tile the data buffer exactly)");
    }
    at = t.end;
    prev = t.name;
  }
  CMDR_CHECK(at == buf, "safetensors '", path, "': tensors end at ", at, " but the data buffer is ",
             buf, " bytes (", buf - at, " trailing bytes after ",
             prev.empty() ? std::string("the header") : "tensor '" + prev + "'",
             "; the last tensor must end at the end of the file)");
  for (std::size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

void File::check_read(bool ok) const {
  CMDR_CHECK(ok, "safetensors '", path_, "': the file shrank after it was opened (", size_,
             " bytes when mapped; read past its current end: truncated or rewritten ",
             "in place while in use?)");
}

std::string File::sha256_hex() const {
  Sha256 h;
  check_read(guarded(base_, size_, [&] { h.update(base_, size_); }));
  return h.hex_digest();
}

bool File::has(const std::string& name) const {
  return index_.count(name) != 0;
}

const TensorInfo& File::info(const std::string& name) const {
  auto it = index_.find(name);
  CMDR_CHECK(it != index_.end(), "safetensors '", path_, "': no tensor named '", name, "'");
  return tensors_[it->second];
}

const uint8_t* File::raw(const std::string& name) const {
  return data_ + info(name).begin;
}

namespace {
// n elements of `dtype` at p (possibly unaligned) -> float32 out.
void to_f32(DType dtype, const uint8_t* p, float* out, int64_t n) {
  // memcpy element loads: the data may be unaligned (readers must accept unaligned files).
  switch (dtype) {
    case DType::F32:
      if (n) std::memcpy(out, p, static_cast<std::size_t>(n) * 4);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
      break;
    case DType::BF16:  // bfloat16 is the top half of a float32
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        uint32_t b = static_cast<uint32_t>(h) << 16;
        std::memcpy(out + i, &b, 4);
      }
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = double_to_float(d);
      }
      break;
    case DType::I64:
      for (int64_t i = 0; i < n; ++i) {
        int64_t d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      break;
    case DType::I32:
      for (int64_t i = 0; i < n; ++i) {
        int32_t d;
        std::memcpy(&d, p + 4 * i, 4);
        out[i] = static_cast<float>(d);
      }
      break;
    case DType::I16:
      for (int64_t i = 0; i < n; ++i) {
        int16_t d;
        std::memcpy(&d, p + 2 * i, 2);
        out[i] = static_cast<float>(d);
      }
      break;
    case DType::I8:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int8_t>(p[i]));
      break;
    case DType::U8:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      break;
    case DType::BOOL:  // any non-zero byte is true
      for (int64_t i = 0; i < n; ++i) out[i] = p[i] ? 1.0f : 0.0f;
      break;
  }
}
}  // namespace

Tensor File::get(const std::string& name, bool convert) const {
  const TensorInfo& ti = info(name);
  CMDR_CHECK(ti.dtype == DType::F32 || convert, "safetensors '", path_, "': tensor '", name,
             "' is ", dtype_name(ti.dtype), ", expected F32 (conversion not requested)");
  Tensor t = Tensor::empty(ti.shape);
  float* out = t.data();
  const uint8_t* p = data_ + ti.begin;
  const int64_t n = t.numel();
  check_read(guarded(p, ti.nbytes(), [&] { to_f32(ti.dtype, p, out, n); }));
  return t;
}

Tensor File::get(const std::string& name, const Shape& expected, bool convert) const {
  const TensorInfo& ti = info(name);
  CMDR_CHECK(ti.shape == expected, "safetensors '", path_, "': tensor '", name, "' has shape ",
             shape_str(ti.shape), ", expected ", shape_str(expected));
  return get(name, convert);
}

F32View File::view_f32(const std::string& name) const {
  const TensorInfo& ti = info(name);
  CMDR_CHECK(ti.dtype == DType::F32, "safetensors '", path_, "': tensor '", name, "' is ",
             dtype_name(ti.dtype), ", a zero-copy F32 view needs F32 (use get(name, true))");
  F32View v;
  v.shape_ = ti.shape;
  const uint8_t* p = data_ + ti.begin;
  if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
    v.owner_ = owner_;  // shares the mapping: stays valid after this File is gone
    v.data_ = reinterpret_cast<const float*>(p);
    v.in_place_ = true;
  } else {
    auto copy = std::make_shared<std::vector<float>>(ti.nbytes() / 4);
    check_read(guarded(p, ti.nbytes(), [&] {
      if (!copy->empty()) std::memcpy(copy->data(), p, ti.nbytes());
    }));
    v.data_ = copy->data();
    v.owner_ = std::move(copy);
    v.in_place_ = false;
  }
  return v;
}

Tensor F32View::to_tensor() const {
  Tensor t = Tensor::empty(shape_);
  const int64_t n = t.numel();
  if (n) std::memcpy(t.data(), data_, static_cast<std::size_t>(n) * sizeof(float));
  return t;
}

std::vector<int64_t> File::get_i64(const std::string& name) const {
  const TensorInfo& ti = info(name);
  CMDR_CHECK(ti.dtype == DType::I64 || ti.dtype == DType::I32, "safetensors '", path_,
             "': tensor '", name, "' is ", dtype_name(ti.dtype), ", expected I64 or I32");
  const int64_t n = shape_numel(ti.shape);
  std::vector<int64_t> out(static_cast<std::size_t>(n));
  const uint8_t* p = data_ + ti.begin;
  check_read(guarded(p, ti.nbytes(), [&] {
    for (int64_t i = 0; i < n; ++i) {
      if (ti.dtype == DType::I64) {
        std::memcpy(&out[i], p + 8 * i, 8);
      } else {
        int32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        out[i] = v;
      }
    }
  }));
  return out;
}

// ---------------------------------------------------------------------------------------
// Writer

void Writer::add(const std::string& name, const Tensor& t) {
  Tensor c = t.contiguous();
  std::vector<uint8_t> bytes(static_cast<std::size_t>(c.numel()) * 4);
  if (!bytes.empty()) std::memcpy(bytes.data(), c.data(), bytes.size());
  add_raw(name, DType::F32, t.shape(), std::move(bytes));
}

void Writer::add_raw(const std::string& name, DType dtype, const Shape& shape,
                     std::vector<uint8_t> bytes) {
  CMDR_CHECK(name != "__metadata__", "safetensors writer: '__metadata__' is reserved");
  CMDR_CHECK(valid_utf8(name.data(), name.size()), "safetensors writer: tensor name '", name,
             "' is not valid UTF-8");
  CMDR_CHECK(!entries_.count(name), "safetensors writer: tensor '", name, "' added twice");
  const int64_t count = shape_numel(shape);  // checks negative dims and overflow
  CMDR_CHECK(count <= std::numeric_limits<int64_t>::max() / dtype_size(dtype),
             "safetensors writer: tensor '", name, "': shape ", shape_str(shape), " overflows");
  CMDR_CHECK(static_cast<int64_t>(bytes.size()) == count * dtype_size(dtype),
             "safetensors writer: tensor '", name, "': ", bytes.size(), " bytes for shape ",
             shape_str(shape), " x ", dtype_name(dtype));
  entries_[name] = WriteEntry{dtype, shape, std::move(bytes)};
}

void Writer::add_i64(const std::string& name, const std::vector<int64_t>& values,
                     const Shape& shape) {
  std::vector<uint8_t> bytes(values.size() * 8);
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  add_raw(name, DType::I64, shape, std::move(bytes));
}

void Writer::set_metadata(const std::string& key, const std::string& value) {
  CMDR_CHECK(valid_utf8(key.data(), key.size()) && valid_utf8(value.data(), value.size()),
             "safetensors writer: __metadata__ entry '", key, "' is not valid UTF-8");
  metadata_[key] = value;
}

std::vector<const std::pair<const std::string, WriteEntry>*> Writer::order() const {
  // Reference writer order: dtype rank descending (see DTypeRow::rank), then name ascending
  // (byte-wise, as Rust's String ordering).
  std::vector<const std::pair<const std::string, WriteEntry>*> o;
  for (const auto& e : entries_) o.push_back(&e);
  std::stable_sort(o.begin(), o.end(), [](auto* a, auto* b) {
    const int ra = row(a->second.dtype).rank, rb = row(b->second.dtype).rank;
    return ra != rb ? ra > rb : a->first < b->first;
  });
  return o;
}

std::string Writer::header() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  uint64_t at = 0;
  for (auto* e : order()) {
    const WriteEntry& w = e->second;
    const uint64_t n = w.bytes.size();
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    t["dtype"] = dtype_name(w.dtype);
    t["shape"] = w.shape;
    t["data_offsets"] = {at, at + n};
    h[e->first] = std::move(t);
    at += n;
  }
  std::string s = h.dump();               // compact, UTF-8 kept as is (like serde_json)
  while (s.size() % 8) s.push_back(' ');  // data starts 8-byte aligned
  return s;
}

std::vector<uint8_t> Writer::serialize() const {
  const std::string h = header();
  const auto o = order();
  std::size_t total = 8 + h.size();
  for (auto* e : o) total += e->second.bytes.size();
  std::vector<uint8_t> out(total);
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  std::size_t at = 8;
  std::memcpy(out.data() + at, h.data(), h.size());
  at += h.size();
  for (auto* e : o) {
    const auto& b = e->second.bytes;
    if (!b.empty()) std::memcpy(out.data() + at, b.data(), b.size());
    at += b.size();
  }
  return out;
}

namespace {
// write(2) until done; false with errno set on failure.
bool write_all(int fd, const uint8_t* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<std::size_t>(n, 1u << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (w == 0) {
      errno = EIO;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}
}  // namespace

std::string temp_path(const std::string& path, long pid, uint64_t random) {
  return path + ".tmp." + std::to_string(pid) + "." + std::to_string(random);
}

long temp_file_pid(const std::string& filename) {
  const std::size_t slash = filename.find_last_of('/');
  const std::string name = slash == std::string::npos ? filename : filename.substr(slash + 1);
  // "<non-empty>.tmp.<digits>.<digits>", digits only, nothing after.
  const std::size_t dot2 = name.find_last_of('.');
  if (dot2 == std::string::npos || dot2 + 1 >= name.size()) return -1;
  const std::size_t dot1 = name.find_last_of('.', dot2 - 1);
  if (dot1 == std::string::npos || dot1 + 1 >= dot2 || dot1 < 5) return -1;
  if (name.compare(dot1 - 4, 5, ".tmp.") != 0 || dot1 - 4 == 0) return -1;
  auto digits = [&](std::size_t a, std::size_t b) {
    if (b - a > 18) return false;
    for (std::size_t i = a; i < b; ++i)
      if (name[i] < '0' || name[i] > '9') return false;
    return true;
  };
  if (!digits(dot1 + 1, dot2) || !digits(dot2 + 1, name.size())) return -1;
  return std::stol(name.substr(dot1 + 1, dot2 - dot1 - 1));
}

void Writer::write(const std::string& path) const {
  const std::string h = header();
  const std::size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? std::string(".") : (slash == 0 ? "/" : path.substr(0, slash));

  // Temporary file in the target's directory (rename is atomic only within a file system).
  std::random_device rd;
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = temp_path(path, static_cast<long>(::getpid()), rd());
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST)
      fail("safetensors writer '", path, "': cannot create temporary file '", tmp, "' (",
           std::strerror(errno), ")");
  }
  CMDR_CHECK(fd >= 0, "safetensors writer '", path, "': cannot create a temporary file");
  // Held until close: a cleaner that cannot take this lock leaves the file alone. A fresh
  // O_EXCL file has no other holder; a file system without flock just skips the hint.
  (void)::flock(fd, LOCK_EX | LOCK_NB);

  auto abandon = [&](const char* step) {
    const int e = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail("safetensors writer '", path, "': ", step, " failed (", std::strerror(e),
         "); the previous file, if any, is unchanged");
  };
  uint8_t len[8];
  const uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  if (!write_all(fd, len, 8) ||
      !write_all(fd, reinterpret_cast<const uint8_t*>(h.data()), h.size()))
    abandon("writing the header");
  for (auto* e : order())
    if (!write_all(fd, e->second.bytes.data(), e->second.bytes.size()))
      abandon("writing tensor data");
  if (::fsync(fd) != 0) abandon("fsync");
  const int rc = ::close(fd);
  fd = -1;
  if (rc != 0) abandon("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) abandon("rename over the target");
  // Make the rename itself durable (best effort: some file systems refuse directory fsync).
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace cmdr::st
