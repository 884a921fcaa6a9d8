// Frozen extractors (SPEC 4.1-4.3) against the PyTorch fixtures of
// tools/golden/extractors.py. Tolerances: index outputs (FPS, KNN, valid mask) exact;
// single linear stages rtol 1e-4 (scaled by the tensor's max); whole networks 1e-3 (SPEC 9).
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "engine/error.hpp"
#include "engine/threads.hpp"
#include "io/safetensors.hpp"
#include "models/dino_vit.hpp"
#include "models/feature_assembly.hpp"
#include "models/point_mae.hpp"
#include "ops/ops.hpp"
#include "tests/models/hash_weights.hpp"
#include "tests/test_util.hpp"

using namespace cmdr;
using namespace cmdr::models;

namespace {

std::string fx(const std::string& name) {
  return std::string(CMDR_FIXTURES) + "/extractors/" + name;
}

std::vector<int64_t> i64(const st::File& f, const std::string& name) {
  return f.get_i64(name);
}

#define CHECK_SCALED(got, want, tol)                      \
  do {                                                    \
    auto r_ = test::compare_scaled((got), (want), (tol)); \
    CHECK_MESSAGE(r_.ok, #got, ": ", r_.msg);             \
    MESSAGE(#got, ": ", r_.msg);                          \
  } while (0)

DinoVitConfig tiny_vit() {
  DinoVitConfig c;
  c.image = 32;
  c.patch = 8;
  c.dim = 32;
  c.depth = 2;
  c.heads = 2;
  c.mlp = 64;
  return c;
}

PointMaeConfig tiny_pmae() {
  PointMaeConfig c;
  c.num_group = 16;
  c.group_size = 8;
  c.enc_c1 = 16;
  c.enc_c2 = 32;
  c.enc_c3 = 64;
  c.pos_hidden = 16;
  c.dim = 48;
  c.depth = 5;
  c.heads = 4;
  c.mlp = 96;
  c.taps = {1, 3, 4};
  return c;
}

std::string tmp_path(const std::string& name) {
  return "/tmp/cmdr_extractors_test_" + std::to_string(::getpid()) + "_" + name;
}

}  // namespace

TEST_CASE("dino_vit tiny matches the torch reference, every intermediate") {
  st::File wf(fx("vit_tiny_weights.safetensors")), io(fx("vit_tiny_io.safetensors"));
  DinoVit m(tiny_vit());
  LoadReport rep = m.load(wf);
  // The fixture carries a classifier head: reported as unexpected, not an error.
  REQUIRE(rep.unexpected.size() == 2);
  CHECK(rep.note().find("head.weight") != std::string::npos);
  CHECK(!rep.random_weights);
  DinoVitTrace tr;
  Tensor out = dino_vit_forward(m, io.get("image"), &tr);
  CHECK_SCALED(tr.patch_tokens, io.get("patch_tokens"), 1e-4);
  CHECK_SCALED(tr.embedded, io.get("embedded"), 1e-4);
  REQUIRE(tr.block_out.size() == 2);
  for (int i = 0; i < 2; ++i)
    CHECK_SCALED(tr.block_out[static_cast<std::size_t>(i)],
                 io.get("block_out." + std::to_string(i)), 1e-3);
  CHECK(out.shape() == Shape{16, 32});
  CHECK_SCALED(out, io.get("out"), 1e-3);
}

TEST_CASE("dino_vit load: missing keys listed, shape mismatch names tensor and shapes") {
  st::File wf(fx("vit_tiny_weights.safetensors"));
  const std::string p = tmp_path("vit_missing.safetensors");
  {
    st::Writer w;
    for (const auto& t : wf.tensors())
      if (t.name != "blocks.1.mlp.fc2.bias" && t.name != "norm.weight")
        w.add(t.name, wf.get(t.name));
    w.write(p);
  }
  {
    st::File bad(p);
    DinoVit m(tiny_vit());
    CHECK_THROWS_WITH_AS(
        m.load(bad), doctest::Contains("2 missing tensor(s): blocks.1.mlp.fc2.bias norm.weight"),
        Error);
  }
  {
    st::Writer w;
    for (const auto& t : wf.tensors())
      w.add(t.name, t.name == "pos_embed" ? Tensor::zeros({1, 5, 32}) : wf.get(t.name));
    w.write(p);
  }
  {
    st::File bad(p);
    DinoVit m(tiny_vit());
    CHECK_THROWS_WITH_AS(
        m.load(bad), doctest::Contains("'pos_embed' has shape [1, 5, 32], expected [1, 17, 32]"),
        Error);
  }
  {
    DinoVit m(tiny_vit());  // random-weights flag: loads, and the report says so
    st::Writer w;
    for (const auto& t : wf.tensors()) w.add(t.name, wf.get(t.name));
    w.set_metadata(kRandomWeightsKey, "true");
    w.write(p);
    st::File f(p);
    CHECK(m.load(f).random_weights);
  }
  std::remove(p.c_str());
  DinoVit m(tiny_vit());
  CHECK_THROWS_WITH_AS(dino_vit_forward(m, Tensor::zeros({3, 24, 32})),
                       doctest::Contains("[3, 24, 32]"), Error);
}

TEST_CASE("point_mae tiny matches the torch reference, every intermediate") {
  st::File wf(fx("pmae_tiny_weights.safetensors")), io(fx("pmae_tiny_io.safetensors"));
  for (bool running : {false, true}) {
    CAPTURE(running);
    PointMaeConfig c = tiny_pmae();
    c.bn_running_stats = running;
    PointMae m(c);
    // Checkpoint names: module.MAE_encoder.* stripped; decoder keys ignored with a note.
    LoadReport rep = m.load(wf);
    CHECK(rep.unexpected.empty());
    CHECK(rep.ignored.size() == 4);
    CHECK(rep.note().find("ignored 4") != std::string::npos);
    PointMaeTrace tr;
    PointMaeOutput out = point_mae_forward(m, io.get("points"), &tr);
    CHECK(out.center_idx == i64(io, "fps_idx"));
    CHECK(tr.knn_idx == i64(io, "knn_idx"));
    CHECK_SCALED(out.centers, io.get("centers"), 1e-7);
    CHECK_SCALED(tr.neighborhood, io.get("neighborhood"), 1e-7);
    if (!running) {
      CHECK_SCALED(tr.tokens, io.get("tokens"), 1e-4);
      CHECK_SCALED(tr.pos, io.get("pos"), 1e-4);
      REQUIRE(tr.block_out.size() == 5);
      for (int i = 0; i < 5; ++i)
        CHECK_SCALED(tr.block_out[static_cast<std::size_t>(i)],
                     io.get("block_out." + std::to_string(i)), 1e-3);
      CHECK_SCALED(out.features, io.get("features"), 1e-3);
    } else {
      CHECK_SCALED(out.features, io.get("features_running"), 1e-3);
    }
    CHECK(out.features.shape() == Shape{16, 144});
  }
}

TEST_CASE("point_mae key mapping and errors") {
  CHECK(point_mae_key("module.MAE_encoder.blocks.blocks.3.norm1.weight") ==
        "blocks.blocks.3.norm1.weight");
  CHECK(point_mae_key("base_model.encoder.first_conv.0.weight") == "encoder.first_conv.0.weight");
  CHECK(point_mae_key("MAE_encoder.norm.bias") == "norm.bias");
  CHECK(point_mae_key("module.MAE_decoder.blocks.0.norm1.weight").empty());
  CHECK(point_mae_key("mask_token").empty());
  CHECK(point_mae_key("module.increase_dim.0.weight").empty());
  CHECK(point_mae_key("cls_token") == "cls_token");  // unknown -> reported as unexpected
  PointMae m(tiny_pmae());
  Rng rng(1);
  Tensor few = test::random({7, 3}, rng);  // 7 < group size 8
  CHECK_THROWS_WITH_AS(point_mae_forward(m, few), doctest::Contains("fewer than the group size 8"),
                       Error);
}

TEST_CASE("fps and knn pick exactly the reference indices (ties on a grid, duplicates)") {
  st::File f(fx("fps_knn.safetensors"));
  Tensor pts = f.get("points");
  const int saved = num_threads();
  std::vector<int64_t> ref_fps = i64(f, "fps_idx");
  for (int t : {1, 2}) {
    set_num_threads(t);
    std::vector<int64_t> idx = farthest_point_sample(pts, 256);
    CHECK(idx == ref_fps);
    Tensor centers = ops::index_select_forward(pts, idx);
    CHECK(knn_indices(pts, centers, 32) == i64(f, "knn_idx"));
  }
  set_num_threads(saved);
  CHECK_THROWS_AS(knn_indices(pts, pts.narrow(0, 0, 2), pts.size(0) + 1), Error);
}

TEST_CASE("feature assembly matches torch; the CSR operator P·G equals the dense path") {
  for (const char* name : {"assembly_S30.safetensors", "assembly_S57.safetensors"}) {
    CAPTURE(name);
    st::File f(fx(name));
    Tensor cloud = f.get("cloud");
    const int64_t S = cloud.size(1), grid = i64(f, "grid")[0];
    ValidPoints vp = valid_points(cloud);
    Tensor rgb = assemble_rgb(f.get("tokens"), grid, S);
    CHECK_SCALED(rgb, f.get("rgb_patch"), 1e-5);
    Tensor centers = f.get("centers"), feats = f.get("features");
    Tensor xyz = assemble_xyz(vp.xyz, vp.pixel, centers, feats, S);
    CHECK_SCALED(xyz, f.get("xyz_patch"), 1e-5);
    Tensor valid = valid_mask(xyz);
    CHECK(test::bit_identical(valid, f.get("valid")));
    double nvalid = 0;
    for (float v : valid.to_vector()) nvalid += v;
    CHECK(nvalid < static_cast<double>(S * S));  // the hole makes some positions invalid
    CsrMatrix P = build_xyz_operator(vp.xyz, vp.pixel, centers, S);
    CHECK(P.rows == S * S);
    CHECK(P.cols == centers.size(0));
    CHECK_SCALED(P.matmul(feats), xyz, 1e-5);
    Tensor xs = assemble_xyz_sparse(vp.xyz, vp.pixel, centers, feats, S);
    CHECK_SCALED(xs, f.get("xyz_patch"), 1e-5);
    CHECK(test::bit_identical(valid_mask(xs), f.get("valid")));
  }
}

TEST_CASE("dino_vit full size on hash weights (selected rows vs torch)") {
  st::File f(fx("vit_full.safetensors"));
  DinoVit m;
  test::fill_hash(m.param_specs());
  Tensor img = test::hash_uniform("input.image", {3, 224, 224});
  img = ops::scale(img, 2.0f);
  Tensor out = dino_vit_forward(m, img);
  REQUIRE(out.shape() == Shape{784, 768});
  CHECK_SCALED(ops::index_select_forward(out, i64(f, "rows")), f.get("tokens_rows"), 1e-3);
  CHECK_SCALED(ops::mean_forward(out, 0), f.get("tokens_mean"), 1e-3);
  Tensor rgb = assemble_rgb(out, 28, 224);
  CHECK_SCALED(ops::index_select_forward(rgb, i64(f, "patch_rows")), f.get("rgb_patch_rows"), 1e-3);
}

TEST_CASE("fps and knn at full size (40k points, 1024 centres, 128 neighbours) are exact") {
  st::File f(fx("pmae_full.safetensors"));
  ValidPoints vp = valid_points(test::full_cloud());
  REQUIRE(vp.xyz.size(0) == i64(f, "n_points")[0]);
  std::vector<int64_t> idx = farthest_point_sample(vp.xyz, 1024);
  CHECK(idx == i64(f, "fps_idx"));
  Tensor first =
      ops::index_select_forward(vp.xyz, std::vector<int64_t>(idx.begin(), idx.begin() + 8));
  CHECK(knn_indices(vp.xyz, first, 128) == i64(f, "knn_idx_first"));
}

TEST_SUITE("slow") {
  TEST_CASE("point_mae full size on hash weights (1024 groups of 128, ~40k points)") {
    st::File f(fx("pmae_full.safetensors"));
    PointMae m;
    test::fill_hash(m.param_specs());
    ValidPoints vp = valid_points(test::full_cloud());
    REQUIRE(vp.xyz.size(0) == i64(f, "n_points")[0]);
    PointMaeTrace tr;
    PointMaeOutput out = point_mae_forward(m, vp.xyz, &tr);
    CHECK(out.center_idx == i64(f, "fps_idx"));
    std::vector<int64_t> kfirst(tr.knn_idx.begin(), tr.knn_idx.begin() + 128 * 8);
    CHECK(kfirst == i64(f, "knn_idx_first"));
    REQUIRE(out.features.shape() == Shape{1024, 1152});
    CHECK_SCALED(ops::index_select_forward(out.features, i64(f, "rows")), f.get("features_rows"),
                 1e-3);
    CHECK_SCALED(ops::mean_forward(out.features, 0), f.get("features_mean"), 1e-3);
    Tensor xyz = assemble_xyz(vp.xyz, vp.pixel, out.centers, out.features, 224);
    CHECK_SCALED(ops::index_select_forward(xyz, i64(f, "patch_rows")), f.get("xyz_patch_rows"),
                 1e-3);
    Tensor valid = valid_mask(xyz);
    Tensor want = f.get("valid", /*convert=*/true);
    CHECK(test::bit_identical(valid, want));
  }

}  // TEST_SUITE("slow")

TEST_CASE("full-size parameter lists match WEIGHTS.md (counts and totals)") {
  DinoVit vit;
  auto vs = vit.param_specs();
  int64_t n = 0;
  for (const auto& s : vs) n += shape_numel(s.shape);
  CHECK(vs.size() == 150);  // WEIGHTS.md: 150 tensors
  CHECK(n == 85'807'872);   // WEIGHTS.md: 85,807,872 parameters
  PointMae pm;
  auto ps = pm.param_specs();
  n = 0;
  for (const auto& s : ps) n += shape_numel(s.shape);
  // WEIGHTS.md table: encoder 16 tensors, pos_embed 4, 12 blocks × 11, norm 2 (plus the two
  // I64 num_batches_tracked written separately). Parameter total worked out by hand from
  // the table: encoder 495,744 (with running stats) + pos 50,048 + blocks 12 × 1,773,312 +
  // norm 768.
  CHECK(ps.size() == 154);
  CHECK(n == 21'826'304);
}

TEST_CASE("init-extractors weights: timm-style init, written flagged random, load back equal") {
  PointMaeConfig c = tiny_pmae();
  PointMae a(c), b(c);
  Rng rng(11);
  init_params(a.param_specs(), rng);
  // trunc-normal std .02 within ±2 std; zeros / ones where timm puts them; BN stats non-trivial.
  std::vector<float> w = a.blocks[0].mlp_fc1_weight.to_vector();
  double s2 = 0;
  for (float v : w) {
    CHECK(std::abs(v) <= 0.04f);
    s2 += static_cast<double>(v) * v;
  }
  CHECK(std::sqrt(s2 / static_cast<double>(w.size())) == doctest::Approx(0.0176).epsilon(0.15));
  CHECK(a.blocks[0].mlp_fc1_bias.to_vector() == std::vector<float>(96, 0.0f));
  CHECK(a.norm_weight.to_vector() == std::vector<float>(48, 1.0f));
  std::vector<float> rv = a.encoder_first_conv_1_running_var.to_vector();
  CHECK(*std::min_element(rv.begin(), rv.end()) >= 0.5f);
  CHECK(*std::max_element(rv.begin(), rv.end()) != 1.0f);
  const std::string p = tmp_path("pmae_random.safetensors");
  write_params(a.param_specs(), {"encoder.first_conv.1.num_batches_tracked"}, {{"cmdr.seed", "11"}},
               p);
  {
    st::File f(p);
    CHECK(f.info("encoder.first_conv.1.num_batches_tracked").dtype == st::DType::I64);
    CHECK(f.info("encoder.first_conv.1.num_batches_tracked").shape.empty());
    LoadReport r = b.load(f);
    CHECK(r.random_weights);
    CHECK(r.unexpected.empty());
  }
  std::remove(p.c_str());
  auto sa = a.param_specs(), sb = b.param_specs();
  for (std::size_t i = 0; i < sa.size(); ++i)
    CHECK(test::bit_identical(*sa[i].target, *sb[i].target));
}

TEST_CASE("valid mask: all-zero rows are invalid; rows that cancel to a zero sum stay valid") {
  Tensor x = Tensor::from_vector({3, 4}, {0, 0, 0, 0, 1, -1, 0.5f, -0.5f, 0, 0, 1e-30f, 0});
  CHECK(valid_mask(x).to_vector() == std::vector<float>{0, 1, 1});
}
