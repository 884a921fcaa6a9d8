#pragma once
// safetensors read/write (format: 8-byte LE header length N, N bytes of JSON, data buffer).
//
// Reader rules (issue 3 item 1, ../shared/WEIGHTS.md), each checked and each rejection a
// cmdr::Error naming the file, the tensor (when there is one) and the rule:
//   - the file is mmap'ed read-only; it has at least the 8-byte header length;
//   - header length N <= 100,000,000 and 8 + N <= file size;
//   - the header is valid UTF-8, starts with '{', is one JSON object (trailing JSON
//     whitespace allowed) and nothing else: every key/field is checked (no unknown fields);
//   - duplicate keys are rejected at every level (tensor names, __metadata__ keys, fields);
//   - __metadata__ maps strings to strings;
//   - dtype is one of the exact names F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL;
//   - shape entries and data_offsets are non-negative integers; product(shape) x dtype size
//     is computed with overflow checks and equals end - begin;
//   - sorted by offset the tensors tile the data buffer exactly: first at 0, each starting
//     where the previous one ended (no gap, no overlap), the last ending at the file's end.
// A file that shrinks after it was mapped (truncated or rewritten in place by someone else)
// does not crash the reader: its reads of the mapping (header, get(), get_i64(), copied
// views, sha256_hex()) turn the SIGBUS into a cmdr::Error naming the file ("shrank after it
// was opened"). In-place F32 views are read by the caller, unguarded: use get() for files
// that may change under you.
// Tensors come back as float32 cmdr::Tensor copies (F16/BF16/F64/integers converted on
// request), as zero-copy float views (F32View, aligned F32 data in place, unaligned copied)
// or as raw bytes.
//
// Writer: the reference layout (header padded with spaces to a multiple of 8 so data is
// 8-byte aligned; tensors ordered by dtype, larger first in the reference enum order, then
// by name; __metadata__ first), written to a temporary file in the target's directory,
// fsync'ed and renamed over the target: a reader never sees half a file and a failed write
// leaves the previous file untouched.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr::st {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };
const char* dtype_name(DType d);
int64_t dtype_size(DType d);
// Exact-name lookup ("F32", ...). Returns false for any other string.
bool dtype_from_name(const std::string& name, DType* out);

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the data buffer
  uint64_t nbytes() const { return end - begin; }
};

// Read-only float32 data of one tensor that keeps its backing bytes alive by shared
// ownership (the file mapping, or a private copy when the data could not be used in place).
// Valid after the File it came from is destroyed.
class F32View {
 public:
  F32View() = default;
  const float* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_numel(shape_); }
  // True when data() points into the file mapping (no copy was made).
  bool in_place() const { return in_place_; }
  // A float32 cmdr::Tensor copy (the engine's tensors own their storage).
  Tensor to_tensor() const;

 private:
  friend class File;
  std::shared_ptr<const void> owner_;
  const float* data_ = nullptr;
  Shape shape_;
  bool in_place_ = false;
};

class File {
 public:
  // Maps `path` and validates the whole header. Throws cmdr::Error naming `path`.
  explicit File(const std::string& path);
  // Parses an in-memory copy of a file's bytes; `label` names it in errors (fuzzing, tests).
  static File from_bytes(const std::string& label, const uint8_t* bytes, std::size_t size);

  File(File&&) noexcept = default;
  File& operator=(File&&) noexcept = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() = default;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }
  uint64_t header_size() const { return header_len_; }  // N (JSON bytes, with padding)
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by offset
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming file + tensor
  // Raw bytes of a tensor inside the mapping (valid while this File lives; may be unaligned).
  const uint8_t* raw(const std::string& name) const;
  // Float32 copy. F32 always; F16/BF16/F64/integer/bool are converted when `convert` is true,
  // otherwise a non-F32 dtype is an error naming the tensor and its dtype.
  Tensor get(const std::string& name, bool convert = false) const;
  // Same, also checking the shape (error names the tensor, expected and found shapes).
  Tensor get(const std::string& name, const Shape& expected, bool convert = false) const;
  // Zero-copy float32 access: F32 data aligned to 4 bytes is used in place; unaligned F32
  // data is copied (the view owns the copy); other dtypes are an error (use get(convert)).
  F32View view_f32(const std::string& name) const;
  std::vector<int64_t> get_i64(const std::string& name) const;  // I64/I32 tensor as int64
  // SHA-256 of the whole file as mapped (the bytes this File parsed and returns), lowercase
  // hex; the same as sha256_file_hex(path) for an unchanged file, one pass, no re-open.
  std::string sha256_hex() const;

 private:
  File() = default;
  void parse();
  void check_read(bool ok) const;  // throws the "file shrank" error unless ok

  std::string path_;
  std::shared_ptr<const void> owner_;  // the mapping (or the in-memory copy)
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint64_t header_len_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One entry to write: either float data (dtype F32) or raw bytes with another dtype.
struct WriteEntry {
  DType dtype = DType::F32;
  Shape shape;
  std::vector<uint8_t> bytes;
};

class Writer {
 public:
  void add(const std::string& name, const Tensor& t);  // float32
  void add_raw(const std::string& name, DType dtype, const Shape& shape,
               std::vector<uint8_t> bytes);
  void add_i64(const std::string& name, const std::vector<int64_t>& values, const Shape& shape);
  void set_metadata(const std::string& key, const std::string& value);
  // The complete file as bytes (same layout write() produces).
  std::vector<uint8_t> serialize() const;
  // Writes to a temporary file next to `path` (temp_path(), flock'ed while it is written so
  // a stale-file cleaner can tell a live write from a dead one), fsyncs it and renames it
  // over `path` (then fsyncs the directory). On any failure the temporary file is removed,
  // `path` keeps its previous content, and a cmdr::Error names the path and the failing step.
  // A process killed mid-write leaves the temporary file behind (see temp_file_pid).
  void write(const std::string& path) const;

 private:
  std::string header() const;  // padded JSON header, entries in reference order
  std::vector<const std::pair<const std::string, WriteEntry>*> order() const;
  std::map<std::string, WriteEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// The writer's temporary-file naming: "<path>.tmp.<pid>.<random decimal>".
std::string temp_path(const std::string& path, long pid, uint64_t random);
// The writing process's PID when `filename` (a name or a path) is such a temporary file,
// else -1 (so a cleaner only ever considers our own temporary files).
long temp_file_pid(const std::string& filename);

// Strict UTF-8 check (no overlong forms, no surrogates, <= U+10FFFF). On failure
// *bad_offset is the offset of the first offending byte.
bool valid_utf8(const char* s, std::size_t n, std::size_t* bad_offset = nullptr);

}  // namespace cmdr::st
