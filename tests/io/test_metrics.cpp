// io/metrics vs tools/golden/metrics.py (scikit-learn roc_auc_score and a transcription of
// the MVTec 3D-AD PRO procedure). Agreement required: 1e-6 absolute (SPEC 8 / issue 4).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/rng.hpp"
#include "io/metrics.hpp"
#include "io/safetensors.hpp"

using namespace cmdr;
namespace m = cmdr::metrics;

namespace {
const std::string kDir = std::string(CMDR_FIXTURES) + "/metrics/";

std::vector<uint8_t> u8(const st::File& f, const std::string& name) {
  const auto& ti = f.info(name);
  CHECK(ti.dtype == st::DType::U8);
  const uint8_t* p = f.raw(name);
  return std::vector<uint8_t>(p, p + (ti.end - ti.begin));
}
double meta_d(const st::File& f, const std::string& key) {
  return std::stod(f.metadata().at(key));
}
std::vector<double> meta_list(const st::File& f, const std::string& key) {
  std::istringstream is(f.metadata().at(key));
  std::vector<double> v;
  for (std::string tok; is >> tok;) v.push_back(std::stod(tok));
  return v;
}
}  // namespace

TEST_CASE("metrics: AUROC matches scikit-learn roc_auc_score (random, tied, all-equal, +-0)") {
  st::File f(kDir + "auroc.safetensors");
  for (const char* name : {"cont", "ties", "alleq", "tiny", "signed0"}) {
    CAPTURE(name);
    const Tensor s = f.get(std::string(name) + ".scores");
    const auto y = u8(f, std::string(name) + ".labels");
    const double got = m::auroc(s.data(), y.data(), s.numel());
    const double want = meta_d(f, std::string(name) + ".auroc");
    CHECK(std::abs(got - want) <= 1e-12);  // exact counting vs sklearn's trapezoid: ~1e-16
  }
}

TEST_CASE("metrics: AUROC brute force on random tied inputs, and bad input") {
  Rng rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 50 + trial * 7;
    std::vector<float> s(n);
    std::vector<uint8_t> y(n);
    for (int i = 0; i < n; ++i) {
      s[i] = static_cast<float>(rng.below(5)) - 2.0f;  // heavy ties, negatives
      y[i] = rng.bernoulli(0.4) ? 1 : 0;
    }
    y[0] = 1;
    y[1] = 0;
    double u = 0;
    int64_t np = 0;
    for (int i = 0; i < n; ++i) np += y[i];
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        if (y[i] && !y[j]) u += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
    const double want = u / (static_cast<double>(np) * static_cast<double>(n - np));
    CHECK(std::abs(m::auroc(s.data(), y.data(), n) - want) <= 1e-12);
  }
  std::vector<float> s = {0.1f, 0.2f};
  std::vector<uint8_t> y = {1, 1};
  CHECK_THROWS_AS(m::auroc(s.data(), y.data(), 2), cmdr::Error);
  y = {0, 2};
  CHECK_THROWS_AS(m::auroc(s.data(), y.data(), 2), cmdr::Error);
  y = {0, 1};
  s[0] = std::nanf("");
  CHECK_THROWS_AS(m::auroc(s.data(), y.data(), 2), cmdr::Error);
}

TEST_CASE("metrics: radix sort_floats equals std::sort") {
  Rng rng(3);
  std::vector<float> v(10007);
  for (auto& x : v) x = static_cast<float>(rng.normal() * 1e3);
  v[5] = -0.0f;
  v[6] = 0.0f;
  v[7] = -INFINITY;
  v[8] = INFINITY;
  v[9] = 1e-42f;  // denormal
  std::vector<float> a = v;
  m::sort_floats(a);
  std::sort(v.begin(), v.end());
  CHECK(a == v);
}

TEST_CASE("metrics: 8-connected labelling") {
  // 1 1 0 0 0
  // 0 0 1 0 1      diagonal touch joins {0,1,7}; 9 and 14 join; 20 alone
  // 0 0 0 0 1
  // 0 0 0 0 0
  // 1 0 0 0 0
  const std::vector<uint8_t> mask = {1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0,
                                     0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0};
  std::vector<int32_t> lab(25);
  CHECK(m::label_components8(mask.data(), 5, 5, lab.data()) == 3);
  CHECK(lab[0] == 1);
  CHECK(lab[7] == 1);
  CHECK(lab[9] == 2);
  CHECK(lab[14] == 2);
  CHECK(lab[20] == 3);
  CHECK(lab[2] == 0);
}

TEST_CASE("metrics: PRO curve and AUPRO match the MVTec 3D-AD procedure (99/100 thresholds)") {
  st::File f(kDir + "pro.safetensors");
  for (const char* name : {"rand99", "rand100", "ties99", "ties100", "small99"}) {
    CAPTURE(name);
    const std::string p(name);
    const Tensor maps = f.get(p + ".maps");
    const auto gt = u8(f, p + ".gt");
    const int T = std::stoi(f.metadata().at(p + ".thresholds"));
    const m::ProCurve c =
        m::pro_curve(maps.data(), gt.data(), maps.size(0), maps.size(1), maps.size(2), T);
    const auto fpr = meta_list(f, p + ".fpr"), pro = meta_list(f, p + ".pro");
    REQUIRE(c.fpr.size() == fpr.size());
    double max_err = 0;
    for (std::size_t i = 0; i < fpr.size(); ++i) {
      max_err = std::max(max_err, std::abs(c.fpr[i] - fpr[i]));
      max_err = std::max(max_err, std::abs(c.pro[i] - pro[i]));
    }
    CHECK(max_err <= 1e-12);
    const char* keys[4] = {"0.3", "0.1", "0.05", "0.01"};
    for (int k = 0; k < 4; ++k) {
      CAPTURE(keys[k]);
      const double want = meta_d(f, p + ".aupro." + keys[k]);
      CHECK(std::abs(m::aupro(c, m::kAuproLimits[k]) - want) <= 1e-6);
      CHECK(std::abs(m::aupro(c, m::kAuproLimits[k]) - want) <= 1e-12);
    }
  }
}

TEST_CASE("metrics: evaluate() on a whole class, both protocols, and JSON shape") {
  st::File f(kDir + "cli.safetensors");
  const Tensor pm = f.get("pixel_maps");
  m::Inputs in;
  in.n = pm.size(0);
  in.h = pm.size(1);
  in.w = pm.size(2);
  in.pixel_maps = pm.to_vector();
  in.aupro_maps = f.get("aupro_maps").to_vector();
  for (float g : f.get("gt").to_vector()) in.gt.push_back(static_cast<uint8_t>(g));
  in.image_scores = f.get("image_scores").to_vector();
  for (float l : f.get("labels").to_vector()) in.labels.push_back(static_cast<uint8_t>(l));
  for (const char* proto : {"paper", "mvtec"}) {
    CAPTURE(proto);
    const m::Result r = m::evaluate(in, m::parse_protocol(proto));
    CHECK(std::abs(r.i_auroc - meta_d(f, "expected.i_auroc")) <= 1e-6);
    CHECK(std::abs(r.p_auroc - meta_d(f, "expected.p_auroc")) <= 1e-6);
    const char* keys[4] = {"0.3", "0.1", "0.05", "0.01"};
    for (int k = 0; k < 4; ++k)
      CHECK(std::abs(r.aupro[k] -
                     meta_d(f, std::string("expected.") + proto + ".aupro." + keys[k])) <= 1e-6);
    const auto j = m::to_json(r);
    CHECK(j["protocol"] == proto);
    CHECK(j["aupro"].size() == 4);
    CHECK(j["aupro"]["0.05"].get<double>() == r.aupro[2]);
  }
  // Bad input: gt not 0/1, no positives, shape mismatch.
  m::Inputs bad = in;
  bad.gt[3] = 2;
  CHECK_THROWS_AS(m::evaluate(bad, m::Protocol::Paper), cmdr::Error);
  bad = in;
  std::fill(bad.gt.begin(), bad.gt.end(), 0);
  CHECK_THROWS_AS(m::evaluate(bad, m::Protocol::Paper), cmdr::Error);
  bad = in;
  bad.image_scores.pop_back();
  CHECK_THROWS_AS(m::evaluate(bad, m::Protocol::Paper), cmdr::Error);
  CHECK_THROWS_AS(m::parse_protocol("official"), cmdr::Error);
}
