// Strided copies (issue 8): Tensor::copy_/clone/contiguous/to_vector/fill_ go through
// detail::copy_strided / fill_strided (merged dims, memcpy runs, tiled transpose, OpenMP);
// each case is compared bit for bit with the plain reference loop detail::copy_strided_ref.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <numeric>
#include <utility>

#include "engine/rng.hpp"
#include "engine/tensor.hpp"

using namespace cmdr;

namespace {
Tensor iota(const Shape& s) {
  Tensor t = Tensor::empty(s);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(i) + 0.25f;
  return t;
}
// The reference: row-major values of a view by the old scalar loop.
std::vector<float> ref_values(const Tensor& v) {
  std::vector<float> out(static_cast<std::size_t>(v.numel()));
  detail::copy_strided_ref(out.data(), contiguous_strides(v.shape()), v.data(), v.strides(),
                           v.shape());
  return out;
}
// A random view of a random tensor: permuted, sliced with steps, narrowed, maybe selected.
Tensor random_view(Rng& rng, const Tensor& base) {
  Tensor v = base;
  std::vector<int64_t> order(static_cast<std::size_t>(v.dim()));
  std::iota(order.begin(), order.end(), 0);
  rng.shuffle(order);
  v = v.permute(order);
  for (int64_t d = 0; d < v.dim(); ++d) {
    const int64_t n = v.size(d);
    if (n > 1 && rng.bernoulli(0.5)) {
      const int64_t start = rng.below(n / 2 + 1), step = 1 + rng.below(3);
      const int64_t end = start + 1 + rng.below(n - start);
      v = v.slice(d, start, end, step);
    }
  }
  if (v.dim() > 1 && rng.bernoulli(0.2)) v = v.select(0, rng.below(v.size(0)));
  if (rng.bernoulli(0.2)) v = v.unsqueeze(rng.below(v.dim() + 1));
  return v;
}
Shape random_shape(Rng& rng, bool big) {
  const int64_t nd = 1 + rng.below(5);
  Shape s;
  for (int64_t d = 0; d < nd; ++d) s.push_back(1 + rng.below(big && d < 2 ? 70 : 9));
  return s;
}
}  // namespace

TEST_CASE("copy: random permutations/slices/steps match the reference loop bit for bit") {
  Rng rng(7);
  for (int trial = 0; trial < 400; ++trial) {
    CAPTURE(trial);
    const Tensor base = iota(random_shape(rng, trial % 4 == 0));
    const Tensor v = random_view(rng, base);
    CAPTURE(v.str());
    const std::vector<float> want = ref_values(v);
    CHECK(v.to_vector() == want);
    CHECK(v.clone().to_vector() == want);
    CHECK(v.contiguous().to_vector() == want);
    // copy_ into a non-contiguous destination (a permuted view of a fresh tensor)
    std::vector<int64_t> order(static_cast<std::size_t>(v.dim()));
    std::iota(order.begin(), order.end(), 0);
    rng.shuffle(order);
    std::vector<int64_t> inverse(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) inverse[static_cast<std::size_t>(order[i])] = i;
    Tensor store = Tensor::zeros(v.permute(order).shape());
    Tensor dst = store.permute(inverse);
    REQUIRE(dst.shape() == v.shape());
    dst.copy_(v);
    CHECK(dst.to_vector() == want);
    // fill_ on a view writes exactly the view's elements
    Tensor f = base.clone();
    Tensor fv = random_view(rng, f);
    fv.fill_(-3.0f);
    std::vector<float> expect = base.to_vector();
    {  // the reference writes -3 at the view's elements of a copy of the base
      const std::vector<float> minus(static_cast<std::size_t>(fv.numel()), -3.0f);
      const float* fbase = std::as_const(f).data();
      detail::copy_strided_ref(expect.data() + (fv.data() - fbase), fv.strides(), minus.data(),
                               contiguous_strides(fv.shape()), fv.shape());
    }
    CHECK(f.to_vector() == expect);
  }
}

TEST_CASE("copy: large permutes, narrows and transposes (tiled and threaded paths)") {
  const Tensor tok = iota({3000, 40});  // [L, C] tokens
  const std::vector<Tensor> views = {
      tok.permute({1, 0}),                              // transpose: tiled kernel
      tok.reshape({50, 60, 40}).permute({2, 0, 1}),     // tokens -> image, merged dims
      tok.reshape({40, 50, 60}).permute({1, 2, 0}),     // image -> tokens
      tok.narrow(1, 3, 30),                             // runs of 30 (memcpy per row)
      tok.slice(0, 1, 2999, 2).narrow(1, 5, 17),        // stepped rows
      tok.reshape({3000 * 40}).slice(0, 3, 119990, 3),  // one strided run
      tok.reshape({60, 50, 40}).permute({1, 2, 0}).narrow(0, 2, 41),  // transpose + narrow
      tok.flatten(),  // one long run, split in pieces
  };
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Tensor& v : views) {
      CAPTURE(v.str());
      CAPTURE(threads);
      CHECK(v.contiguous().to_vector() == ref_values(v));
    }
  }
  omp_set_num_threads(2);
}

TEST_CASE("copy: overlapping views of one storage copy as if through a temporary") {
  SUBCASE("shifted rows (contiguous, memmove)") {
    Tensor t = iota({10, 4});
    const std::vector<float> src = t.narrow(0, 0, 9).to_vector();
    t.narrow(0, 1, 9).copy_(t.narrow(0, 0, 9));
    CHECK(t.narrow(0, 1, 9).to_vector() == src);
  }
  SUBCASE("in-place transpose of a square block") {
    Tensor t = iota({64, 64});
    const std::vector<float> want = ref_values(t.transpose(0, 1));
    t.copy_(t.transpose(0, 1));
    CHECK(t.to_vector() == want);
  }
  SUBCASE("shifted strided columns") {
    Tensor t = iota({33, 40});
    const Tensor src = t.slice(1, 0, 38, 2), dst = t.slice(1, 2, 40, 2);
    const std::vector<float> want = ref_values(src);
    Tensor d = dst;
    d.copy_(src);
    CHECK(d.to_vector() == want);
  }
  SUBCASE("disjoint parts of one storage (direct path)") {
    Tensor t = iota({2, 20, 20});
    const std::vector<float> want = ref_values(t.select(0, 0).transpose(0, 1));
    Tensor d = t.select(0, 1);
    d.copy_(t.select(0, 0).transpose(0, 1));
    CHECK(d.to_vector() == want);
    CHECK(d.shares_storage(t));
  }
}

TEST_CASE("copy: reads keep a watched storage's version, writes end it") {
  Tensor src = iota({64, 48});
  Tensor dst = Tensor::empty({48, 64});
  const uint64_t vs = src.watch_version(), vd = dst.watch_version();
  dst.copy_(src.transpose(0, 1));
  (void)src.transpose(0, 1).contiguous();
  (void)src.permute({1, 0}).to_vector();
  CHECK(src.watch_version() == vs);
  CHECK(dst.watch_version() != vd);
}
