// Weight cache (ops/weight_cache.hpp, issue 8 item 2): linear weights prepared for oneDNN once
// per storage version, and the fused linear + GELU (ops::linear_gelu_forward).
//
// Cached vs uncached must be bit-identical: the cached primitive takes B in the layout it
// prefers (format_tag::any) and the uncached one packs the plain B into that same layout
// itself (brgemm copy-B) before running the same kernel, so the sums are formed in the same
// order; in bf16 both round with the same to_bf16. The tests below check it bit for bit.
#include <thread>
#include <vector>

#include "autograd/modules.hpp"
#include "autograd/optim.hpp"
#include "engine/precision.hpp"
#include "ops/ops.hpp"
#include "ops/reference_dense.hpp"
#include "ops/weight_cache.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
namespace wc = ops::weight_cache;

namespace {
bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape()) return false;
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}
Tensor uncached_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  wc::Disable off;
  return ops::linear_forward(x, w, b);
}
// Precisions this CPU runs.
std::vector<Precision> precisions() {
  std::vector<Precision> p{Precision::FP32};
  if (cpu_has_avx512_bf16()) p.push_back(Precision::BF16);
  return p;
}
struct Shp {
  int64_t M, K, N;
};
}  // namespace

TEST_CASE("weight cache: cached linear bit-identical to uncached, hits on reuse") {
  Rng rng(11);
  for (Precision p : precisions()) {
    PrecisionScope ps(p);
    for (Shp s : {Shp{1, 64, 96}, Shp{37, 70, 130}, Shp{200, 96, 300}, Shp{785, 64, 192}}) {
      CAPTURE(precision_name(p));
      CAPTURE(s.M);
      Tensor x = test::random({s.M, s.K}, rng), w = test::random({s.N, s.K}, rng);
      Tensor b = test::random({s.N}, rng);
      const Tensor want = uncached_linear(x, w, b);
      const wc::Stats s0 = wc::stats();
      const Tensor got1 = ops::linear_forward(x, w, b);  // miss: prepares w
      const wc::Stats s1 = wc::stats();
      const Tensor got2 = ops::linear_forward(x, w, b);  // hit (when w needed preparing)
      const wc::Stats s2 = wc::stats();
      CHECK(same_bits(got1, want));
      CHECK(same_bits(got2, want));
      if (s1.misses > s0.misses) {  // w was prepared (not taken as it is): reused next call
        CHECK(s2.hits == s1.hits + 1);
        CHECK(s2.misses == s1.misses);
        CHECK(s1.entries >= s0.entries + 1);
      }
      // bf16 always needs preparing (rounding); the big fp32 shapes get a blocked layout.
      if (p == Precision::BF16 || s.M >= 200) CHECK(s1.misses == s0.misses + 1);
      // Determinism with the cache: a third call (hit) gives the same bits again.
      CHECK(same_bits(ops::linear_forward(x, w, b), got1));
      CHECK(same_bits(uncached_linear(x, w, b), want));
    }
  }
}

TEST_CASE("weight cache: a weight written through data(), copy_ or an Adam step is re-read") {
  Rng rng(12);
  for (Precision p : precisions()) {
    PrecisionScope ps(p);
    CAPTURE(precision_name(p));
    const int64_t M = 300, K = 96, N = 160;
    Tensor x = test::random({M, K}, rng), w = test::random({N, K}, rng);
    Tensor b = test::random({N}, rng);
    const Tensor y0 = ops::linear_forward(x, w, b);  // cached now
    // (1) an in-place write via non-const data(): a cache ignoring versions returns y0.
    w.data()[5] += 1.0f;
    Tensor y1 = ops::linear_forward(x, w, b);
    CHECK(same_bits(y1, uncached_linear(x, w, b)));
    CHECK_FALSE(same_bits(y1, y0));
    // (2) copy_ from another tensor (checkpoint-load style)
    w.copy_(test::random({N, K}, rng));
    Tensor y2 = ops::linear_forward(x, w, b);
    CHECK(same_bits(y2, uncached_linear(x, w, b)));
    CHECK_FALSE(same_bits(y2, y1));
    // (3) a view of the weight written through (a slice of its rows)
    Tensor rows = w.narrow(0, 3, 2);
    rows.fill_(0.25f);
    Tensor y3 = ops::linear_forward(x, w, b);
    CHECK(same_bits(y3, uncached_linear(x, w, b)));
    CHECK_FALSE(same_bits(y3, y2));
  }
  // (4) an optimiser step on a Linear module, forward with the new weights
  Rng r2(13);
  ag::Linear lin(96, 160, true, r2);
  ag::Adam opt(lin.parameters());
  Tensor x = test::random({300, 96}, rng);
  for (int step = 0; step < 3; ++step) {
    ag::Var y = lin.forward(ag::Var(x));
    Tensor before = y.value();
    CHECK(same_bits(before, uncached_linear(x, lin.weight.value(), lin.bias.value())));
    opt.zero_grad();
    ag::backward(y, Tensor::ones(y.value().shape()));
    opt.step();
    ag::Var y2 = lin.forward(ag::Var(x));
    CHECK_FALSE(same_bits(y2.value(), before));
    CHECK(same_bits(y2.value(), uncached_linear(x, lin.weight.value(), lin.bias.value())));
  }
}

TEST_CASE("weight cache: entries dropped when the weight dies or a new version is cached") {
  PrecisionScope ps(Precision::FP32);
  Rng rng(14);
  Tensor x = test::random({300, 96}, rng);
  const wc::Stats s0 = wc::stats();
  {
    Tensor w = test::random({160, 96}, rng);
    ops::linear_forward(x, w, Tensor());
    const wc::Stats s1 = wc::stats();
    REQUIRE(s1.entries == s0.entries + 1);  // fp32 300x96x160: brgemm's blocked layout
    for (int i = 0; i < 3; ++i) {           // new versions replace the entry, never accumulate
      w.data()[0] = static_cast<float>(i);
      ops::linear_forward(x, w, Tensor());
      CHECK(wc::stats().entries == s1.entries);
      CHECK(wc::stats().bytes == s1.bytes);
    }
    Tensor alias = w.view({160, 96});  // a view keeps the storage (and the entry) alive
    w = Tensor();
    CHECK(wc::stats().entries == s1.entries);
  }  // alias dies: storage released, the hook drops its entry
  CHECK(wc::stats().entries == s0.entries);
  CHECK(wc::stats().bytes == s0.bytes);
}

TEST_CASE("weight cache: bounded size, LRU eviction, disable") {
  PrecisionScope ps(Precision::FP32);
  Rng rng(15);
  const int64_t prev = wc::limit();
  wc::clear();
  Tensor x = test::random({300, 96}, rng);
  std::vector<Tensor> ws;
  for (int i = 0; i < 5; ++i) ws.push_back(test::random({160, 96}, rng));
  std::vector<Tensor> want;  // (uncached_linear disables the cache: all of them first)
  for (const Tensor& w : ws) want.push_back(uncached_linear(x, w, Tensor()));
  ops::linear_forward(x, ws[0], Tensor());
  const int64_t one = wc::stats().bytes;
  REQUIRE(one > 0);
  wc::set_limit(2 * one + one / 2);  // room for two entries
  const wc::Stats s0 = wc::stats();
  for (std::size_t i = 0; i < ws.size(); ++i) {
    CHECK(same_bits(ops::linear_forward(x, ws[i], Tensor()), want[i]));
    CHECK(wc::stats().bytes <= wc::limit());
  }
  CHECK(wc::stats().entries == 2);
  CHECK(wc::stats().evictions == s0.evictions + 3);  // 5 weights through 2 slots (ws[0] held)
  // The two most recent (ws[3], ws[4]) are the ones kept: hits, not misses.
  const wc::Stats s1 = wc::stats();
  ops::linear_forward(x, ws[4], Tensor());
  ops::linear_forward(x, ws[3], Tensor());
  CHECK(wc::stats().hits == s1.hits + 2);
  CHECK(wc::stats().misses == s1.misses);
  ops::linear_forward(x, ws[0], Tensor());  // evicted earlier: a miss
  CHECK(wc::stats().misses == s1.misses + 1);
  {
    wc::Disable off;  // disabled: everything dropped, nothing kept
    CHECK(wc::stats().entries == 0);
    CHECK(same_bits(ops::linear_forward(x, ws[1], Tensor()), want[1]));
    CHECK(wc::stats().entries == 0);
  }
  wc::set_limit(prev);
  CHECK(wc::limit() == prev);
  CHECK(!wc::stats_str().empty());
}

TEST_CASE("weight cache: concurrent callers get the same bits") {
  PrecisionScope ps(Precision::FP32);
  Rng rng(16);
  Tensor x = test::random({200, 64}, rng), w = test::random({128, 64}, rng);
  const Tensor want = uncached_linear(x, w, Tensor());
  std::vector<Tensor> got(4);
  std::vector<std::thread> th;
  for (int t = 0; t < 4; ++t)
    th.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) got[t] = ops::linear_forward(x, w, Tensor());
    });
  for (auto& t : th) t.join();
  for (const Tensor& g : got) CHECK(same_bits(g, want));
}

TEST_CASE("linear_gelu_forward: matches linear + gelu and the float64 reference") {
  Rng rng(17);
  for (Precision p : precisions()) {
    PrecisionScope ps(p);
    for (Shp s : {Shp{1, 16, 24}, Shp{37, 70, 130}, Shp{300, 96, 200}}) {
      CAPTURE(precision_name(p));
      CAPTURE(s.M);
      // x·3: pre-activations over roughly [-30, 30], both GELU tails exercised.
      Tensor x = ops::mul_forward(test::random({s.M, s.K}, rng), Tensor::scalar(3.0f));
      Tensor w = test::random({s.N, s.K}, rng), b = test::random({s.N}, rng);
      const Tensor sep = ops::gelu_forward(ops::linear_forward(x, w, b));
      const Tensor fused = ops::linear_gelu_forward(x, w, b);
      const Tensor fused_nc = [&] {
        wc::Disable off;
        return ops::linear_gelu_forward(x, w, b);
      }();
      CHECK(same_bits(fused, fused_nc));  // the cache changes no bit here either
      if (p == Precision::FP32) {
        // Same GEMM, only oneDNN's erf vs Eigen's: within a few float32 ulps (~1e-6 rel).
        CHECK_CLOSE(fused, sep, 2e-6, 1e-6);
        CHECK_CLOSE(fused, ops::ref::linear_gelu_forward(x, w, b), 1e-4, 1e-5);
      } else {
        // Same bf16 GEMM on both sides: the difference is the erf again.
        CHECK_CLOSE(fused, sep, 2e-6, 1e-6);
      }
      CHECK(same_bits(ops::linear_gelu_forward(x, w, b), fused));  // deterministic
    }
  }
  // No bias, leading dims [2, 3, K] and a zero-K product (gelu(bias)).
  Tensor x = test::random({2, 3, 8}, rng), w = test::random({5, 8}, rng);
  CHECK_CLOSE(ops::linear_gelu_forward(x, w, Tensor()),
              ops::gelu_forward(ops::linear_forward(x, w, Tensor())), 2e-6, 1e-6);
  Tensor b = test::random({5}, rng);
  CHECK_CLOSE(
      ops::linear_gelu_forward(Tensor::empty({4, 0}), Tensor::empty({5, 0}), b),
      ops::gelu_forward(ops::linear_forward(Tensor::empty({4, 0}), Tensor::empty({5, 0}), b)), 1e-6,
      1e-7);
  CHECK_THROWS_AS(ops::linear_gelu_forward(x, test::random({5, 7}, rng), Tensor()), Error);
}

TEST_CASE("Sequential: Linear then GELU fused under NoGrad equals the recorded path") {
  Rng rng(18);
  ag::Sequential seq;
  seq.add<ag::Linear>(24, 40, true, rng);
  seq.add<ag::GELU>();
  seq.add<ag::Linear>(40, 8, true, rng);
  seq.add<ag::GELU>();
  Tensor x = ops::mul_forward(test::random({50, 24}, rng), Tensor::scalar(2.0f));
  const Tensor recorded = seq.forward(ag::Var(x)).value();  // parameters require grad
  Tensor fused;
  {
    ag::NoGrad ng;
    fused = seq.forward(ag::Var(x)).value();
  }
  CHECK_CLOSE(fused, recorded, 5e-6, 1e-6);
  // the fused value is the linear_gelu op's (i.e. the fusion is taken)
  Tensor h = ops::linear_gelu_forward(x, static_cast<ag::Linear&>(seq[0]).weight.value(),
                                      static_cast<ag::Linear&>(seq[0]).bias.value());
  Tensor want = ops::linear_gelu_forward(h, static_cast<ag::Linear&>(seq[2]).weight.value(),
                                         static_cast<ag::Linear&>(seq[2]).bias.value());
  CHECK(same_bits(fused, want));
}
