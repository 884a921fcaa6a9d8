#include "models/feature_assembly.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "ops/ops.hpp"

namespace cmdr::models {

ValidPoints valid_points(const Tensor& cloud) {
  CMDR_CHECK(cloud.dim() == 3 && cloud.size(0) == 3, "valid_points: cloud ", cloud.str(),
             " must be [3, H, W]");
  const int64_t HW = cloud.size(1) * cloud.size(2);
  Tensor c = cloud.contiguous();
  const float* x = c.data();
  const float* y = x + HW;
  const float* z = y + HW;
  ValidPoints vp;
  std::vector<float> xyz;
  for (int64_t p = 0; p < HW; ++p) {
    if (x[p] != 0.0f && y[p] != 0.0f && z[p] != 0.0f) {  // SPEC 4.2: all three non-zero
      vp.pixel.push_back(p);
      xyz.insert(xyz.end(), {x[p], y[p], z[p]});
    }
  }
  vp.xyz = Tensor::from_vector({static_cast<int64_t>(vp.pixel.size()), 3}, xyz);
  return vp;
}

// tokens [g·g, C] -> [C, g, g] -> bilinear [C, S, S] -> [S², C]
Tensor assemble_rgb(const Tensor& tokens, int64_t grid, int64_t S) {
  CMDR_CHECK(tokens.dim() == 2 && tokens.size(0) == grid * grid, "assemble_rgb: tokens ",
             tokens.str(), " do not form a ", grid, "×", grid, " grid");
  CMDR_CHECK(S > 0, "assemble_rgb: output side ", S);
  const int64_t C = tokens.size(1);
  Tensor img = tokens.transpose(0, 1).reshape({1, C, grid, grid});
  Tensor up = ops::upsample_bilinear2d_forward(img, S, S);  // [1, C, S, S]
  img = Tensor();
  return up.view({C, S * S}).transpose(0, 1).contiguous();
}

ThreeNN three_nn(const Tensor& points, const Tensor& centers) {
  CMDR_CHECK(points.dim() == 2 && points.size(1) == 3, "three_nn: points ", points.str(),
             " must be [N, 3]");
  CMDR_CHECK(centers.dim() == 2 && centers.size(1) == 3 && centers.size(0) >= 3,
             "three_nn: centers ", centers.str(), " must be [G >= 3, 3]");
  const int64_t N = points.size(0), G = centers.size(0);
  ProfileScope prof("three_nn", 8.0 * static_cast<double>(N) * static_cast<double>(G));
  Tensor pc = points.contiguous(), cc = centers.contiguous();
  const float* p = pc.data();
  const float* c = cc.data();
  ThreeNN r;
  r.idx.resize(static_cast<std::size_t>(3 * N));
  r.w.resize(static_cast<std::size_t>(3 * N));
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    const float px = p[3 * n], py = p[3 * n + 1], pz = p[3 * n + 2];
    float bd[3] = {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::infinity(),
                   std::numeric_limits<float>::infinity()};
    int32_t bi[3] = {0, 0, 0};
    for (int64_t g = 0; g < G; ++g) {
      const float dx = px - c[3 * g], dy = py - c[3 * g + 1], dz = pz - c[3 * g + 2];
      const float d = (dx * dx + dy * dy) + dz * dz;
      // Scan in index order with strict '<': equal distances keep the lower index first.
      if (d < bd[2]) {
        int j = 2;
        while (j > 0 && d < bd[j - 1]) {
          bd[j] = bd[j - 1];
          bi[j] = bi[j - 1];
          --j;
        }
        bd[j] = d;
        bi[j] = static_cast<int32_t>(g);
      }
    }
    float rec[3];
    for (int j = 0; j < 3; ++j) rec[j] = 1.0f / (bd[j] + 1e-8f);
    const float norm = (rec[0] + rec[1]) + rec[2];
    for (int j = 0; j < 3; ++j) {
      r.idx[static_cast<std::size_t>(3 * n + j)] = bi[j];
      r.w[static_cast<std::size_t>(3 * n + j)] = rec[j] / norm;
    }
  }
  return r;
}

Tensor assemble_xyz(const Tensor& points, const std::vector<int64_t>& pixel, const Tensor& centers,
                    const Tensor& features, int64_t S) {
  const int64_t N = points.size(0);
  CMDR_CHECK(static_cast<int64_t>(pixel.size()) == N, "assemble_xyz: ", pixel.size(),
             " pixels for points ", points.str());
  CMDR_CHECK(features.dim() == 2 && features.size(0) == centers.size(0), "assemble_xyz: features ",
             features.str(), " vs centers ", centers.str());
  CMDR_CHECK(S >= 3, "assemble_xyz: side ", S, " < 3 (3×3 pool without padding)");
  const int64_t C = features.size(1), SS = S * S;
  for (int64_t p : pixel)
    CMDR_CHECK(p >= 0 && p < SS, "assemble_xyz: pixel ", p, " outside ", S, "×", S);
  ThreeNN nn = three_nn(points, centers);
  Tensor fc = features.contiguous();
  const float* f = fc.data();
  // Scatter the interpolated features straight into the [C, S, S] grid (zeros elsewhere).
  Tensor grid = Tensor::zeros({1, C, S, S});
  float* gd = grid.data();
  {
    ProfileScope prof("interpolate_scatter", 5.0 * static_cast<double>(N) * static_cast<double>(C));
    // Tiles of kTile channels: each point reads kTile contiguous floats of its 3 centres'
    // rows and writes kTile planes; consecutive points sit on nearby pixels, so the
    // kTile destination lines stay in L1.
    constexpr int64_t kTile = 64;
    const int64_t tiles = (C + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
      const int64_t c0 = t * kTile, c1 = std::min(C, c0 + kTile);
      for (int64_t n = 0; n < N; ++n) {
        const int32_t* id = &nn.idx[static_cast<std::size_t>(3 * n)];
        const float* w = &nn.w[static_cast<std::size_t>(3 * n)];
        const float* f0 = f + static_cast<int64_t>(id[0]) * C;
        const float* f1 = f + static_cast<int64_t>(id[1]) * C;
        const float* f2 = f + static_cast<int64_t>(id[2]) * C;
        float* dst = gd + pixel[static_cast<std::size_t>(n)];
        for (int64_t ch = c0; ch < c1; ++ch)
          dst[ch * SS] = (w[0] * f0[ch] + w[1] * f1[ch]) + w[2] * f2[ch];
      }
    }
  }
  Tensor pooled = ops::avg_pool2d_forward(grid, 3, 0);  // [1, C, S−2, S−2]
  grid = Tensor();
  Tensor back = ops::adaptive_avg_pool2d_forward(pooled, S, S);  // [1, C, S, S]
  pooled = Tensor();
  return back.view({C, SS}).transpose(0, 1).contiguous();
}

Tensor valid_mask(const Tensor& xyz_patch) {
  CMDR_CHECK(xyz_patch.dim() == 2, "valid_mask: xyz_patch ", xyz_patch.str(), " must be [S², C]");
  const int64_t L = xyz_patch.size(0), C = xyz_patch.size(1);
  Tensor x = xyz_patch.contiguous();
  Tensor m = Tensor::empty({L});
  const float* xd = x.data();
  float* md = m.data();
#pragma omp parallel for schedule(static)
  // SPEC 4.3 says "invalid when the row sums to exactly 0": the reference's intent is "no
  // point contributed", i.e. an all-zero row. A literal float sum is ill-conditioned: with a
  // final LayerNorm whose bias is 0 (any timm-style random init) every feature row has mean
  // ~0, and ~0.1% of the rows sum to exactly 0 by accident, differently for every
  // summation order (the dense and the P·G paths disagreed on 62 of 50176 positions). So:
  // invalid iff every entry is 0 (an all-zero row sums to exactly 0 in any order).
  for (int64_t p = 0; p < L; ++p) {
    const float* row = xd + p * C;
    bool any = false;
    for (int64_t c = 0; c < C && !any; ++c) any = row[c] != 0.0f;
    md[p] = any ? 1.0f : 0.0f;
  }
  return m;
}

CsrMatrix build_xyz_operator(const Tensor& points, const std::vector<int64_t>& pixel,
                             const Tensor& centers, int64_t S) {
  const int64_t N = points.size(0), G = centers.size(0), SS = S * S, Sp = S - 2;
  CMDR_CHECK(static_cast<int64_t>(pixel.size()) == N, "xyz_operator: ", pixel.size(),
             " pixels for points ", points.str());
  CMDR_CHECK(S >= 3, "xyz_operator: side ", S, " < 3");
  ThreeNN nn = three_nn(points, centers);
  std::vector<int64_t> point_at(static_cast<std::size_t>(SS), -1);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t p = pixel[static_cast<std::size_t>(n)];
    CMDR_CHECK(p >= 0 && p < SS, "xyz_operator: pixel ", p, " outside ", S, "×", S);
    point_at[static_cast<std::size_t>(p)] = n;
  }
  CsrMatrix P;
  P.rows = SS;
  P.cols = G;
  P.row_ptr.assign(static_cast<std::size_t>(SS + 1), 0);
  std::vector<std::vector<int32_t>> rcol(static_cast<std::size_t>(SS));
  std::vector<std::vector<float>> rval(static_cast<std::size_t>(SS));
#pragma omp parallel
  {
    std::vector<double> acc(static_cast<std::size_t>(G), 0.0);
    std::vector<int32_t> touched;
#pragma omp for schedule(static)
    for (int64_t o = 0; o < SS; ++o) {
      const int64_t i = o / S, j = o % S;
      // Adaptive bin over the (S−2)×(S−2) pooled grid: [floor(i·In/Out), ceil((i+1)·In/Out)).
      const int64_t h0 = (i * Sp) / S, h1 = ((i + 1) * Sp + S - 1) / S;
      const int64_t w0 = (j * Sp) / S, w1 = ((j + 1) * Sp + S - 1) / S;
      const double wbin = 1.0 / static_cast<double>((h1 - h0) * (w1 - w0));
      for (int64_t a = h0; a < h1; ++a)
        for (int64_t b = w0; b < w1; ++b)
          for (int64_t di = 0; di < 3; ++di)
            for (int64_t dj = 0; dj < 3; ++dj) {  // 3×3 pool, divisor 9
              const int64_t n = point_at[static_cast<std::size_t>((a + di) * S + (b + dj))];
              if (n < 0) continue;
              for (int k = 0; k < 3; ++k) {
                const int32_t g = nn.idx[static_cast<std::size_t>(3 * n + k)];
                if (acc[static_cast<std::size_t>(g)] == 0.0) touched.push_back(g);
                acc[static_cast<std::size_t>(g)] +=
                    wbin / 9.0 * static_cast<double>(nn.w[static_cast<std::size_t>(3 * n + k)]);
              }
            }
      std::sort(touched.begin(), touched.end());
      touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
      auto& cc = rcol[static_cast<std::size_t>(o)];
      auto& vv = rval[static_cast<std::size_t>(o)];
      for (int32_t g : touched) {
        cc.push_back(g);
        vv.push_back(static_cast<float>(acc[static_cast<std::size_t>(g)]));
        acc[static_cast<std::size_t>(g)] = 0.0;
      }
      touched.clear();
    }
  }
  for (int64_t o = 0; o < SS; ++o)
    P.row_ptr[static_cast<std::size_t>(o + 1)] =
        P.row_ptr[static_cast<std::size_t>(o)] +
        static_cast<int64_t>(rcol[static_cast<std::size_t>(o)].size());
  P.col.reserve(static_cast<std::size_t>(P.row_ptr.back()));
  P.val.reserve(static_cast<std::size_t>(P.row_ptr.back()));
  for (int64_t o = 0; o < SS; ++o) {
    P.col.insert(P.col.end(), rcol[static_cast<std::size_t>(o)].begin(),
                 rcol[static_cast<std::size_t>(o)].end());
    P.val.insert(P.val.end(), rval[static_cast<std::size_t>(o)].begin(),
                 rval[static_cast<std::size_t>(o)].end());
  }
  return P;
}

Tensor assemble_xyz_sparse(const Tensor& points, const std::vector<int64_t>& pixel,
                           const Tensor& centers, const Tensor& features, int64_t S) {
  CMDR_CHECK(features.dim() == 2 && features.size(0) == centers.size(0),
             "assemble_xyz_sparse: features ", features.str(), " vs centers ", centers.str());
  return build_xyz_operator(points, pixel, centers, S).matmul(features);
}

std::vector<int64_t> CompactPatches::valid_rows() const {
  const Tensor v = valid.contiguous();
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < v.numel(); ++i) {
    if (v.data()[i] != 0.0f) rows.push_back(i);
  }
  return rows;
}

Tensor CompactPatches::rgb_rows(const std::vector<int64_t>& rows) const {
  CMDR_CHECK(defined() && up, "CompactPatches: no rgb operator");
  return rows.empty() ? up->matmul(rgb_tokens) : up->select_rows(rows).matmul(rgb_tokens);
}

Tensor CompactPatches::xyz_rows(const std::vector<int64_t>& rows) const {
  CMDR_CHECK(defined() && xyz_op, "CompactPatches: no xyz operator");
  return rows.empty() ? xyz_op->matmul(group_features)
                      : xyz_op->select_rows(rows).matmul(group_features);
}

std::shared_ptr<const CsrMatrix> bilinear_operator_for(int64_t grid, int64_t S) {
  // One per (g, S) for the process; building it is cheap, but it is shared by every sample.
  static std::mutex mu;
  static std::map<std::pair<int64_t, int64_t>, std::shared_ptr<const CsrMatrix>> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = cache[{grid, S}];
  if (!slot) slot = std::make_shared<const CsrMatrix>(ops::bilinear_operator(grid, grid, S, S));
  return slot;
}

CompactPatches compact_patches(const Tensor& tokens, int64_t grid, const Tensor& points,
                               const std::vector<int64_t>& pixel, const Tensor& centers,
                               const Tensor& features, int64_t S, int64_t rgb_dim,
                               int64_t xyz_dim) {
  CMDR_CHECK(S >= 3, "compact_patches: side ", S, " < 3");
  const int64_t L = S * S;
  CompactPatches c;
  c.side = S;
  auto empty_operator = [L]() {
    auto e = std::make_shared<CsrMatrix>();
    e->rows = L;
    e->cols = 1;
    e->row_ptr.assign(static_cast<std::size_t>(L + 1), 0);
    return std::shared_ptr<const CsrMatrix>(std::move(e));
  };
  if (tokens.defined()) {
    CMDR_CHECK(tokens.dim() == 2 && tokens.size(0) == grid * grid && tokens.size(1) == rgb_dim,
               "compact_patches: rgb tokens ", tokens.str(), ", expected [", grid * grid, ", ",
               rgb_dim, "]");
    c.rgb_tokens = tokens.contiguous();
    c.up = bilinear_operator_for(grid, S);
  } else {
    c.rgb_tokens = Tensor::zeros({1, rgb_dim});
    c.up = empty_operator();
  }
  if (features.defined()) {
    CMDR_CHECK(
        features.dim() == 2 && features.size(0) == centers.size(0) && features.size(1) == xyz_dim,
        "compact_patches: group features ", features.str(), " vs centers ", centers.str(),
        " and xyz width ", xyz_dim);
    c.group_features = features.contiguous();
    c.xyz_op = std::make_shared<const CsrMatrix>(build_xyz_operator(points, pixel, centers, S));
    // valid_mask of xyz_patch without forming it: only rows with operator entries can be
    // non-zero, and those rows are formed to check (SPEC 4.3, see valid_mask).
    std::vector<int64_t> cand;
    for (int64_t p = 0; p < L; ++p) {
      if (c.xyz_op->row_ptr[static_cast<std::size_t>(p + 1)] >
          c.xyz_op->row_ptr[static_cast<std::size_t>(p)])
        cand.push_back(p);
    }
    c.valid = Tensor::zeros({L});
    if (!cand.empty()) {
      const Tensor m = valid_mask(c.xyz_rows(cand));
      for (std::size_t i = 0; i < cand.size(); ++i)
        c.valid.data()[cand[i]] = m.data()[static_cast<int64_t>(i)];
    }
  } else {
    c.group_features = Tensor::zeros({1, xyz_dim});
    c.xyz_op = empty_operator();
    c.valid = Tensor::zeros({L});
  }
  return c;
}

}  // namespace cmdr::models
