#pragma once
// Anomaly-detection metrics (SPEC 8): exact AUROC with ties, the PRO curve over 8-connected
// gt components, AUPRO at several FPR limits, and the per-class result object shared by
// `cmdr-iad metrics` and `evaluate`.
//
// Two protocols (every result states which one produced it):
//  - Paper:  maps at S×S (224), per-image normalised by the caller, 99 thresholds.
//  - MVTec:  the official MVTec 3D-AD procedure: maps at the native gt resolution (the caller
//            resizes), no per-image normalisation, image score = map maximum, 100 thresholds.
// The metric code itself differs only in the threshold count; resizing / normalising /
// taking the image score is the caller's job (it knows the data). Limits 0.3 (headline),
// 0.1, 0.05, 0.01 are reported for both.
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cmdr::metrics {

enum class Protocol { Paper, MVTec };
const char* protocol_name(Protocol p);             // "paper" | "mvtec"
Protocol parse_protocol(const std::string& name);  // throws naming the bad value
int protocol_thresholds(Protocol p);               // 99 | 100 (SPEC 8)

// FPR integration limits, in the order they are reported (SPEC 8).
inline constexpr std::array<double, 4> kAuproLimits = {0.3, 0.1, 0.05, 0.01};

// Area under the ROC curve, ties handled as one threshold (= Mann–Whitney U with average
// ranks = scikit-learn roc_auc_score). scores[n], labels[n] in {0,1}. O(n) radix sort per
// class + a merge walk, integer counting: exact up to the final division, deterministic.
// Throws (naming `what`) on NaN scores, labels other than 0/1, or a missing class.
double auroc(const float* scores, const uint8_t* labels, int64_t n, const char* what = "auroc");

// Ascending sort of float32 values (-0 canonicalised to +0) by an LSD radix sort on
// order-preserving integer keys. NaN is an error naming `what`.
void sort_floats(std::vector<float>& v, const char* what = "sort");

// 8-connected component labelling of a binary h×w mask (row-major, nonzero = foreground),
// the same components as scipy.ndimage.label(mask, np.ones((3,3))). labels[h*w] receives
// 0 for background and 1..k in raster order of each component's first pixel. Returns k.
int32_t label_components8(const uint8_t* mask, int64_t h, int64_t w, int32_t* labels);

// PRO curve as the MVTec 3D-AD evaluation code defines it: every gt==0 pixel's score is
// collected and sorted; thresholds sit at positions floor(linspace(0, n-1, T)) of that
// list; at each, FPR = 1 - (pos+1)/n and PRO = mean over all components of the fraction
// of component pixels with score > threshold; plus the point (1, 1). Points are returned
// in increasing-FPR order (the official order, ties included).
struct ProCurve {
  std::vector<double> fpr, pro;
};
// maps, gt: n_img × h × w row-major; gt is 0/1.
ProCurve pro_curve(const float* maps, const uint8_t* gt, int64_t n_img, int64_t h, int64_t w,
                   int num_thresholds);

// Trapezoid integral of y(x) for x ascending, up to x_max (interpolating at x_max when it
// is not a sample), exactly the official `trapezoid(x, y, x_max)` procedure.
double trapezoid(const std::vector<double>& x, const std::vector<double>& y, double x_max);
// trapezoid(curve, limit) / limit.
double aupro(const ProCurve& curve, double limit);

// One class's metrics.
struct Result {
  Protocol protocol = Protocol::Paper;
  double i_auroc = 0, p_auroc = 0;
  std::array<double, 4> aupro{};  // at kAuproLimits
};

// Inputs of one class (all test samples), as `cmdr-iad metrics` reads them:
//   pixel_maps n×h×w (P-AUROC), aupro_maps n×h×w (AUPRO), gt n×h×w (0/1),
//   image_scores n, labels n (0/1).
struct Inputs {
  int64_t n = 0, h = 0, w = 0;
  std::vector<float> pixel_maps, aupro_maps;
  std::vector<uint8_t> gt;
  std::vector<float> image_scores;
  std::vector<uint8_t> labels;
};
// Checks every size, value range and class presence (errors name the tensor and shapes).
void validate(const Inputs& in);
Result evaluate(const Inputs& in, Protocol protocol);

// {"protocol": "paper"|"mvtec", "i_auroc": x, "p_auroc": x,
//  "aupro": {"0.3": x, "0.1": x, "0.05": x, "0.01": x}}
nlohmann::json to_json(const Result& r);
// Human-readable table (percentages, one row per named result plus their mean).
std::string format_table(const std::vector<std::pair<std::string, Result>>& rows);

}  // namespace cmdr::metrics
