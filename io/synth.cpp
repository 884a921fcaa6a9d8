#include "io/synth.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/tiff.hpp"

namespace fs = std::filesystem;

namespace cmdr::io {
namespace {

constexpr double kPi = 3.14159265358979323846;

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: decorrelates per-sample seeds
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Value noise in [0, 1]: hashed lattice values, smoothstep-interpolated (deterministic, no
// state, so texture does not depend on evaluation order).
double lattice(uint64_t seed, int64_t i, int64_t j) {
  const uint64_t h = mix64(seed ^ mix64(uint64_t(i) * 0x632be59bd9b4e019ULL + uint64_t(j)));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}
double value_noise(uint64_t seed, double x, double y) {
  const double fx = std::floor(x), fy = std::floor(y);
  const int64_t i = int64_t(fx), j = int64_t(fy);
  double tx = x - fx, ty = y - fy;
  tx = tx * tx * (3 - 2 * tx);
  ty = ty * ty * (3 - 2 * ty);
  const double a = lattice(seed, i, j), b = lattice(seed, i + 1, j);
  const double c = lattice(seed, i, j + 1), d = lattice(seed, i + 1, j + 1);
  return (a + (b - a) * tx) + ((c + (d - c) * tx) - (a + (b - a) * tx)) * ty;
}
double fbm(uint64_t seed, double x, double y) {  // 3 octaves, ≈ [0, 1]
  return (4 * value_noise(seed, x, y) + 2 * value_noise(seed + 1, 2 * x, 2 * y) +
          value_noise(seed + 2, 4 * x, 4 * y)) /
         7.0;
}

enum class Shape { Ellipsoid, Box, Cylinder, Torus };

struct ClassStyle {
  Shape shape;
  double a, b, height;                  // footprint half-axes and height (m)
  std::array<double, 3> color, color2;  // base colours (0..1) of the texture's two phases
  double texture_freq;                  // cycles per metre of the texture pattern
};

ClassStyle class_style(int k) {
  // Four base shapes; classes beyond 4 reuse them with other proportions and palettes.
  static const ClassStyle base[4] = {
      {Shape::Ellipsoid, 0.046, 0.032, 0.030, {0.78, 0.52, 0.28}, {0.55, 0.32, 0.15}, 160},
      {Shape::Box, 0.044, 0.030, 0.024, {0.70, 0.66, 0.58}, {0.45, 0.40, 0.33}, 90},
      {Shape::Cylinder, 0.052, 0.018, 0.018, {0.30, 0.55, 0.35}, {0.18, 0.38, 0.22}, 220},
      {Shape::Torus, 0.030, 0.016, 0.020, {0.82, 0.62, 0.30}, {0.60, 0.36, 0.12}, 120},
  };
  ClassStyle s = base[k % 4];
  const int round = k / 4;
  if (round > 0) {
    const double f = 1.0 + 0.15 * round;
    s.a *= f;
    s.b /= std::sqrt(f);
    for (int c = 0; c < 3; ++c) {
      s.color[size_t(c)] = std::fmod(s.color[size_t(c)] + 0.23 * round * (c + 1), 0.8) + 0.15;
      s.color2[size_t(c)] = s.color[size_t(c)] * 0.6;
    }
    s.texture_freq *= f;
  }
  return s;
}

// Object height (m) at object-local (x, y), before scaling; 0 off the object.
double shape_height(const ClassStyle& s, double x, double y) {
  switch (s.shape) {
    case Shape::Ellipsoid: {
      const double t = 1 - (x / s.a) * (x / s.a) - (y / s.b) * (y / s.b);
      return t > 0 ? s.height * std::sqrt(t) : 0.0;
    }
    case Shape::Box: {  // superellipse footprint, flat top with rounded rim
      const double r =
          std::pow(std::pow(std::abs(x) / s.a, 6) + std::pow(std::abs(y) / s.b, 6), 1.0 / 6);
      return r < 1 ? s.height * std::sqrt(1 - std::pow(r, 12)) : 0.0;
    }
    case Shape::Cylinder: {  // lying along x, hemispherical ends
      const double dx = std::max(0.0, std::abs(x) - (s.a - s.b));
      const double t = 1 - (dx * dx + y * y) / (s.b * s.b);
      return t > 0 ? s.height * std::sqrt(t) : 0.0;
    }
    case Shape::Torus: {
      const double d = std::sqrt(x * x + y * y) - s.a;
      const double t = 1 - (d / s.b) * (d / s.b);
      return t > 0 ? s.height * std::sqrt(t) : 0.0;
    }
  }
  return 0.0;
}

struct Defect {
  std::string type;                         // "" for good
  double cx = 0, cy = 0, r = 0;             // centre and radius (object-local, m)
  double depth = 0;                         // geometric magnitude (m)
  std::vector<std::array<double, 2>> path;  // crack/cut polyline
  double width = 0;
  std::array<double, 3> tint{};  // appearance colour
  uint64_t seed = 0;
};

double dist_to_path(const std::vector<std::array<double, 2>>& p, double x, double y) {
  double best = 1e30;
  for (size_t i = 0; i + 1 < p.size(); ++i) {
    const double ax = p[i][0], ay = p[i][1], bx = p[i + 1][0], by = p[i + 1][1];
    const double vx = bx - ax, vy = by - ay, l2 = vx * vx + vy * vy;
    double t = l2 > 0 ? ((x - ax) * vx + (y - ay) * vy) / l2 : 0;
    t = std::clamp(t, 0.0, 1.0);
    const double dx = x - (ax + t * vx), dy = y - (ay + t * vy);
    best = std::min(best, dx * dx + dy * dy);
  }
  return std::sqrt(best);
}

// Defect effect at object-local (x, y): height change (m), appearance weight in [0, 1] and
// whether the pixel belongs to the gt mask.
struct Effect {
  double dh = 0, paint = 0;
  bool mask = false;
};
Effect defect_effect(const Defect& d, double x, double y) {
  Effect e;
  if (d.type.empty()) return e;
  const double dx = x - d.cx, dy = y - d.cy;
  const double q = std::sqrt(dx * dx + dy * dy) / d.r;
  const double g = q < 1 ? (1 - q * q) * (1 - q * q) : 0.0;  // smooth bump profile
  if (d.type == "dent") {
    e.dh = -d.depth * g;
    e.mask = g > 0.15;
  } else if (d.type == "bump") {
    e.dh = d.depth * g;
    e.paint = std::min(1.0, 3.0 * g);
    e.mask = g > 0.15;
  } else if (d.type == "hole") {
    const bool in = q < 0.6;
    e.dh = in ? -d.depth : 0.0;
    e.mask = in;
  } else if (d.type == "stain") {
    const double edge = q + 0.45 * (fbm(d.seed, x * 400, y * 400) - 0.5);
    e.paint = edge < 0.75 ? 0.85 : 0.0;
    e.mask = edge < 0.75;
  } else if (d.type == "crack" || d.type == "cut") {
    const double t = dist_to_path(d.path, x, y) / d.width;
    if (t < 1) {
      e.dh = -d.depth * (d.type == "cut" ? (1 - t) : 1.0);
      e.paint = d.type == "cut" ? 0.8 : 0.9;
      e.mask = true;
    }
  }
  return e;
}

Defect make_defect(const ClassStyle& s, const std::string& type, double scale, Rng& rng) {
  Defect d;
  d.type = type;
  if (type.empty()) return d;
  d.seed = rng.next_u64();
  // Radius in metres of the real object: ~8% of the image side (clearly visible at 224²).
  d.r = (0.011 + 0.004 * rng.uniform01()) / scale;
  // Centre: a point well inside the object (high relative height), best of many tries.
  double best = -1;
  for (int i = 0; i < 400; ++i) {
    const double x = (2 * rng.uniform01() - 1) * s.a, y = (2 * rng.uniform01() - 1) * s.b;
    double h = shape_height(s, x, y);
    for (int k = 0; k < 4; ++k)  // the whole disk should be on the object
      h = std::min(
          h, shape_height(s, x + d.r * std::cos(k * kPi / 2), y + d.r * std::sin(k * kPi / 2)));
    if (h > best) best = h, d.cx = x, d.cy = y;
    if (h > 0.6 * s.height) break;
  }
  if (type == "dent") d.depth = (0.005 + 0.002 * rng.uniform01()) / scale;
  if (type == "bump") d.depth = (0.004 + 0.002 * rng.uniform01()) / scale;
  if (type == "hole") d.depth = (0.008 + 0.003 * rng.uniform01()) / scale;
  if (type == "crack") d.depth = 0.004 / scale, d.width = 0.0018 / scale;
  if (type == "cut") d.depth = 0.005 / scale, d.width = 0.0028 / scale;
  if (type == "crack" || type == "cut") {
    double ang = 2 * kPi * rng.uniform01();
    const int n = type == "crack" ? 7 : 2;
    const double step = (type == "crack" ? 0.55 : 2.6) * d.r;
    // Start so that the path is centred on (cx, cy).
    double x = d.cx - std::cos(ang) * step * (n - 1) / 2,
           y = d.cy - std::sin(ang) * step * (n - 1) / 2;
    for (int i = 0; i < n; ++i) {
      d.path.push_back({x, y});
      if (type == "crack") ang += (rng.uniform01() - 0.5) * 1.2;
      x += std::cos(ang) * step;
      y += std::sin(ang) * step;
    }
  }
  // Appearance colours: stain dark brown/purple, crack near black.
  if (type == "stain") d.tint = {0.18 + 0.1 * rng.uniform01(), 0.12, 0.30 * rng.uniform01()};
  // Bumps and cuts take the complement of the class colour so they contrast on every class.
  for (int c = 0; c < 3; ++c) {
    const double comp = 1.0 - s.color[size_t(c)];
    if (type == "bump") d.tint[size_t(c)] = 0.1 + 0.8 * comp;
    if (type == "cut") d.tint[size_t(c)] = 0.3 + 0.7 * comp;
  }
  if (type == "crack") d.tint = {0.08, 0.06, 0.05};
  return d;
}

uint8_t to_u8(double v) {
  return static_cast<uint8_t>(std::clamp(std::lround(v * 255.0), 0L, 255L));
}

}  // namespace

const std::vector<std::string>& synth_defect_types() {
  static const std::vector<std::string> t = {"bump", "crack", "cut", "dent", "hole", "stain"};
  return t;
}

std::string synth_class_name(int k) {
  static const char* names[4] = {"ellipsoid", "box", "cylinder", "torus"};
  std::string n = names[k % 4];
  if (k >= 4) n += std::to_string(k / 4 + 1);
  return n;
}

SynthSample synth_sample(int cls, const std::string& defect_in, uint64_t seed, int size, int height,
                         bool thin_rod, bool remove_plane) {
  const int W = size, H = height > 0 ? height : size;
  CMDR_CHECK(W >= 16 && H >= 16, "synth: image ", W, "x", H, " is too small (at least 16x16)");
  CMDR_CHECK(cls >= 0, "synth: class index ", cls);
  const std::string defect = defect_in == "good" ? "" : defect_in;
  CMDR_CHECK(defect.empty() || std::find(synth_defect_types().begin(), synth_defect_types().end(),
                                         defect) != synth_defect_types().end(),
             "synth: unknown defect type '", defect_in, "'");
  ClassStyle s = class_style(cls);
  if (thin_rod) {
    // A lying rod of 17 mm diameter, 100 mm long with hemispherical ends (issue 9 item 6):
    // at S = 56 of a 400-px scan it covers a few hundred valid positions.
    s.shape = Shape::Cylinder;
    s.a = 0.050;
    s.b = 0.0085;
    s.height = 0.0085;
  }
  Rng rng(seed);
  // Camera and scene (SPEC 1 units: metres; z = distance along the optical axis).
  // Focal length from the shorter side: the object stays in view on non-square images.
  const double f = 2.2 * std::min(W, H), cu = 0.5 * W, cv = 0.5 * H;
  const double D = 0.29 + 0.02 * rng.uniform01();
  const double tx = 0.24 * (rng.uniform01() - 0.5), ty = 0.24 * (rng.uniform01() - 0.5);
  const double yaw = 2 * kPi * rng.uniform01();
  const double scale = 0.9 + 0.2 * rng.uniform01();
  const double ox = 0.016 * (rng.uniform01() - 0.5), oy = 0.016 * (rng.uniform01() - 0.5);
  const double cyaw = std::cos(yaw), syaw = std::sin(yaw);
  const uint64_t tex_seed = mix64(seed ^ 0x7e47);
  const double tex_shift = 0.12 * (rng.uniform01() - 0.5);  // brightness variation
  const std::array<double, 3> plane_col = {0.30 + 0.05 * rng.uniform01(), 0.31, 0.33};
  const Defect d = make_defect(s, defect, scale, rng);
  const bool geometry_shades = defect == "bump" || defect == "crack" || defect == "cut";

  const int64_t N = int64_t(W) * H;
  std::vector<double> zshade(static_cast<size_t>(N)), zgeo(static_cast<size_t>(N));
  std::vector<double> above(static_cast<size_t>(N));  // height above the support plane
  std::vector<std::array<double, 3>> albedo(static_cast<size_t>(N));
  SynthSample out;
  out.gt = Image8(W, H, 1, 0);
  for (int v = 0; v < H; ++v)
    for (int u = 0; u < W; ++u) {
      const int64_t i = int64_t(v) * W + u;
      const double xr = (u + 0.5 - cu) / f, yr = (v + 0.5 - cv) / f;
      // Ray/plane intersection: Z = D + tx·X + ty·Y with X = Z·xr, Y = Z·yr.
      const double zp = D / (1 - tx * xr - ty * yr);
      const double X = zp * xr, Y = zp * yr;
      // Object-local coordinates (the object's height field is defined in ray space: the
      // point stays on its pixel's ray, so rgb and xyz are pixel-aligned by construction).
      const double px = (X - ox) / scale, py = (Y - oy) / scale;
      const double lx = cyaw * px + syaw * py, ly = -syaw * px + cyaw * py;
      const double hb = shape_height(s, lx, ly) * scale;
      Effect e;
      if (hb > 0) e = defect_effect(d, lx, ly);
      const double hd = std::max(0.0, hb + e.dh * scale);
      zgeo[size_t(i)] = zp - hd;
      above[size_t(i)] = hd;
      zshade[size_t(i)] = zp - (geometry_shades ? hd : hb);
      std::array<double, 3> col;
      if (hb > 0) {
        const double n1 = fbm(tex_seed, lx * s.texture_freq * 0.25, ly * s.texture_freq * 0.25);
        const double stripes =
            0.5 +
            0.5 * std::sin(lx * s.texture_freq + 6 * value_noise(tex_seed + 9, lx * 60, ly * 60));
        const double m = std::clamp(0.35 * stripes + 0.65 * n1, 0.0, 1.0);
        for (int c = 0; c < 3; ++c)
          col[size_t(c)] = (s.color[size_t(c)] * (1 - m) + s.color2[size_t(c)] * m) + tex_shift;
        if (e.paint > 0)
          for (int c = 0; c < 3; ++c)
            col[size_t(c)] = col[size_t(c)] * (1 - e.paint) + d.tint[size_t(c)] * e.paint;
        if (e.mask) out.gt.data[size_t(i)] = 255;
      } else {
        const double n1 = fbm(tex_seed + 77, X * 300, Y * 300);
        for (int c = 0; c < 3; ++c) col[size_t(c)] = plane_col[size_t(c)] * (0.85 + 0.3 * n1);
      }
      albedo[size_t(i)] = col;
    }

  // Shading from the (appearance-relevant) geometry: Lambert with a light above-left of the
  // camera, normals from central differences of the organized points.
  const double lnorm = std::sqrt(0.3 * 0.3 + 0.4 * 0.4 + 1.0);
  const double L[3] = {-0.3 / lnorm, -0.4 / lnorm, -1.0 / lnorm};
  auto point = [&](int uu, int vv, const std::vector<double>& z) {
    uu = std::clamp(uu, 0, W - 1), vv = std::clamp(vv, 0, H - 1);
    const double zz = z[size_t(int64_t(vv) * W + uu)];
    return std::array<double, 3>{zz * (uu + 0.5 - cu) / f, zz * (vv + 0.5 - cu) / f, zz};
  };
  out.rgb = Image8(W, H, 3);
  out.xyz = Tensor::empty({H, W, 3});
  float* xyz = out.xyz.data();
  Rng noise(mix64(seed ^ 0x5e45));
  for (int v = 0; v < H; ++v)
    for (int u = 0; u < W; ++u) {
      const int64_t i = int64_t(v) * W + u;
      const auto a = point(u + 1, v, zshade), b = point(u - 1, v, zshade);
      const auto c = point(u, v + 1, zshade), e = point(u, v - 1, zshade);
      const double du[3] = {a[0] - b[0], a[1] - b[1], a[2] - b[2]};
      const double dv[3] = {c[0] - e[0], c[1] - e[1], c[2] - e[2]};
      double n[3] = {du[1] * dv[2] - du[2] * dv[1], du[2] * dv[0] - du[0] * dv[2],
                     du[0] * dv[1] - du[1] * dv[0]};
      const double nl = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]) + 1e-30;
      // |n·L|: the normal's orientation does not matter for a surface facing the camera.
      const double ndl = std::abs(n[0] * L[0] + n[1] * L[1] + n[2] * L[2]) / nl;
      const double shade = 0.35 + 0.75 * ndl;
      for (int k = 0; k < 3; ++k)
        out.rgb.data[size_t(i * 3 + k)] =
            to_u8(albedo[size_t(i)][size_t(k)] * shade + 0.012 * noise.normal());
      // Cloud: the geometric surface + sensor noise; dropouts as exact zeros.
      const double z = zgeo[size_t(i)] + 0.00012 * noise.normal();
      const auto p = point(u, v, zgeo);
      const bool steep = std::abs(point(u + 1, v, zgeo)[2] - p[2]) > 0.006 ||
                         std::abs(point(u, v + 1, zgeo)[2] - p[2]) > 0.006;
      // Both draws always happen, so the noise stream (and the rgb noise of later pixels)
      // does not depend on the geometry: a geometry-only defect leaves rgb bit-identical.
      const double r1 = noise.uniform01(), r2 = noise.uniform01();
      // remove_plane: SPEC 2's plane removal (points within remove_threshold = 5 mm).
      const bool drop =
          r1 < 0.003 || (steep && r2 < 0.5) || (remove_plane && above[size_t(i)] < 0.005);
      float* q = xyz + i * 3;
      if (drop) {
        q[0] = q[1] = q[2] = 0.0f;
      } else {
        q[0] = static_cast<float>(z * (u + 0.5 - cu) / f);
        q[1] = static_cast<float>(z * (v + 0.5 - cu) / f);
        q[2] = static_cast<float>(z);
      }
    }
  return out;
}

SynthSummary synth_dataset(const std::string& out, const SynthOptions& opt) {
  CMDR_CHECK(opt.classes >= 1, "synth: --classes ", opt.classes, " (need ≥ 1)");
  CMDR_CHECK(opt.size >= 16 && opt.size <= 4096, "synth: --size ", opt.size, " (need 16..4096)");
  CMDR_CHECK(opt.height == 0 || (opt.height >= 16 && opt.height <= 4096), "synth: --height ",
             opt.height, " (need 16..4096, or 0 for square)");
  CMDR_CHECK(opt.train >= 1, "synth: --train ", opt.train, " (need ≥ 1)");
  CMDR_CHECK(opt.validation >= 0 && opt.test_good >= 0 && opt.test_defect >= 0,
             "synth: negative sample count");
  CMDR_CHECK(opt.test_good + opt.test_defect >= 1, "synth: no test samples requested");
  std::error_code ec;
  if (fs::exists(out, ec)) {
    CMDR_CHECK(fs::is_directory(out, ec), "synth: --out ", out, " exists and is not a directory");
    if (!fs::is_empty(out, ec) && !opt.force)
      fail("synth: --out ", out, " is not empty (use --force to write into it)");
  }
  const auto t0 = std::chrono::steady_clock::now();
  struct Task {
    int cls;
    std::string split, defect;
    int index;  // file number inside its folder
    uint64_t seed;
  };
  std::vector<Task> tasks;
  SynthSummary sum;
  const auto& types = synth_defect_types();
  for (int k = 0; k < opt.classes; ++k) {
    const std::string name = synth_class_name(k);
    sum.classes.push_back(name);
    const fs::path cdir = fs::path(out) / name;
    // --force: replace this class's folders only (nothing else in `out` is touched).
    for (const char* split : {"train", "validation", "test"}) fs::remove_all(cdir / split, ec);
    auto add = [&](const std::string& split, const std::string& defect, int n, uint64_t salt) {
      for (int i = 0; i < n; ++i)
        tasks.push_back(
            {k, split, defect, i,
             mix64(mix64(mix64(opt.seed) ^ uint64_t(k)) ^ (salt * 1000003 + uint64_t(i)))});
    };
    add("train", "good", opt.train, 1);
    add("validation", "good", opt.validation, 2);
    add("test", "good", opt.test_good, 3);
    std::vector<int> per_type(types.size(), 0);
    for (int i = 0; i < opt.test_defect; ++i) per_type[size_t(i) % types.size()]++;
    for (size_t t = 0; t < types.size(); ++t) add("test", types[t], per_type[t], 10 + t);
    // Folders first (gt only in test, as MVTec).
    for (const auto& task : tasks) {
      if (task.cls != k) continue;
      const fs::path dir = cdir / task.split / task.defect;
      fs::create_directories(dir / "rgb");
      fs::create_directories(dir / "xyz");
      if (task.split == "test") fs::create_directories(dir / "gt");
    }
  }
  std::vector<std::string> errors(tasks.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < int64_t(tasks.size()); ++t) {
    const Task& task = tasks[size_t(t)];
    try {
      const SynthSample s = synth_sample(task.cls, task.defect, task.seed, opt.size, opt.height,
                                         opt.thin_rod, opt.remove_plane);
      char stem[16];
      std::snprintf(stem, sizeof stem, "%03d", task.index);
      const fs::path dir = fs::path(out) / synth_class_name(task.cls) / task.split / task.defect;
      write_png((dir / "rgb" / (std::string(stem) + ".png")).string(), s.rgb);
      write_xyz_tiff((dir / "xyz" / (std::string(stem) + ".tiff")).string(), s.xyz);
      if (task.split == "test")
        write_png((dir / "gt" / (std::string(stem) + ".png")).string(), s.gt);
    } catch (const std::exception& e) {
      errors[size_t(t)] = e.what();
    }
  }
  for (const std::string& e : errors)
    if (!e.empty()) fail("synth: ", e);
  for (const auto& task : tasks) sum.files += task.split == "test" ? 3 : 2;
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return sum;
}

}  // namespace cmdr::io
