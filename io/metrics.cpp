// Metrics (SPEC 8). See metrics.hpp for the protocols; tools/golden/metrics.py is the Python
// transcription (scikit-learn + the MVTec 3D-AD procedure) the tests compare against.
#include "io/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "engine/error.hpp"

namespace cmdr::metrics {

const char* protocol_name(Protocol p) {
  return p == Protocol::Paper ? "paper" : "mvtec";
}

Protocol parse_protocol(const std::string& name) {
  if (name == "paper") return Protocol::Paper;
  if (name == "mvtec") return Protocol::MVTec;
  fail("metrics: unknown protocol '", name, "' (expected 'paper' or 'mvtec')");
}

// SPEC 8: the paper uses 99 thresholds, the official MVTec 3D-AD code 100.
int protocol_thresholds(Protocol p) {
  return p == Protocol::Paper ? 99 : 100;
}

// ---------------------------------------------------------------------------------------
// Radix sort on order-preserving keys.
// A float's bit pattern, with the sign bit flipped for positives and all bits flipped for
// negatives, orders as an unsigned integer exactly like the float (after -0 -> +0).

static inline uint32_t float_key(float f) {
  f += 0.0f;  // -0 -> +0, so that -0 and +0 tie as they compare equal
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static inline float key_float(uint32_t k) {
  uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// LSD radix sort of 32-bit keys, 3 passes of 11 bits; `tmp` is scratch of the same size.
static void radix_sort_keys(std::vector<uint32_t>& keys, std::vector<uint32_t>& tmp) {
  const std::size_t n = keys.size();
  tmp.resize(n);
  constexpr int kBits = 11, kBuckets = 1 << kBits;
  std::vector<std::size_t> count(kBuckets);
  uint32_t* src = keys.data();
  uint32_t* dst = tmp.data();
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass * kBits;
    std::fill(count.begin(), count.end(), 0);
    for (std::size_t i = 0; i < n; ++i) ++count[(src[i] >> shift) & (kBuckets - 1)];
    // Skip a pass where every key falls in one bucket (common for the high bits).
    bool trivial = false;
    for (int b = 0; b < kBuckets; ++b)
      if (count[b] == n) trivial = true;
    if (trivial) continue;
    std::size_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const std::size_t c = count[b];
      count[b] = sum;
      sum += c;
    }
    for (std::size_t i = 0; i < n; ++i) dst[count[(src[i] >> shift) & (kBuckets - 1)]++] = src[i];
    std::swap(src, dst);
  }
  if (src != keys.data()) std::memcpy(keys.data(), src, n * sizeof(uint32_t));
}

void sort_floats(std::vector<float>& v, const char* what) {
  std::vector<uint32_t> keys(v.size()), tmp;
  for (std::size_t i = 0; i < v.size(); ++i) {
    CMDR_CHECK(!std::isnan(v[i]), what, ": score ", i, " is NaN");
    keys[i] = float_key(v[i]);
  }
  radix_sort_keys(keys, tmp);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = key_float(keys[i]);
}

// ---------------------------------------------------------------------------------------
// AUROC: U = sum over (positive, negative) pairs of [s+ > s-] + 1/2 [s+ == s-]; AUROC =
// U / (P N). Each class's scores are sorted separately, then a merge walk over distinct
// values counts, per value, cp * (negatives strictly below) and cp * cn ties. 2U is an
// integer, so the result is exact up to the final division.

double auroc(const float* scores, const uint8_t* labels, int64_t n, const char* what) {
  CMDR_CHECK(n > 0, what, ": no samples");
  std::vector<uint32_t> pos, neg, tmp;
  int64_t np = 0;
  for (int64_t i = 0; i < n; ++i) {
    CMDR_CHECK(labels[i] <= 1, what, ": label ", i, " is ", int(labels[i]), " (expected 0/1)");
    np += labels[i];
  }
  CMDR_CHECK(np > 0 && np < n, what, ": AUROC needs both classes; found ", np, " positive and ",
             n - np, " negative of ", n);
  pos.reserve(np);
  neg.reserve(n - np);
  for (int64_t i = 0; i < n; ++i) {
    CMDR_CHECK(!std::isnan(scores[i]), what, ": score ", i, " is NaN");
    (labels[i] ? pos : neg).push_back(float_key(scores[i]));
  }
  radix_sort_keys(pos, tmp);
  radix_sort_keys(neg, tmp);
  // Walk distinct values in ascending order.
  std::size_t ip = 0, in = 0;
  uint64_t neg_below = 0, twice_u = 0;
  while (ip < pos.size()) {
    const uint32_t k = pos[ip];
    while (in < neg.size() && neg[in] < k) ++in, ++neg_below;
    uint64_t cp = 0, cn = 0;
    while (ip < pos.size() && pos[ip] == k) ++ip, ++cp;
    while (in + cn < neg.size() && neg[in + cn] == k) ++cn;
    twice_u += 2 * cp * neg_below + cp * cn;
  }
  return static_cast<double>(twice_u) /
         (2.0 * static_cast<double>(np) * static_cast<double>(n - np));
}

// ---------------------------------------------------------------------------------------
// 8-connected labelling by flood fill (explicit stack), raster order of first pixels.

int32_t label_components8(const uint8_t* mask, int64_t h, int64_t w, int32_t* labels) {
  const int64_t n = h * w;
  std::fill(labels, labels + n, 0);
  std::vector<int64_t> stack;
  int32_t k = 0;
  for (int64_t start = 0; start < n; ++start) {
    if (!mask[start] || labels[start]) continue;
    ++k;
    labels[start] = k;
    stack.push_back(start);
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      const int64_t y = p / w, x = p % w;
      for (int64_t dy = -1; dy <= 1; ++dy) {
        const int64_t yy = y + dy;
        if (yy < 0 || yy >= h) continue;
        for (int64_t dx = -1; dx <= 1; ++dx) {
          const int64_t xx = x + dx;
          if (xx < 0 || xx >= w) continue;
          const int64_t q = yy * w + xx;
          if (mask[q] && !labels[q]) {
            labels[q] = k;
            stack.push_back(q);
          }
        }
      }
    }
  }
  return k;
}

// ---------------------------------------------------------------------------------------
// PRO curve. Instead of one sorted score list per component (the official code), each
// component pixel is binned by how many thresholds lie strictly below its score: the pixel
// is "above" threshold k exactly when k < that count. Same numbers, O(P log T).

ProCurve pro_curve(const float* maps, const uint8_t* gt, int64_t n_img, int64_t h, int64_t w,
                   int num_thresholds) {
  CMDR_CHECK(n_img > 0 && h > 0 && w > 0, "pro_curve: empty input ", n_img, "x", h, "x", w);
  CMDR_CHECK(num_thresholds >= 2, "pro_curve: num_thresholds ", num_thresholds, " < 2");
  const int64_t hw = h * w;
  std::vector<float> ok;
  ok.reserve(static_cast<std::size_t>(n_img * hw));
  std::vector<int32_t> lab(hw);
  std::vector<std::vector<float>> comp_scores;  // per component, unsorted
  for (int64_t i = 0; i < n_img; ++i) {
    const uint8_t* g = gt + i * hw;
    const float* m = maps + i * hw;
    const int32_t k = label_components8(g, h, w, lab.data());
    const std::size_t base = comp_scores.size();
    comp_scores.resize(base + k);
    for (int64_t p = 0; p < hw; ++p) {
      CMDR_CHECK(!std::isnan(m[p]), "pro_curve: score of image ", i, " pixel ", p, " is NaN");
      if (lab[p] == 0)
        ok.push_back(m[p]);
      else
        comp_scores[base + lab[p] - 1].push_back(m[p]);
    }
  }
  CMDR_CHECK(!comp_scores.empty(), "pro_curve: the gt maps have no defect pixels");
  CMDR_CHECK(!ok.empty(), "pro_curve: the gt maps have no defect-free pixels");
  sort_floats(ok, "pro_curve");
  const int64_t n_ok = static_cast<int64_t>(ok.size());

  // numpy.linspace(0, n_ok - 1, T, dtype=int): i * step in double, last = stop, truncated.
  const int T = num_thresholds;
  std::vector<int64_t> positions(T);
  const double step = static_cast<double>(n_ok - 1) / static_cast<double>(T - 1);
  for (int i = 0; i < T; ++i) {
    const double yv = (i == T - 1)  ? static_cast<double>(n_ok - 1)
                      : step == 0.0 ? 0.0
                                    : static_cast<double>(i) * step;
    positions[i] = static_cast<int64_t>(yv);
  }
  std::vector<float> thr(T);
  for (int i = 0; i < T; ++i) thr[i] = ok[positions[i]];

  // pro_sum[k]: sum over components of their overlap at threshold k, in component order.
  std::vector<double> pro_sum(T, 0.0);
  std::vector<int64_t> hist(T + 1);
  for (const auto& cs : comp_scores) {
    std::fill(hist.begin(), hist.end(), 0);
    for (float s : cs) hist[std::lower_bound(thr.begin(), thr.end(), s) - thr.begin()]++;
    // above[k] = number of pixels with bin > k.
    int64_t above = static_cast<int64_t>(cs.size()) - hist[0];
    const double len = static_cast<double>(cs.size());
    for (int k = 0; k < T; ++k) {
      const int64_t at_or_below = static_cast<int64_t>(cs.size()) - above;
      pro_sum[k] += 1.0 - static_cast<double>(at_or_below) / len;
      above -= hist[k + 1];
    }
  }
  ProCurve c;
  c.fpr.reserve(T + 1);
  c.pro.reserve(T + 1);
  const double ncomp = static_cast<double>(comp_scores.size());
  // Official order: (1,1) then thresholds ascending (FPR descending), then reversed.
  for (int k = T - 1; k >= 0; --k) {
    c.fpr.push_back(1.0 - static_cast<double>(positions[k] + 1) / static_cast<double>(n_ok));
    c.pro.push_back(pro_sum[k] / ncomp);
  }
  c.fpr.push_back(1.0);
  c.pro.push_back(1.0);
  return c;
}

double trapezoid(const std::vector<double>& x_in, const std::vector<double>& y_in, double x_max) {
  CMDR_CHECK(x_in.size() == y_in.size(), "trapezoid: ", x_in.size(), " x vs ", y_in.size(), " y");
  std::vector<double> x, y;  // finite points only, as the official code does
  for (std::size_t i = 0; i < x_in.size(); ++i)
    if (std::isfinite(x_in[i]) && std::isfinite(y_in[i])) {
      x.push_back(x_in[i]);
      y.push_back(y_in[i]);
    }
  double correction = 0.0;
  if (std::find(x.begin(), x.end(), x_max) == x.end()) {
    const std::size_t ins = std::upper_bound(x.begin(), x.end(), x_max) - x.begin();  // bisect
    CMDR_CHECK(ins > 0 && ins < x.size(), "trapezoid: limit ", x_max, " outside the curve");
    const double y_interp =
        y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]));
    correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1]);
  }
  double area = 0.0;
  std::size_t last = x.size();  // first index with x > x_max (x ascending)
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!(x[i] <= x_max)) {
      last = i;
      break;
    }
  for (std::size_t i = 1; i < last; ++i) area += 0.5 * (y[i] + y[i - 1]) * (x[i] - x[i - 1]);
  return area + correction;
}

double aupro(const ProCurve& curve, double limit) {
  CMDR_CHECK(limit > 0.0 && limit <= 1.0, "aupro: limit ", limit, " outside (0, 1]");
  return trapezoid(curve.fpr, curve.pro, limit) / limit;
}

// ---------------------------------------------------------------------------------------

void validate(const Inputs& in) {
  CMDR_CHECK(in.n > 0 && in.h > 0 && in.w > 0, "metrics: empty maps (", in.n, " x ", in.h, " x ",
             in.w, ")");
  const std::size_t px = static_cast<std::size_t>(in.n * in.h * in.w);
  CMDR_CHECK(in.pixel_maps.size() == px, "metrics: pixel_maps has ", in.pixel_maps.size(),
             " values, expected ", px);
  CMDR_CHECK(in.aupro_maps.size() == px, "metrics: aupro_maps has ", in.aupro_maps.size(),
             " values, expected ", px);
  CMDR_CHECK(in.gt.size() == px, "metrics: gt has ", in.gt.size(), " values, expected ", px);
  CMDR_CHECK(in.image_scores.size() == static_cast<std::size_t>(in.n), "metrics: image_scores has ",
             in.image_scores.size(), " values, expected ", in.n);
  CMDR_CHECK(in.labels.size() == static_cast<std::size_t>(in.n), "metrics: labels has ",
             in.labels.size(), " values, expected ", in.n);
  int64_t gpos = 0, lpos = 0;
  for (std::size_t i = 0; i < px; ++i) {
    CMDR_CHECK(in.gt[i] <= 1, "metrics: gt value ", int(in.gt[i]), " at ", i, " (expected 0/1)");
    gpos += in.gt[i];
    CMDR_CHECK(std::isfinite(in.pixel_maps[i]), "metrics: pixel_maps value at ", i,
               " is not finite");
    CMDR_CHECK(std::isfinite(in.aupro_maps[i]), "metrics: aupro_maps value at ", i,
               " is not finite");
  }
  for (int64_t i = 0; i < in.n; ++i) {
    CMDR_CHECK(in.labels[i] <= 1, "metrics: label ", int(in.labels[i]), " of image ", i,
               " (expected 0/1)");
    lpos += in.labels[i];
    CMDR_CHECK(std::isfinite(in.image_scores[i]), "metrics: image_scores[", i, "] is not finite");
  }
  CMDR_CHECK(gpos > 0, "metrics: gt has no defect pixels (P-AUROC/AUPRO undefined)");
  CMDR_CHECK(gpos < static_cast<int64_t>(px), "metrics: gt has no defect-free pixels");
  CMDR_CHECK(lpos > 0, "metrics: labels has no anomalous image (I-AUROC undefined)");
  CMDR_CHECK(lpos < in.n, "metrics: labels has no good image (I-AUROC undefined)");
}

Result evaluate(const Inputs& in, Protocol protocol) {
  validate(in);
  Result r;
  r.protocol = protocol;
  r.i_auroc = auroc(in.image_scores.data(), in.labels.data(), in.n, "metrics: I-AUROC");
  r.p_auroc = auroc(in.pixel_maps.data(), in.gt.data(), in.n * in.h * in.w, "metrics: P-AUROC");
  const ProCurve c = pro_curve(in.aupro_maps.data(), in.gt.data(), in.n, in.h, in.w,
                               protocol_thresholds(protocol));
  for (std::size_t i = 0; i < kAuproLimits.size(); ++i) r.aupro[i] = aupro(c, kAuproLimits[i]);
  return r;
}

nlohmann::json to_json(const Result& r) {
  nlohmann::json j;
  j["protocol"] = protocol_name(r.protocol);
  j["i_auroc"] = r.i_auroc;
  j["p_auroc"] = r.p_auroc;
  nlohmann::json a;
  const char* keys[4] = {"0.3", "0.1", "0.05", "0.01"};
  for (int i = 0; i < 4; ++i) a[keys[i]] = r.aupro[i];
  j["aupro"] = a;
  return j;
}

std::string format_table(const std::vector<std::pair<std::string, Result>>& rows) {
  std::ostringstream os;
  char buf[256];
  const char* proto = rows.empty() ? "paper" : protocol_name(rows.front().second.protocol);
  os << "protocol: " << proto
     << (rows.empty() || rows.front().second.protocol == Protocol::Paper
             ? " (S x S maps, per-image normalised, 99 thresholds)\n"
             : " (official MVTec 3D-AD: native gt resolution, raw maps, 100 thresholds)\n");
  std::snprintf(buf, sizeof buf, "%-14s %8s %8s %9s %9s %9s %9s\n", "class", "I-AUROC", "P-AUROC",
                "AUPRO@30", "AUPRO@10", "AUPRO@5", "AUPRO@1");
  os << buf;
  auto line = [&](const std::string& name, double ia, double pa, const std::array<double, 4>& ap) {
    std::snprintf(buf, sizeof buf, "%-14s %8.2f %8.2f %9.2f %9.2f %9.2f %9.2f\n", name.c_str(),
                  100 * ia, 100 * pa, 100 * ap[0], 100 * ap[1], 100 * ap[2], 100 * ap[3]);
    os << buf;
  };
  double mi = 0, mp = 0;
  std::array<double, 4> ma{};
  for (const auto& [name, r] : rows) {
    line(name, r.i_auroc, r.p_auroc, r.aupro);
    mi += r.i_auroc;
    mp += r.p_auroc;
    for (int i = 0; i < 4; ++i) ma[i] += r.aupro[i];
  }
  if (rows.size() > 1) {
    const double k = static_cast<double>(rows.size());
    for (auto& v : ma) v /= k;
    line("mean", mi / k, mp / k, ma);
  }
  return os.str();
}

}  // namespace cmdr::metrics
