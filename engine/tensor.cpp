#include "engine/tensor.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>
#include <utility>

#include "engine/error.hpp"

namespace cmdr {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    CMDR_CHECK(d >= 0, "shape ", shape_str(s), " has a negative dimension");
    CMDR_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, "shape ", shape_str(s),
               " overflows int64");
    n *= d;
  }
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (std::size_t i = s.size(); i-- > 0;) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

Tensor Tensor::empty(const Shape& shape) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>(shape_numel(shape));
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::zeros(const Shape& shape) {
  Tensor t;
  t.storage_ = std::make_shared<Storage>(shape_numel(shape), /*zero=*/true);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::ones(const Shape& shape) {
  return full(shape, 1.0f);
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape);
  std::fill_n(t.data(), t.numel(), value);
  return t;
}

Tensor Tensor::from_vector(const Shape& shape, const std::vector<float>& values) {
  CMDR_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
             "Tensor::from_vector: ", values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape);
  std::copy(values.begin(), values.end(), t.data());
  return t;
}

int64_t Tensor::norm_dim(int64_t d, const char* what) const {
  int64_t nd = dim();
  int64_t r = d < 0 ? d + nd : d;
  CMDR_CHECK(r >= 0 && r < nd, what, ": dimension ", d, " out of range for shape ", str());
  return r;
}

int64_t Tensor::size(int64_t d) const {
  return shape_[norm_dim(d, "Tensor::size")];
}
int64_t Tensor::stride(int64_t d) const {
  return strides_[norm_dim(d, "Tensor::stride")];
}

uint64_t Tensor::storage_id() const {
  CMDR_CHECK(defined(), "Tensor::storage_id on an undefined tensor");
  return storage_->id();
}
uint64_t Tensor::watch_version() const {
  CMDR_CHECK(defined(), "Tensor::watch_version on an undefined tensor");
  return storage_->watch_version();
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (std::size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != acc) return false;
    acc *= shape_[i];
  }
  return true;
}

float* Tensor::data() {
  CMDR_CHECK(defined(), "Tensor::data on an undefined tensor");
  return storage_->data() + offset_;
}
const float* Tensor::data() const {
  CMDR_CHECK(defined(), "Tensor::data on an undefined tensor");
  return std::as_const(*storage_).data() + offset_;  // a read: keeps the storage's version
}

float& Tensor::at(std::initializer_list<int64_t> idx) {
  CMDR_CHECK(static_cast<int64_t>(idx.size()) == dim(), "Tensor::at: ", idx.size(),
             " indices for shape ", str());
  int64_t off = 0, k = 0;
  for (int64_t i : idx) {
    CMDR_CHECK(i >= 0 && i < shape_[k], "Tensor::at: index ", i, " out of range in dim ", k,
               " of shape ", str());
    off += i * strides_[k++];
  }
  return data()[off];
}
float Tensor::at(std::initializer_list<int64_t> idx) const {
  return const_cast<Tensor*>(this)->at(idx);
}

float Tensor::item() const {
  CMDR_CHECK(numel() == 1, "Tensor::item on shape ", str(), " (needs exactly one element)");
  return data()[0];
}

std::vector<float> Tensor::to_vector() const {
  std::vector<float> out(static_cast<std::size_t>(numel()));
  if (is_contiguous()) {
    std::memcpy(out.data(), data(), out.size() * sizeof(float));
    return out;
  }
  const float* base = std::as_const(*storage_).data();
  for_each_offset(shape_, strides_, offset_, [&](int64_t i, int64_t off) { out[i] = base[off]; });
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  if (is_contiguous()) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::view(const Shape& shape_in) const {
  Shape shape = shape_in;
  int64_t known = 1, infer = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      CMDR_CHECK(infer < 0, "Tensor::view: more than one -1 in ", shape_str(shape_in));
      infer = static_cast<int64_t>(i);
    } else {
      CMDR_CHECK(shape[i] >= 0, "Tensor::view: bad shape ", shape_str(shape_in));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    CMDR_CHECK(known != 0 && numel() % known == 0, "Tensor::view: cannot infer -1 in ",
               shape_str(shape_in), " from ", str());
    shape[infer] = numel() / known;
  }
  CMDR_CHECK(shape_numel(shape) == numel(), "Tensor::view: ", str(), " (", numel(),
             " elements) cannot become ", shape_str(shape_in));
  CMDR_CHECK(is_contiguous(), "Tensor::view: tensor ", str(),
             " is not contiguous; use reshape() or contiguous()");
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

Tensor Tensor::permute(const std::vector<int64_t>& order) const {
  CMDR_CHECK(static_cast<int64_t>(order.size()) == dim(), "Tensor::permute: order of length ",
             order.size(), " for shape ", str());
  std::vector<bool> seen(order.size(), false);
  Tensor t = *this;
  for (std::size_t i = 0; i < order.size(); ++i) {
    int64_t d = norm_dim(order[i], "Tensor::permute");
    CMDR_CHECK(!seen[d], "Tensor::permute: dimension ", d, " repeated");
    seen[d] = true;
    t.shape_[i] = shape_[d];
    t.strides_[i] = strides_[d];
  }
  return t;
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  a = norm_dim(a, "Tensor::transpose");
  b = norm_dim(b, "Tensor::transpose");
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = norm_dim(d, "Tensor::slice");
  CMDR_CHECK(step >= 1, "Tensor::slice: step must be >= 1, got ", step);
  CMDR_CHECK(0 <= start && start <= end && end <= shape_[d], "Tensor::slice: range [", start, ", ",
             end, ") invalid for dimension ", d, " of shape ", str());
  Tensor t = *this;
  t.offset_ += start * strides_[d];
  t.shape_[d] = (end - start + step - 1) / step;
  t.strides_[d] *= step;
  return t;
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = norm_dim(d, "Tensor::select");
  CMDR_CHECK(index >= 0 && index < shape_[d], "Tensor::select: index ", index,
             " out of range for dimension ", d, " of shape ", str());
  Tensor t = *this;
  t.offset_ += index * strides_[d];
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::unsqueeze(int64_t d) const {
  int64_t nd = dim();
  int64_t r = d < 0 ? d + nd + 1 : d;
  CMDR_CHECK(r >= 0 && r <= nd, "Tensor::unsqueeze: dimension ", d, " out of range for ", str());
  Tensor t = *this;
  int64_t st = r < nd ? strides_[r] * shape_[r] : 1;
  t.shape_.insert(t.shape_.begin() + r, 1);
  t.strides_.insert(t.strides_.begin() + r, st);
  return t;
}

Tensor Tensor::squeeze(int64_t d) const {
  d = norm_dim(d, "Tensor::squeeze");
  CMDR_CHECK(shape_[d] == 1, "Tensor::squeeze: dimension ", d, " of ", str(), " is not 1");
  Tensor t = *this;
  t.shape_.erase(t.shape_.begin() + d);
  t.strides_.erase(t.strides_.begin() + d);
  return t;
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_);
  t.copy_(*this);
  return t;
}

void Tensor::copy_(const Tensor& src) {
  CMDR_CHECK(shape_ == src.shape_, "Tensor::copy_: destination ", str(), " vs source ", src.str());
  if (is_contiguous() && src.is_contiguous()) {
    std::memmove(data(), src.data(), static_cast<std::size_t>(numel()) * sizeof(float));
    return;
  }
  std::vector<float> tmp = src.to_vector();
  float* base = storage_->data();
  for_each_offset(shape_, strides_, offset_, [&](int64_t i, int64_t off) { base[off] = tmp[i]; });
}

void Tensor::fill_(float v) {
  float* base = storage_->data();
  for_each_offset(shape_, strides_, offset_, [&](int64_t, int64_t off) { base[off] = v; });
}

Tensor Tensor::concat(const std::vector<Tensor>& parts, int64_t d) {
  CMDR_CHECK(!parts.empty(), "Tensor::concat: no tensors");
  const Tensor& p0 = parts[0];
  d = p0.norm_dim(d, "Tensor::concat");
  Shape out_shape = p0.shape();
  int64_t total = 0;
  for (const Tensor& p : parts) {
    CMDR_CHECK(p.dim() == p0.dim(), "Tensor::concat: ranks differ: ", p0.str(), " vs ", p.str());
    for (int64_t k = 0; k < p0.dim(); ++k)
      CMDR_CHECK(k == d || p.shape_[k] == p0.shape_[k], "Tensor::concat along ", d,
                 ": shapes differ outside that dimension: ", p0.str(), " vs ", p.str());
    total += p.shape_[d];
  }
  out_shape[d] = total;
  Tensor out = empty(out_shape);
  int64_t at = 0;
  for (const Tensor& p : parts) {
    out.slice(d, at, at + p.shape_[d]).copy_(p);
    at += p.shape_[d];
  }
  return out;
}

}  // namespace cmdr
