#include "engine/tensor.hpp"

#include <omp.h>

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
  if (out.empty()) return out;
  detail::copy_strided(out.data(), contiguous_strides(shape_), data(), strides_, shape_);
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

namespace {
// [first, last] element offsets a view can touch (strides are non-negative; numel > 0).
std::pair<int64_t, int64_t> touched_range(int64_t offset, const Shape& shape, const Shape& st) {
  int64_t hi = offset;
  for (std::size_t i = 0; i < shape.size(); ++i) hi += (shape[i] - 1) * st[i];
  return {offset, hi};
}
}  // namespace

void Tensor::copy_(const Tensor& src) {
  CMDR_CHECK(shape_ == src.shape_, "Tensor::copy_: destination ", str(), " vs source ", src.str());
  if (numel() == 0) return;
  if (storage_ == src.storage_) {
    const auto [dlo, dhi] = touched_range(offset_, shape_, strides_);
    const auto [slo, shi] = touched_range(src.offset_, src.shape_, src.strides_);
    if (dlo <= shi && slo <= dhi) {  // overlapping views of one storage
      if (is_contiguous() && src.is_contiguous()) {
        std::memmove(data(), src.data(), static_cast<std::size_t>(numel()) * sizeof(float));
        return;
      }
      const Tensor tmp = src.clone();  // read everything before writing anything
      detail::copy_strided(data(), strides_, tmp.data(), tmp.strides_, shape_);
      return;
    }
  }
  detail::copy_strided(data(), strides_, src.data(), src.strides_, shape_);
}

void Tensor::fill_(float v) {
  if (numel() == 0) return;
  detail::fill_strided(data(), strides_, shape_, v);
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

// ---- strided copy kernels (issue 8) -------------------------------------------------------------
namespace detail {
namespace {
constexpr int kMaxDims = 16;
constexpr int64_t kTile = 32;              // transpose tile: 2 × 4 KiB, fits L1
constexpr int64_t kPiece = 1 << 16;        // elements per task when one run is split
constexpr int64_t kParallelMin = 1 << 15;  // below: one thread (a team costs a few µs)

struct Layout {
  int nd = 0;
  int64_t n[kMaxDims] = {}, ds[kMaxDims] = {}, ss[kMaxDims] = {};
};

// Drops size-1 dims, orders the others by destination stride (descending; stable, so the
// source order breaks ties) and merges neighbours that are contiguous in both. False when
// more than kMaxDims remain (the caller then uses the reference loop).
bool make_layout(const Shape& shape, const Shape& dstr, const Shape& sstr, Layout& L) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < shape.size(); ++i)
    if (shape[i] != 1) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return dstr[a] > dstr[b]; });
  L.nd = 0;
  for (std::size_t i : order) {
    const int last = L.nd - 1;
    if (L.nd > 0 && L.ds[last] == dstr[i] * shape[i] && L.ss[last] == sstr[i] * shape[i]) {
      L.n[last] *= shape[i];
      L.ds[last] = dstr[i];
      L.ss[last] = sstr[i];
      continue;
    }
    if (L.nd == kMaxDims) return false;
    L.n[L.nd] = shape[i];
    L.ds[L.nd] = dstr[i];
    L.ss[L.nd] = sstr[i];
    ++L.nd;
  }
  return true;
}

// Calls f(dst_offset, src_offset) for the row-major indices [b, e) of the `no` outer dims.
template <typename F>
void walk(const Layout& o, int64_t b, int64_t e, F&& f) {
  int64_t idx[kMaxDims];
  int64_t doff = 0, soff = 0, r = b;
  for (int d = o.nd; d-- > 0;) {
    idx[d] = r % o.n[d];
    r /= o.n[d];
    doff += idx[d] * o.ds[d];
    soff += idx[d] * o.ss[d];
  }
  for (int64_t it = b; it < e; ++it) {
    f(doff, soff);
    for (int d = o.nd; d-- > 0;) {
      if (++idx[d] < o.n[d]) {
        doff += o.ds[d];
        soff += o.ss[d];
        break;
      }
      doff -= o.ds[d] * (o.n[d] - 1);
      soff -= o.ss[d] * (o.n[d] - 1);
      idx[d] = 0;
    }
  }
}

// body(b, e) over items [0, items) — in OpenMP-static chunks when the total work is large.
template <typename F>
void for_items(int64_t items, int64_t work_per_item, F&& body) {
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt <= 1 || items < 2 || items * work_per_item < kParallelMin) {
    body(int64_t{0}, items);
    return;
  }
  const int64_t chunks = std::min<int64_t>(items, 4 * static_cast<int64_t>(nt));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) body(c * items / chunks, (c + 1) * items / chunks);
}

// The layout without dims a and b (the ones an inner kernel handles).
Layout outer_of(const Layout& L, int a, int b) {
  Layout o;
  for (int d = 0; d < L.nd; ++d) {
    if (d == a || d == b) continue;
    o.n[o.nd] = L.n[d];
    o.ds[o.nd] = L.ds[d];
    o.ss[o.nd] = L.ss[d];
    ++o.nd;
  }
  return o;
}
int64_t count(const Layout& o) {
  int64_t c = 1;
  for (int d = 0; d < o.nd; ++d) c *= o.n[d];
  return c;
}

// Inner dim contiguous on both sides: one memcpy per run; long runs are cut into pieces so
// that a single big run (a plain contiguous copy) is spread over the threads too.
void copy_runs(float* dst, const float* src, const Layout& L) {
  const int k = L.nd - 1;
  const Layout o = outer_of(L, k, k);
  const int64_t run = L.n[k], outer = count(o);
  const int64_t pieces = (run + kPiece - 1) / kPiece;
  if (pieces == 1) {
    for_items(outer, run, [&](int64_t b, int64_t e) {
      walk(o, b, e, [&](int64_t doff, int64_t soff) {
        std::memcpy(dst + doff, src + soff, static_cast<std::size_t>(run) * sizeof(float));
      });
    });
    return;
  }
  for_items(outer * pieces, kPiece, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t p = it % pieces, p0 = p * kPiece, len = std::min(kPiece, run - p0);
      walk(o, it / pieces, it / pieces + 1, [&](int64_t doff, int64_t soff) {
        std::memcpy(dst + doff + p0, src + soff + p0,
                    static_cast<std::size_t>(len) * sizeof(float));
      });
    }
  });
}

// Destination unit-stride dim k, source unit-stride dim j (a permute): 32×32 tiles so that
// both sides are read/written a cache line at a time. Items: (outer index, 32 rows of j).
void copy_transposed(float* dst, const float* src, const Layout& L, int j) {
  const int k = L.nd - 1;
  const Layout o = outer_of(L, j, k);
  const int64_t nj = L.n[j], nk = L.n[k], dj = L.ds[j], sk = L.ss[k];
  const int64_t jblocks = (nj + kTile - 1) / kTile, outer = count(o);
  for_items(outer * jblocks, kTile * nk, [&](int64_t b, int64_t e) {
    for (int64_t it = b; it < e; ++it) {
      const int64_t a0 = (it % jblocks) * kTile, a1 = std::min(nj, a0 + kTile);
      walk(o, it / jblocks, it / jblocks + 1, [&](int64_t doff, int64_t soff) {
        for (int64_t b0 = 0; b0 < nk; b0 += kTile) {
          const int64_t b1 = std::min(nk, b0 + kTile);
          for (int64_t a = a0; a < a1; ++a) {
            float* dr = dst + doff + a * dj;
            const float* sr = src + soff + a;  // source stride of dim j is 1
            for (int64_t c = b0; c < b1; ++c) dr[c] = sr[c * sk];
          }
        }
      });
    }
  });
}

// Anything else: a strided loop over the inner dim.
void copy_strided_inner(float* dst, const float* src, const Layout& L) {
  const int k = L.nd - 1;
  const Layout o = outer_of(L, k, k);
  const int64_t nk = L.n[k], dk = L.ds[k], sk = L.ss[k];
  for_items(count(o), nk, [&](int64_t b, int64_t e) {
    walk(o, b, e, [&](int64_t doff, int64_t soff) {
      float* d = dst + doff;
      const float* s = src + soff;
      for (int64_t c = 0; c < nk; ++c) d[c * dk] = s[c * sk];
    });
  });
}
}  // namespace

void copy_strided_ref(float* dst, const Shape& dst_strides, const float* src,
                      const Shape& src_strides, const Shape& shape) {
  std::vector<float> tmp(static_cast<std::size_t>(shape_numel(shape)));
  for_each_offset(shape, src_strides, 0, [&](int64_t i, int64_t off) { tmp[i] = src[off]; });
  for_each_offset(shape, dst_strides, 0, [&](int64_t i, int64_t off) { dst[off] = tmp[i]; });
}

void copy_strided(float* dst, const Shape& dst_strides, const float* src, const Shape& src_strides,
                  const Shape& shape) {
  if (shape_numel(shape) == 0) return;
  Layout L;
  if (!make_layout(shape, dst_strides, src_strides, L)) {
    copy_strided_ref(dst, dst_strides, src, src_strides, shape);
    return;
  }
  if (L.nd == 0) {
    *dst = *src;
    return;
  }
  const int k = L.nd - 1;
  if (L.ds[k] == 1 && L.ss[k] == 1) return copy_runs(dst, src, L);
  if (L.ds[k] == 1 && L.n[k] >= 8) {
    for (int j = k - 1; j >= 0; --j)
      if (L.ss[j] == 1 && L.n[j] >= 8) return copy_transposed(dst, src, L, j);
  }
  copy_strided_inner(dst, src, L);
}

void fill_strided(float* dst, const Shape& strides, const Shape& shape, float v) {
  if (shape_numel(shape) == 0) return;
  Layout L;
  if (!make_layout(shape, strides, strides, L)) {
    for_each_offset(shape, strides, 0, [&](int64_t, int64_t off) { dst[off] = v; });
    return;
  }
  if (L.nd == 0) {
    *dst = v;
    return;
  }
  const int k = L.nd - 1;
  const Layout o = outer_of(L, k, k);
  const int64_t nk = L.n[k], dk = L.ds[k];
  for_items(count(o), nk, [&](int64_t b, int64_t e) {
    walk(o, b, e, [&](int64_t doff, int64_t) {
      if (dk == 1) {
        std::fill_n(dst + doff, nk, v);
      } else {
        for (int64_t c = 0; c < nk; ++c) dst[doff + c * dk] = v;
      }
    });
  });
}
}  // namespace detail

}  // namespace cmdr
