#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "engine/error.hpp"

namespace cmdr::st {
namespace {
constexpr uint64_t kMaxHeader = 100'000'000;  // WEIGHTS.md: header length <= 100,000,000

struct DTypeRow {
  DType d;
  const char* name;
  int64_t size;
  int rank;  // order used by the reference writer (larger first)
};
// The closed dtype table (exact names of the safetensors spec).
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
  fail("safetensors: unknown dtype");
}

float half_to_float(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
}  // namespace

const char* dtype_name(DType d) {
  return row(d).name;
}
int64_t dtype_size(DType d) {
  return row(d).size;
}

File::File(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  CMDR_CHECK(fd >= 0, "safetensors '", path, "': cannot open (", std::strerror(errno), ")");
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) {
    ::close(fd);
    fail("safetensors '", path, "': cannot stat");
  }
  size_ = static_cast<std::size_t>(sb.st_size);
  if (size_ < 8) {
    ::close(fd);
    fail("safetensors '", path, "': file is ", size_,
         " bytes, shorter than the 8-byte header length");
  }
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  CMDR_CHECK(m != MAP_FAILED, "safetensors '", path, "': mmap failed");
  map_ = static_cast<const uint8_t*>(m);
  try {
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(map_[i]) << (8 * i);
    CMDR_CHECK(n <= kMaxHeader, "safetensors '", path, "': header length ", n,
               " exceeds the limit of ", kMaxHeader, " bytes");
    CMDR_CHECK(n <= size_ - 8, "safetensors '", path, "': header length ", n,
               " runs past the end of the file (", size_, " bytes)");
    CMDR_CHECK(n >= 2 && map_[8] == '{', "safetensors '", path,
               "': header does not start with '{'");
    std::string header(reinterpret_cast<const char*>(map_ + 8), n);
    // Duplicate keys: nlohmann keeps the last silently, so watch keys at depth 1 ourselves.
    std::set<std::string> seen;
    std::string dup;
    auto cb = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
      if (ev == nlohmann::json::parse_event_t::key && depth == 1) {
        std::string k = parsed.get<std::string>();
        if (!seen.insert(k).second && dup.empty()) dup = k;
      }
      return true;
    };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(header, cb);  // trailing spaces are whitespace: accepted
    } catch (const nlohmann::json::exception& e) {
      fail("safetensors '", path, "': header is not valid UTF-8 JSON (", e.what(), ")");
    }
    CMDR_CHECK(dup.empty(), "safetensors '", path, "': duplicate tensor name '", dup, "'");
    CMDR_CHECK(j.is_object(), "safetensors '", path, "': header is not a JSON object");
    data_ = map_ + 8 + n;
    const uint64_t buf = size_ - 8 - n;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& name = it.key();
      const auto& v = it.value();
      if (name == "__metadata__") {
        CMDR_CHECK(v.is_object(), "safetensors '", path, "': __metadata__ is not an object");
        for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
          CMDR_CHECK(m2.value().is_string(), "safetensors '", path, "': __metadata__ entry '",
                     m2.key(), "' is not a string (metadata maps strings to strings)");
          metadata_[m2.key()] = m2.value().get<std::string>();
        }
        continue;
      }
      CMDR_CHECK(
          v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
          "safetensors '", path, "': tensor '", name, "' needs dtype, shape and data_offsets");
      CMDR_CHECK(v["dtype"].is_string(), "safetensors '", path, "': tensor '", name,
                 "': dtype is not a string");
      std::string dt = v["dtype"].get<std::string>();
      const DTypeRow* r = nullptr;
      for (const auto& x : kDTypes)
        if (dt == x.name) r = &x;
      CMDR_CHECK(r, "safetensors '", path, "': tensor '", name, "': unsupported dtype '", dt, "'");
      TensorInfo ti;
      ti.name = name;
      ti.dtype = r->d;
      CMDR_CHECK(v["shape"].is_array(), "safetensors '", path, "': tensor '", name,
                 "': shape is not an array");
      uint64_t count = 1;
      bool overflow = false;
      for (const auto& d : v["shape"]) {
        CMDR_CHECK(d.is_number_unsigned(), "safetensors '", path, "': tensor '", name,
                   "': shape entries must be non-negative integers");
        uint64_t x = d.get<uint64_t>();
        if (x != 0 && count > UINT64_MAX / x) overflow = true;
        count = overflow ? count : count * x;
        ti.shape.push_back(static_cast<int64_t>(x));
      }
      if (count > UINT64_MAX / static_cast<uint64_t>(r->size)) overflow = true;
      CMDR_CHECK(!overflow && count < (1ull << 62), "safetensors '", path, "': tensor '", name,
                 "': shape ", shape_str(ti.shape), " overflows");
      const auto& off = v["data_offsets"];
      CMDR_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                     off[1].is_number_unsigned(),
                 "safetensors '", path, "': tensor '", name,
                 "': data_offsets must be two non-negative integers");
      ti.begin = off[0].get<uint64_t>();
      ti.end = off[1].get<uint64_t>();
      CMDR_CHECK(ti.begin <= ti.end && ti.end <= buf, "safetensors '", path, "': tensor '", name,
                 "': data_offsets [", ti.begin, ", ", ti.end, ") outside the ", buf,
                 "-byte data buffer");
      CMDR_CHECK(ti.end - ti.begin == count * static_cast<uint64_t>(r->size), "safetensors '", path,
                 "': tensor '", name, "': ", ti.end - ti.begin, " bytes but shape ",
                 shape_str(ti.shape), " x ", r->name, " needs ", count * r->size);
      tensors_.push_back(std::move(ti));
    }
    std::sort(tensors_.begin(), tensors_.end(), [](const TensorInfo& a, const TensorInfo& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t at = 0;
    for (const auto& t : tensors_) {
      CMDR_CHECK(t.begin == at, "safetensors '", path, "': tensor '", t.name, "' starts at ",
                 t.begin, " but the previous tensor ends at ", at,
                 t.begin < at ? " (overlap)" : " (gap)");
      at = t.end;
    }
    CMDR_CHECK(at == buf, "safetensors '", path, "': tensors end at ", at,
               " but the data buffer is ", buf, " bytes (trailing bytes)");
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  } catch (...) {
    ::munmap(const_cast<uint8_t*>(map_), size_);
    map_ = nullptr;
    throw;
  }
}

File::~File() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
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

Tensor File::get(const std::string& name, bool convert) const {
  const TensorInfo& ti = info(name);
  CMDR_CHECK(ti.dtype == DType::F32 || convert, "safetensors '", path_, "': tensor '", name,
             "' is ", dtype_name(ti.dtype), ", expected F32");
  Tensor t = Tensor::empty(ti.shape);
  float* out = t.data();
  const uint8_t* p = data_ + ti.begin;
  const int64_t n = t.numel();
  switch (ti.dtype) {
    case DType::F32:
      std::memcpy(out, p, n * 4);
      break;  // memcpy: unaligned-safe
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
      break;
    case DType::BF16:
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
        out[i] = static_cast<float>(d);
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
    case DType::BOOL:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(p[i]);
      break;
  }
  return t;
}

Tensor File::get(const std::string& name, const Shape& expected, bool convert) const {
  const TensorInfo& ti = info(name);
  CMDR_CHECK(ti.shape == expected, "safetensors '", path_, "': tensor '", name, "' has shape ",
             shape_str(ti.shape), ", expected ", shape_str(expected));
  return get(name, convert);
}

std::vector<int64_t> File::get_i64(const std::string& name) const {
  const TensorInfo& ti = info(name);
  CMDR_CHECK(ti.dtype == DType::I64 || ti.dtype == DType::I32, "safetensors '", path_,
             "': tensor '", name, "' is ", dtype_name(ti.dtype), ", expected I64 or I32");
  const int64_t n = shape_numel(ti.shape);
  std::vector<int64_t> out(n);
  const uint8_t* p = data_ + ti.begin;
  for (int64_t i = 0; i < n; ++i) {
    if (ti.dtype == DType::I64) {
      std::memcpy(&out[i], p + 8 * i, 8);
    } else {
      int32_t v;
      std::memcpy(&v, p + 4 * i, 4);
      out[i] = v;
    }
  }
  return out;
}

void Writer::add(const std::string& name, const Tensor& t) {
  Tensor c = t.contiguous();
  std::vector<uint8_t> bytes(static_cast<std::size_t>(c.numel()) * 4);
  if (!bytes.empty()) std::memcpy(bytes.data(), c.data(), bytes.size());
  add_raw(name, DType::F32, t.shape(), std::move(bytes));
}

void Writer::add_raw(const std::string& name, DType dtype, const Shape& shape,
                     std::vector<uint8_t> bytes) {
  CMDR_CHECK(name != "__metadata__", "safetensors writer: '__metadata__' is reserved");
  CMDR_CHECK(!entries_.count(name), "safetensors writer: tensor '", name, "' added twice");
  CMDR_CHECK(static_cast<int64_t>(bytes.size()) == shape_numel(shape) * dtype_size(dtype),
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

void Writer::write(const std::string& path) const {
  // Reference writer order: larger dtype rank first, then name.
  std::vector<const std::pair<const std::string, WriteEntry>*> order;
  for (const auto& e : entries_) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) {
    int ra = row(a->second.dtype).rank, rb = row(b->second.dtype).rank;
    return ra != rb ? ra > rb : a->first < b->first;
  });
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) h["__metadata__"] = metadata_;
  uint64_t at = 0;
  for (auto* e : order) {
    const WriteEntry& w = e->second;
    uint64_t n = w.bytes.size();
    h[e->first] = {
        {"dtype", dtype_name(w.dtype)}, {"shape", w.shape}, {"data_offsets", {at, at + n}}};
    at += n;
  }
  std::string header = h.dump();
  while (header.size() % 8) header.push_back(' ');  // data starts 8-byte aligned
  std::random_device rd;
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    CMDR_CHECK(f.good(), "safetensors writer: cannot create '", tmp, "'");
    uint64_t n = header.size();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    f.write(reinterpret_cast<const char*>(len), 8);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (auto* e : order)
      f.write(reinterpret_cast<const char*>(e->second.bytes.data()),
              static_cast<std::streamsize>(e->second.bytes.size()));
    f.flush();
    if (!f.good()) {
      std::remove(tmp.c_str());
      fail("safetensors writer: write to '", tmp, "' failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("safetensors writer: cannot rename '", tmp, "' to '", path, "' (", std::strerror(errno),
         ")");
  }
}

}  // namespace cmdr::st
