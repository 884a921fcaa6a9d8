#pragma once
// cmdr::Tensor — a float32 n-d array: shared 64-byte aligned storage + offset, shape,
// strides (in elements). Views (reshape of contiguous data, permute, transpose, slice,
// narrow, squeeze/unsqueeze) share storage and copy nothing; contiguous() / clone() copy.
// Float32 only: indices travel as std::vector<int64_t>/int32_t next to tensors.
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "engine/storage.hpp"

namespace cmdr {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);    // product, checked for overflow
Shape contiguous_strides(const Shape& s);

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (defined() == false)

  // --- creation -----------------------------------------------------------------------
  static Tensor empty(const Shape& shape);  // uninitialised
  static Tensor zeros(const Shape& shape);
  static Tensor ones(const Shape& shape);
  static Tensor full(const Shape& shape, float value);
  static Tensor from_vector(const Shape& shape, const std::vector<float>& values);
  static Tensor scalar(float value) { return full({}, value); }
  static Tensor zeros_like(const Tensor& t) { return zeros(t.shape()); }
  static Tensor empty_like(const Tensor& t) { return empty(t.shape()); }

  // --- metadata -----------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return shape_numel(shape_); }
  int64_t offset() const { return offset_; }
  bool is_contiguous() const;
  bool shares_storage(const Tensor& o) const { return storage_ == o.storage_; }
  // Cache keys for data derived from the contents (engine/storage.hpp, "Versioning"):
  // the storage's id, and its current version (marks it watched).
  uint64_t storage_id() const;
  uint64_t watch_version() const;
  std::string str() const { return shape_str(shape_); }

  // --- data access --------------------------------------------------------------------
  // data(): pointer to element [0,...,0]. Contiguous-only users must check is_contiguous().
  float* data();
  const float* data() const;
  float& at(std::initializer_list<int64_t> idx);
  float at(std::initializer_list<int64_t> idx) const;
  float item() const;                    // a single-element tensor's value
  std::vector<float> to_vector() const;  // row-major copy

  // --- views (no copy) -----------------------------------------------------------------
  Tensor reshape(const Shape& shape) const;  // -1 allowed once; copies if not contiguous
  Tensor view(const Shape& shape) const;     // like reshape, but throws if a copy is needed
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor slice(int64_t d, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t d, int64_t start, int64_t length) const {
    return slice(d, start, start + length);
  }
  Tensor select(int64_t d, int64_t index) const;  // drops dimension d
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor flatten() const { return reshape({numel()}); }

  // --- copies ---------------------------------------------------------------------------
  Tensor contiguous() const;      // returns *this when already contiguous
  Tensor clone() const;           // always a fresh contiguous copy
  void copy_(const Tensor& src);  // elementwise copy, shapes must match
  void fill_(float v);
  static Tensor concat(const std::vector<Tensor>& parts, int64_t d);

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;
  Shape shape_;
  Shape strides_;
  int64_t norm_dim(int64_t d, const char* what) const;
};

// Visits every element index of `shape` in row-major order, calling f(linear_index, offset)
// with offset computed from `strides`. Used by generic (strided) reference kernels.
template <typename F>
void for_each_offset(const Shape& shape, const Shape& strides, int64_t base, F&& f) {
  const int64_t n = shape_numel(shape);
  const std::size_t nd = shape.size();
  std::vector<int64_t> idx(nd, 0);
  int64_t off = base;
  for (int64_t i = 0; i < n; ++i) {
    f(i, off);
    for (std::size_t k = nd; k-- > 0;) {
      if (++idx[k] < shape[k]) {
        off += strides[k];
        break;
      }
      off -= strides[k] * (shape[k] - 1);
      idx[k] = 0;
    }
  }
}

namespace detail {
// Strided copy over `shape`: dst[idx] = src[idx], both addressed by element strides from
// pointers at element [0, ..., 0]; the ranges must not overlap (Tensor::copy_ handles that).
// copy_strided (issue 8): drops size-1 dims, orders dims by destination stride and merges
// adjacent ones, then memcpy's contiguous inner runs, or a 32×32-tiled transpose when the
// source's unit-stride dim is not the destination's (permute/transpose), else a strided
// loop; OpenMP over the outer dims when large. A copy: no value depends on the threads.
void copy_strided(float* dst, const Shape& dst_strides, const float* src, const Shape& src_strides,
                  const Shape& shape);
// The plain row-major reference it is tested against (the engine's former copy loop).
void copy_strided_ref(float* dst, const Shape& dst_strides, const float* src,
                      const Shape& src_strides, const Shape& shape);
// dst[idx] = v over `shape` (same dim merging and threading as copy_strided).
void fill_strided(float* dst, const Shape& strides, const Shape& shape, float v);
}  // namespace detail

}  // namespace cmdr
