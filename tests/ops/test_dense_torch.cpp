// (a) Dense ops forward and backward against PyTorch fixtures
// (tools/golden/ops_dense.py; float64 truth from float32 inputs).
// Tolerance: |got − want| <= 1e-4·|want| + 1e-5 elementwise (values are O(1)).
#include <string>

#include "ops/ops.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
using test::Fixture;

namespace {
constexpr double kRtol = 1e-4, kAtol = 1e-5;
}

TEST_CASE("dense vs torch: linear forward/backward") {
  Fixture fx("ops/dense_linear.safetensors");
  {
    Tensor x = fx.get("lin3d.x"), w = fx.get("lin3d.w"), b = fx.get("lin3d.b");
    CHECK_CLOSE(ops::linear_forward(x, w, b), fx.get("lin3d.y"), kRtol, kAtol);
    auto g = ops::linear_backward(fx.get("lin3d.dy"), x, w);
    CHECK_CLOSE(g.dx, fx.get("lin3d.dx"), kRtol, kAtol);
    CHECK_CLOSE(g.dweight, fx.get("lin3d.dw"), kRtol, kAtol);
    CHECK_CLOSE(g.dbias, fx.get("lin3d.db"), kRtol, kAtol);
  }
  {
    Tensor x = fx.get("lin2d.x"), w = fx.get("lin2d.w");
    CHECK_CLOSE(ops::linear_forward(x, w, Tensor()), fx.get("lin2d.y"), kRtol, kAtol);
    auto g = ops::linear_backward(fx.get("lin2d.dy"), x, w, true, true, false);
    CHECK_CLOSE(g.dx, fx.get("lin2d.dx"), kRtol, kAtol);
    CHECK_CLOSE(g.dweight, fx.get("lin2d.dw"), kRtol, kAtol);
    CHECK(!g.dbias.defined());
  }
}

TEST_CASE("dense vs torch: matmul and bmm, all transpose combinations") {
  Fixture fx("ops/dense_matmul.safetensors");
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (const char* kind : {"mm", "bmm"}) {
        const std::string p = std::string(kind) + std::to_string(ta) + std::to_string(tb) + ".";
        CAPTURE(p);
        Tensor a = fx.get(p + "a"), b = fx.get(p + "b"), dy = fx.get(p + "dy");
        const bool bm = std::string(kind) == "bmm";
        Tensor y = bm ? ops::bmm_forward(a, b, ta, tb) : ops::matmul_forward(a, b, ta, tb);
        CHECK_CLOSE(y, fx.get(p + "y"), kRtol, kAtol);
        auto g = bm ? ops::bmm_backward(dy, a, b, ta, tb) : ops::matmul_backward(dy, a, b, ta, tb);
        CHECK_CLOSE(g.da, fx.get(p + "da"), kRtol, kAtol);
        CHECK_CLOSE(g.db, fx.get(p + "db"), kRtol, kAtol);
      }
}

TEST_CASE("dense vs torch: convolutions and transposed convolutions") {
  Fixture fx("ops/dense_conv.safetensors");
  using Fwd = Tensor (*)(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t);
  using Bwd = ops::ConvGrads (*)(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t,
                                 bool, bool, bool);
  struct Case {
    const char* name;
    Fwd fwd;
    Bwd bwd;
  };
  const Case cases[] = {
      {"c1", ops::conv1d_forward, ops::conv1d_backward},
      {"c1k1", ops::conv1d_forward, ops::conv1d_backward},
      {"c2", ops::conv2d_forward, ops::conv2d_backward},
      {"c2patch", ops::conv2d_forward, ops::conv2d_backward},
      {"t1", ops::conv_transpose1d_forward, ops::conv_transpose1d_backward},
      {"t1b", ops::conv_transpose1d_forward, ops::conv_transpose1d_backward},
      {"t2", ops::conv_transpose2d_forward, ops::conv_transpose2d_backward},
      {"t2s2", ops::conv_transpose2d_forward, ops::conv_transpose2d_backward},
  };
  for (const Case& c : cases) {
    const std::string p = std::string(c.name) + ".";
    CAPTURE(p);
    Tensor x = fx.get(p + "x"), w = fx.get(p + "w"), b = fx.get(p + "b");
    const auto s = static_cast<int64_t>(fx.scalar(p + "stride"));
    const auto pad = static_cast<int64_t>(fx.scalar(p + "pad"));
    CHECK_CLOSE(c.fwd(x, w, b, s, pad), fx.get(p + "y"), kRtol, kAtol);
    auto g = c.bwd(fx.get(p + "dy"), x, w, s, pad, true, true, true);
    CHECK_CLOSE(g.dx, fx.get(p + "dx"), kRtol, kAtol);
    CHECK_CLOSE(g.dweight, fx.get(p + "dw"), kRtol, kAtol);
    CHECK_CLOSE(g.dbias, fx.get(p + "db"), kRtol, kAtol);
    // bias gradient alone takes a different path (no backward-weights primitive)
    auto gb = c.bwd(fx.get(p + "dy"), x, w, s, pad, false, false, true);
    CHECK(!gb.dx.defined());
    CHECK(!gb.dweight.defined());
    CHECK_CLOSE(gb.dbias, fx.get(p + "db"), kRtol, kAtol);
  }
}

TEST_CASE("dense vs torch: attention full and windowed (padded keys masked), dropout backward") {
  Fixture fx("ops/dense_attention.safetensors");
  for (const char* name : {"full", "win", "fulldrop", "windrop"}) {
    const std::string p = std::string(name) + ".";
    CAPTURE(p);
    Tensor q = fx.get(p + "q"), k = fx.get(p + "k"), v = fx.get(p + "v");
    const float scale = fx.scalar(p + "scale");
    const auto window = static_cast<int64_t>(fx.scalar(p + "window"));
    const float pd = fx.scalar(p + "p");
    ops::AttentionSaved saved;
    Tensor y =
        ops::attention_forward(q, k, v, scale, window, pd, /*training=*/false, nullptr, &saved);
    CHECK_CLOSE(saved.probs, fx.get(p + "probs"), kRtol, kAtol);
    CHECK(!saved.drop_mask.defined());
    if (pd == 0.0f) CHECK_CLOSE(y, fx.get(p + "y"), kRtol, kAtol);
    if (fx.has(p + "mask")) saved.drop_mask = fx.get(p + "mask");  // torch's dropout mask
    auto g = ops::attention_backward(fx.get(p + "dy"), q, k, v, scale, window, pd, saved);
    CHECK_CLOSE(g.dq, fx.get(p + "dq"), kRtol, kAtol);
    CHECK_CLOSE(g.dk, fx.get(p + "dk"), kRtol, kAtol);
    CHECK_CLOSE(g.dv, fx.get(p + "dv"), kRtol, kAtol);
  }
}
