#include "models/fusion.hpp"

#include <cmath>
#include <vector>

#include "engine/error.hpp"

namespace cmdr::models {

Mode parse_mode(const std::string& s) {
  if (s == "2d3d") return Mode::Fused2D3D;
  if (s == "2d") return Mode::Only2D;
  if (s == "3d") return Mode::Only3D;
  if (s == "map") return Mode::MapOnly;
  if (s == "rec") return Mode::RecOnly;
  fail("mode: '", s, "' is not one of 2d3d, 2d, 3d, map, rec");
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Fused2D3D:
      return "2d3d";
    case Mode::Only2D:
      return "2d";
    case Mode::Only3D:
      return "3d";
    case Mode::MapOnly:
      return "map";
    case Mode::RecOnly:
      return "rec";
  }
  return "?";
}

bool mode_uses_mapping(Mode m) {
  return m == Mode::Fused2D3D || m == Mode::MapOnly || m == Mode::RecOnly;
}
bool mode_uses_dec2d(Mode m) {
  return m != Mode::Only3D;
}
bool mode_uses_dec3d(Mode m) {
  return m != Mode::Only2D;
}

namespace {
// e(x, y) at one position; x == nullptr is the zero vector (x/max(‖x‖,1e-12) = 0 exactly, so
// the difference is −y/‖y‖ as the scattered computation forms it).
float position_error(const float* x, const float* y, int64_t c) {
  double sx = 0.0, sy = 0.0;
  for (int64_t i = 0; i < c; ++i) {
    if (x) sx += static_cast<double>(x[i]) * x[i];
    sy += static_cast<double>(y[i]) * y[i];
  }
  const float nx = std::max(static_cast<float>(std::sqrt(sx)), 1e-12f);
  const float ny = std::max(static_cast<float>(std::sqrt(sy)), 1e-12f);
  double s = 0.0;
  for (int64_t i = 0; i < c; ++i) {
    const float d = (x ? x[i] : 0.0f) / nx - y[i] / ny;
    s += static_cast<double>(d) * d;
  }
  return static_cast<float>(std::sqrt(s));
}
}  // namespace

Tensor error_map(const Tensor& a, const Tensor& b, int64_t side) {
  CMDR_CHECK(a.dim() == 2 && a.shape() == b.shape(), "error_map: a ", a.str(), " vs b ", b.str(),
             ": expected equal [S², C] shapes");
  return error_map_rows(a, {}, b, side);
}

Tensor error_map_rows(const Tensor& a_rows, const std::vector<int64_t>& rows, const Tensor& b,
                      int64_t side) {
  CMDR_CHECK(b.dim() == 2 && b.size(0) == side * side, "error_map: b ", b.str(), " has ",
             b.dim() == 2 ? b.size(0) : -1, " positions, side ", side, " needs ", side * side);
  const int64_t n = b.size(0), c = b.size(1);
  const int64_t na = rows.empty() ? n : static_cast<int64_t>(rows.size());
  CMDR_CHECK(a_rows.dim() == 2 && a_rows.size(0) == na && a_rows.size(1) == c, "error_map: a ",
             a_rows.str(), " vs b ", b.str(), ": expected [", na, ", ", c, "] (",
             rows.empty() ? "every position" : "the rows given", ")");
  const Tensor ac = a_rows.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty({side, side});
  const float* pa = ac.data();
  const float* pb = bc.data();
  float* po = out.data();
  // Where position p's row of a is (or -1: the zero vector).
  std::vector<int64_t> where;
  if (!rows.empty()) {
    where.assign(static_cast<std::size_t>(n), -1);
    for (std::size_t k = 0; k < rows.size(); ++k) {
      CMDR_CHECK(rows[k] >= 0 && rows[k] < n, "error_map: row ", rows[k], " outside [0, ", n, ")");
      where[static_cast<std::size_t>(rows[k])] = static_cast<int64_t>(k);
    }
  }
  // Per position: normalise both vectors (eps 1e-12, as F.normalize) and take the norm of
  // the difference. Norms accumulate in double; the difference is formed in float.
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < n; ++p) {
    const int64_t k = rows.empty() ? p : where[static_cast<std::size_t>(p)];
    po[p] = position_error(k < 0 ? nullptr : pa + k * c, pb + p * c, c);
  }
  return out;
}

Tensor box_filter(const Tensor& x, int64_t k) {
  CMDR_CHECK(x.dim() == 2, "box_filter: x ", x.str(), ": expected [H, W]");
  CMDR_CHECK(k >= 1 && k % 2 == 1, "box_filter: kernel ", k, " must be odd and positive");
  const Tensor xc = x.contiguous();
  const int64_t h = x.size(0), w = x.size(1), r = k / 2;
  Tensor out = Tensor::empty({h, w});
  const float* px = xc.data();
  float* po = out.data();
  const double inv = 1.0 / static_cast<double>(k * k);  // count_include_pad: always k²
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < h; ++i) {
    for (int64_t j = 0; j < w; ++j) {
      double s = 0.0;
      for (int64_t di = -r; di <= r; ++di) {
        const int64_t ii = i + di;
        if (ii < 0 || ii >= h) continue;
        for (int64_t dj = -r; dj <= r; ++dj) {
          const int64_t jj = j + dj;
          if (jj < 0 || jj >= w) continue;
          s += px[ii * w + jj];
        }
      }
      po[i * w + j] = static_cast<float>(s * inv);
    }
  }
  return out;
}

namespace {

Tensor box_repeat(Tensor x, int64_t k, int times) {
  for (int i = 0; i < times; ++i) x = box_filter(x, k);
  return x;
}

// Elementwise helpers over same-shape contiguous maps.
template <typename F>
Tensor map1(const Tensor& a, F f) {
  const Tensor ac = a.contiguous();
  Tensor out = Tensor::empty(a.shape());
  const float* pa = ac.data();
  float* po = out.data();
  for (int64_t i = 0; i < a.numel(); ++i) po[i] = f(pa[i]);
  return out;
}
template <typename F>
Tensor map2(const Tensor& a, const Tensor& b, F f) {
  CMDR_CHECK(a.numel() == b.numel(), "fuse: maps ", a.str(), " and ", b.str(), " differ");
  const Tensor ac = a.contiguous(), bc = b.contiguous();
  Tensor out = Tensor::empty(a.shape());
  const float* pa = ac.data();
  const float* pb = bc.data();
  float* po = out.data();
  for (int64_t i = 0; i < a.numel(); ++i) po[i] = f(pa[i], pb[i]);
  return out;
}

double mean_all(const Tensor& a) {
  const Tensor ac = a.contiguous();
  double s = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) s += ac.data()[i];
  return s / static_cast<double>(a.numel());
}

double mean_nonzero(const Tensor& a) {
  const Tensor ac = a.contiguous();
  double s = 0.0;
  int64_t n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    if (ac.data()[i] != 0.0f) {
      s += ac.data()[i];
      ++n;
    }
  }
  return n > 0 ? s / static_cast<double>(n) : 0.0;
}

Tensor masked(const Tensor& d, const Tensor& valid) {
  return map2(d, valid, [](float x, float v) { return v != 0.0f ? x : 0.0f; });
}

void check_map(const Tensor& t, const char* name, const Shape& shape) {
  CMDR_CHECK(t.defined(), "fuse: ", name, " is required by this mode but missing");
  CMDR_CHECK(t.shape() == shape, "fuse: ", name, " ", t.str(), " vs valid ", shape_str(shape),
             ": shapes differ");
}

// A_map (SPEC 7): J = d_map2d·d_map3d; σ = sqrt(box_7((J − mean J)²));
// W = 4 + 2σ/(mean σ + 1e-8); A_map = sigmoid(W·J)·J.
Tensor reliability_gated(const Tensor& d_map2d, const Tensor& d_map3d) {
  const Tensor j = map2(d_map2d, d_map3d, [](float a, float b) { return a * b; });
  const float m = static_cast<float>(mean_all(j));
  const Tensor dev = map1(j, [m](float x) { return (x - m) * (x - m); });
  const Tensor sigma = map1(box_filter(dev, 7), [](float x) { return std::sqrt(x); });
  const float ms = static_cast<float>(mean_all(sigma));
  const Tensor w = map1(sigma, [ms](float s) { return 4.0f + 2.0f * s / (ms + 1e-8f); });
  return map2(w, j, [](float wi, float ji) {
    const float z = wi * ji;
    return ji / (1.0f + std::exp(-z));
  });
}

// A_rec (SPEC 7): w = exp(−0.3 d); A_rec = (w2 d2 + w3 d3) / (w2 + w3 + 1e-8).
Tensor confidence_weighted(const Tensor& d_rec2d, const Tensor& d_rec3d) {
  return map2(d_rec2d, d_rec3d, [](float d2, float d3) {
    const float w2 = std::exp(-0.3f * d2), w3 = std::exp(-0.3f * d3);
    return (w2 * d2 + w3 * d3) / (w2 + w3 + 1e-8f);
  });
}

}  // namespace

FusionResult fuse(const FusionInputs& in, Mode mode) {
  CMDR_CHECK(in.valid.defined(), "fuse: valid mask missing");
  const Tensor& ref = in.d_rec2d.defined() ? in.d_rec2d : in.d_rec3d;
  CMDR_CHECK(ref.defined() && ref.dim() == 2 && ref.size(0) == ref.size(1),
             "fuse: expected square [S, S] error maps");
  const Shape shape = ref.shape();
  CMDR_CHECK(in.valid.numel() == shape_numel(shape), "fuse: valid ", in.valid.str(), " vs maps ",
             shape_str(shape), ": sizes differ");
  const Tensor valid = in.valid.reshape(shape);

  FusionResult r;
  r.mode_used = mode;
  int64_t n_valid = 0;
  for (float v : valid.to_vector()) n_valid += (v != 0.0f);
  if (n_valid == 0 && mode != Mode::Only2D) {
    if (mode == Mode::Only3D) {
      r.warning = "fuse: no valid position (no geometry); mode 3d yields an all-zero map";
    } else {
      r.warning = std::string("fuse: no valid position (no geometry); mode ") + mode_name(mode) +
                  " falls back to 2d";
      r.mode_used = Mode::Only2D;
    }
  }

  Tensor f;
  switch (r.mode_used) {
    case Mode::Only2D: {
      // Every position is valid in 2d mode: no masking.
      check_map(in.d_rec2d, "d_rec2d", shape);
      r.d_rec2d = box_repeat(box_repeat(in.d_rec2d, 5, 3), 7, 2);
      f = r.d_rec2d;
      break;
    }
    case Mode::Only3D: {
      check_map(in.d_rec3d, "d_rec3d", shape);
      r.d_rec3d = masked(in.d_rec3d, valid);
      f = r.d_rec3d;
      break;
    }
    case Mode::Fused2D3D:
    case Mode::MapOnly:
    case Mode::RecOnly: {
      check_map(in.d_map2d, "d_map2d", shape);
      check_map(in.d_map3d, "d_map3d", shape);
      check_map(in.d_rec2d, "d_rec2d", shape);
      check_map(in.d_rec3d, "d_rec3d", shape);
      r.d_map2d = masked(in.d_map2d, valid);
      r.d_map3d = masked(in.d_map3d, valid);
      r.d_rec2d = box_repeat(box_repeat(masked(in.d_rec2d, valid), 5, 3), 7, 2);
      r.d_rec3d = masked(in.d_rec3d, valid);
      r.a_map = reliability_gated(r.d_map2d, r.d_map3d);
      r.a_rec = confidence_weighted(r.d_rec2d, r.d_rec3d);
      if (r.mode_used == Mode::Fused2D3D) {
        f = map2(r.a_map, r.a_rec, [](float a, float b) { return a * b; });
      } else {
        f = r.mode_used == Mode::MapOnly ? r.a_map : r.a_rec;
      }
      f = masked(f, valid);
      break;
    }
  }
  // Final smoothing and normalisations, shared by every mode (SPEC 7).
  r.fused = box_repeat(box_repeat(f, 5, 5), 7, 3);
  const double mean_f = mean_all(r.fused);
  const double mean_nz = mean_nonzero(r.fused);
  const float pix_div = mean_f > 0.0 ? static_cast<float>(std::sqrt(mean_f)) : 1.0f;
  const float score_div = mean_nz > 0.0 ? static_cast<float>(std::sqrt(mean_nz)) : 1.0f;
  const float aupro_div = mean_nz > 0.0 ? static_cast<float>(mean_nz) : 1.0f;
  r.pixel_map = map1(r.fused, [pix_div](float x) { return x / pix_div; });
  r.aupro_map = map1(r.fused, [aupro_div](float x) { return x / aupro_div; });
  float best = -INFINITY;
  for (float x : r.fused.to_vector()) best = std::max(best, x / score_div);
  r.image_score = best;
  return r;
}

}  // namespace cmdr::models
