#include "io/transforms.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/error.hpp"

namespace cmdr::io {

Image8 pad_square_edge(const Image8& img) {
  CMDR_CHECK(img.width > 0 && img.height > 0, "pad_square_edge: empty image ", img.width, "x",
             img.height);
  const int64_t S = std::max(img.width, img.height);
  const int64_t left = (S - img.width) / 2, top = (S - img.height) / 2;
  Image8 out(S, S, img.channels);
  const int64_t C = img.channels;
  for (int64_t y = 0; y < S; ++y) {
    const int64_t sy = std::clamp<int64_t>(y - top, 0, img.height - 1);
    for (int64_t x = 0; x < S; ++x) {
      const int64_t sx = std::clamp<int64_t>(x - left, 0, img.width - 1);
      for (int64_t c = 0; c < C; ++c) out.at(y, x, c) = img.at(sy, sx, c);
    }
  }
  return out;
}

namespace {

// Pillow's bicubic kernel with a = -0.5 (Resample.c), evaluated in double.
double bicubic_kernel(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's 8-bit fixed point

// Per output pixel: first source index, tap count and `ksize` fixed-point weights.
struct Coeffs {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> k;
};

// Pillow precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size).
Coeffs bicubic_coeffs(int64_t in_size, int64_t out_size) {
  const double support_base = 2.0;
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = scale < 1.0 ? 1.0 : scale;  // antialias only when shrinking
  const double support = support_base * filterscale;
  Coeffs c;
  c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  c.first.resize(size_t(out_size));
  c.count.resize(size_t(out_size));
  c.k.assign(size_t(out_size * c.ksize), 0);
  std::vector<double> w(size_t(c.ksize));
  for (int64_t xx = 0; xx < out_size; ++xx) {
    const double center = (static_cast<double>(xx) + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    // Pillow truncates with a C cast (toward zero); values are ≥ -support + 0.5 here.
    int64_t xmin = static_cast<int64_t>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int64_t xmax = static_cast<int64_t>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      const double v = bicubic_kernel((static_cast<double>(x + xmin) - center + 0.5) * ss);
      w[size_t(x)] = v;
      ww += v;
    }
    for (int64_t x = 0; x < xmax; ++x) {
      double v = w[size_t(x)];
      if (ww != 0.0) v /= ww;
      // Round half away from zero into fixed point, as normalize_coeffs_8bpc does.
      const double f = v * static_cast<double>(1 << kPrecisionBits);
      c.k[size_t(xx * c.ksize + x)] = static_cast<int32_t>(v < 0 ? -0.5 + f : 0.5 + f);
    }
    c.first[size_t(xx)] = xmin;
    c.count[size_t(xx)] = xmax;
  }
  return c;
}

inline uint8_t clip8(int64_t v) {
  if (v >= (int64_t(1) << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

}  // namespace

Image8 resize_bicubic(const Image8& img, int64_t out_w, int64_t out_h) {
  CMDR_CHECK(img.width > 0 && img.height > 0 && out_w > 0 && out_h > 0,
             "resize_bicubic: cannot resize ", img.width, "x", img.height, " to ", out_w, "x",
             out_h);
  if (out_w == img.width && out_h == img.height) return img;  // Pillow copies
  const int64_t C = img.channels;
  const bool need_h = out_w != img.width, need_v = out_h != img.height;
  const Coeffs ch = bicubic_coeffs(img.width, out_w);
  const Coeffs cv = bicubic_coeffs(img.height, out_h);
  // Rows of the source the vertical pass needs (Pillow's ybox_first/last).
  const int64_t y_first = cv.first[0];
  const int64_t y_last = cv.first[size_t(out_h - 1)] + cv.count[size_t(out_h - 1)];

  // Horizontal pass into an 8-bit intermediate of rows [y_first, y_last).
  Image8 tmp;
  int64_t row0 = 0;  // source row of tmp's row 0
  if (need_h) {
    tmp = Image8(out_w, y_last - y_first, C);
    row0 = y_first;
#pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < tmp.height; ++y) {
      const uint8_t* src = &img.data[size_t((y + y_first) * img.width * C)];
      uint8_t* dst = &tmp.data[size_t(y * out_w * C)];
      for (int64_t xx = 0; xx < out_w; ++xx) {
        const int32_t* k = &ch.k[size_t(xx * ch.ksize)];
        const int64_t x0 = ch.first[size_t(xx)], n = ch.count[size_t(xx)];
        for (int64_t c = 0; c < C; ++c) {
          int64_t ss = int64_t(1) << (kPrecisionBits - 1);
          for (int64_t x = 0; x < n; ++x) ss += int64_t(src[(x0 + x) * C + c]) * k[x];
          dst[xx * C + c] = clip8(ss);
        }
      }
    }
  } else {
    tmp = img;
  }
  if (!need_v) return tmp;

  Image8 out(out_w, out_h, C);
  const int64_t rowlen = out_w * C;
#pragma omp parallel for schedule(static)
  for (int64_t yy = 0; yy < out_h; ++yy) {
    const int32_t* k = &cv.k[size_t(yy * cv.ksize)];
    const int64_t y0 = cv.first[size_t(yy)] - row0, n = cv.count[size_t(yy)];
    uint8_t* dst = &out.data[size_t(yy * rowlen)];
    for (int64_t i = 0; i < rowlen; ++i) {
      int64_t ss = int64_t(1) << (kPrecisionBits - 1);
      for (int64_t y = 0; y < n; ++y) ss += int64_t(tmp.data[size_t((y0 + y) * rowlen + i)]) * k[y];
      dst[i] = clip8(ss);
    }
  }
  return out;
}

namespace {
// Pillow ImagingScaleAffine's table: position accumulated by repeated addition in double,
// COORD(v) = v < 0 ? -1 : (int)v.
std::vector<int64_t> pillow_nearest_indices(int64_t in_size, int64_t out_size) {
  const double a = static_cast<double>(in_size) / static_cast<double>(out_size);
  std::vector<int64_t> idx(static_cast<size_t>(out_size));
  double xo = a * 0.5;
  for (int64_t x = 0; x < out_size; ++x) {
    int64_t xin = xo < 0.0 ? -1 : static_cast<int64_t>(xo);
    // Pillow leaves out-of-range positions unwritten (never happens for box = full image).
    idx[size_t(x)] = std::clamp<int64_t>(xin, 0, in_size - 1);
    xo += a;
  }
  return idx;
}
}  // namespace

Image8 resize_nearest(const Image8& img, int64_t out_w, int64_t out_h) {
  CMDR_CHECK(img.width > 0 && img.height > 0 && out_w > 0 && out_h > 0,
             "resize_nearest: cannot resize ", img.width, "x", img.height, " to ", out_w, "x",
             out_h);
  if (out_w == img.width && out_h == img.height) return img;
  const std::vector<int64_t> xs = pillow_nearest_indices(img.width, out_w);
  const std::vector<int64_t> ys = pillow_nearest_indices(img.height, out_h);
  const int64_t C = img.channels;
  Image8 out(out_w, out_h, C);
  for (int64_t y = 0; y < out_h; ++y)
    for (int64_t x = 0; x < out_w; ++x)
      for (int64_t c = 0; c < C; ++c) out.at(y, x, c) = img.at(ys[size_t(y)], xs[size_t(x)], c);
  return out;
}

Tensor to_normalized_tensor(const Image8& rgb) {
  CMDR_CHECK(rgb.channels == 3, "to_normalized_tensor: expected an RGB image, got ", rgb.channels,
             " channel(s)");
  // SPEC 3.1 ImageNet statistics.
  const float mean[3] = {0.485f, 0.456f, 0.406f};
  const float stdv[3] = {0.229f, 0.224f, 0.225f};
  const int64_t H = rgb.height, W = rgb.width;
  Tensor t = Tensor::empty({3, H, W});
  float* d = t.data();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < H * W; ++i) {
      // As torchvision: ToTensor divides by 255 in float32, Normalize subtracts then divides.
      const float v = static_cast<float>(rgb.data[size_t(i * 3 + c)]) / 255.0f;
      d[c * H * W + i] = (v - mean[c]) / stdv[c];
    }
  return t;
}

Tensor rgb_transform(const Image8& rgb, int64_t side) {
  return to_normalized_tensor(resize_bicubic(pad_square_edge(rgb), side, side));
}

std::vector<int64_t> torch_nearest_indices(int64_t in_size, int64_t out_size) {
  std::vector<int64_t> idx(static_cast<size_t>(out_size));
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  for (int64_t d = 0; d < out_size; ++d) {
    if (in_size == out_size)
      idx[size_t(d)] = d;
    else if (out_size == 2 * in_size)
      idx[size_t(d)] = d >> 1;
    else
      idx[size_t(d)] = std::min<int64_t>(
          static_cast<int64_t>(std::floor(static_cast<float>(d) * scale)), in_size - 1);
  }
  return idx;
}

Tensor cloud_transform(const Tensor& hw3, int64_t side) {
  CMDR_CHECK(hw3.dim() == 3 && hw3.size(2) == 3 && hw3.size(0) > 0 && hw3.size(1) > 0,
             "cloud_transform: expected an H×W×3 organized cloud, got ", hw3.str());
  CMDR_CHECK(side > 0, "cloud_transform: side ", side);
  const Tensor c = hw3.contiguous();
  const int64_t H = c.size(0), W = c.size(1);
  const std::vector<int64_t> ys = torch_nearest_indices(H, side),
                             xs = torch_nearest_indices(W, side);
  Tensor out = Tensor::empty({3, side, side});
  const float* s = c.data();
  float* d = out.data();
  for (int64_t y = 0; y < side; ++y)
    for (int64_t x = 0; x < side; ++x) {
      const float* p = s + (ys[size_t(y)] * W + xs[size_t(x)]) * 3;
      for (int64_t k = 0; k < 3; ++k) d[(k * side + y) * side + x] = p[k];
    }
  return out;
}

Tensor gt_transform(const Image8& gt, int64_t side) {
  CMDR_CHECK(gt.channels == 1, "gt_transform: expected a gray mask, got ", gt.channels,
             " channel(s)");
  const Image8 r = resize_nearest(pad_square_edge(gt), side, side);
  Tensor out = Tensor::empty({side, side});
  float* d = out.data();
  // > 0.5 of full scale: v/255 > 0.5 ⇔ v ≥ 128.
  for (int64_t i = 0; i < side * side; ++i) d[i] = r.data[size_t(i)] >= 128 ? 1.0f : 0.0f;
  return out;
}

}  // namespace cmdr::io
