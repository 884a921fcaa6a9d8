#pragma once
// safetensors read/write (format: 8-byte LE header length N, N bytes of JSON, data buffer).
// Rules enforced on read are those of ../shared/WEIGHTS.md; every rejection names the file,
// the tensor and the rule. Tensors come back as float32 cmdr::Tensor (F16/BF16/F64/ints
// converted on request) or raw bytes.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr::st {

enum class DType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };
const char* dtype_name(DType d);
int64_t dtype_size(DType d);

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the data buffer
};

class File {
 public:
  // Opens and validates the whole header. Throws cmdr::Error naming `path` on any rule broken.
  explicit File(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by offset
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws naming file + tensor
  // Raw bytes of a tensor inside the mapping (valid while File lives).
  const uint8_t* raw(const std::string& name) const;
  // Float32 copy. F32 always; F16/BF16/F64/integer/bool are converted when `convert` is true,
  // otherwise a non-F32 dtype is an error naming the tensor and its dtype.
  Tensor get(const std::string& name, bool convert = false) const;
  // Same, also checking the shape (error names the tensor, expected and found shapes).
  Tensor get(const std::string& name, const Shape& expected, bool convert = false) const;
  std::vector<int64_t> get_i64(const std::string& name) const;  // I64/I32 tensor as int64

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  std::size_t size_ = 0;
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
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Writes to path + ".tmp-XXXX" then renames over path: a reader never sees half a file.
  void write(const std::string& path) const;

 private:
  std::map<std::string, WriteEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace cmdr::st
