// Self-test of tests/test_util.hpp: the helpers must be able to fail.
#include "tests/test_util.hpp"

using namespace cmdr;

TEST_CASE("test_util: compare reports and fails") {
  Tensor a = Tensor::from_vector({3}, {1.0f, 2.0f, 3.0f});
  Tensor b = Tensor::from_vector({3}, {1.0f, 2.001f, 3.0f});
  auto r = test::compare(a, a, 0, 0);
  CHECK(r.ok);
  r = test::compare(a, b, 1e-4, 0);
  CHECK(!r.ok);
  CHECK(r.worst == 1);
  CHECK(r.max_abs == doctest::Approx(0.001).epsilon(1e-3));
  CHECK(test::compare(a, b, 1e-3, 0).ok);
  CHECK(!test::compare(a, Tensor::zeros({1, 3}), 1, 1).ok);
  CHECK(test::bit_identical(a, a.clone()));
  CHECK(!test::bit_identical(a, b));
}

TEST_CASE("test_util: finite differences of a known function") {
  // f(x) = sum(x_i^3) -> grad 3 x_i^2
  Tensor x = Tensor::from_vector({4}, {0.5f, -1.0f, 2.0f, 0.0f});
  auto f = [](const Tensor& t) {
    double s = 0;
    for (float v : t.to_vector()) s += static_cast<double>(v) * v * v;
    return s;
  };
  Tensor g = test::fd_grad(f, x, 1e-3);
  Tensor want = Tensor::from_vector({4}, {0.75f, 3.0f, 12.0f, 0.0f});
  CHECK_CLOSE(g, want, 1e-5, 1e-5);
}
