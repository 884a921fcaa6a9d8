// Issue 9 items 1-4 and 7: verdicts that cannot pass silently. Library level (judge, per-mode
// thresholds, size check, evaluate's counts) and the real cmdr-iad binary (detect --dir over
// a folder with a truncated PNG, a missing pair and an upper-case extension; a NaN-weight
// checkpoint; exit status and labels of docs/cli.md; overwrite and CLI-mistake messages).
// One tiny class is trained once (S = 16, tiny random extractors) and shared by the cases.
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/error.hpp"
#include "io/image.hpp"
#include "io/synth.hpp"
#include "io/tiff.hpp"
#include "models/checkpoint.hpp"
#include "models/workflow.hpp"
#include "tests/apps/tiny_extractors.hpp"
#include "tests/io/tmpdir.hpp"

using namespace cmdr;
using namespace cmdr::models;
namespace fs = std::filesystem;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// One trained tiny 2d3d class, shared by the test cases (training costs seconds).
struct Trained {
  testing::TempDir tmp;
  std::string data, cls, ckpt;
  Extractors ex;
};

const Trained& trained() {
  static Trained* t = [] {
    auto* r = new Trained;
    io::SynthOptions so;
    so.classes = 1;
    so.size = 48;
    so.train = 3;
    so.validation = 2;
    so.test_good = 2;
    so.test_defect = 2;
    so.seed = 5;
    r->data = r->tmp.file("data");
    r->cls = io::synth_dataset(r->data, so).classes.at(0);
    const auto [rgbw, xyzw] = testing::tiny_extractors(r->tmp.path.string());
    ExtractorOptions eo;
    eo.num_group = 16;
    eo.group_size = 8;
    r->ex = load_extractors(rgbw, xyzw, eo, true);
    TrainJob job;
    job.data = r->data;
    job.cls = r->cls;
    job.out = r->tmp.file("ckpt.safetensors");
    job.side = 16;
    job.epochs = 1;
    job.seed = 4;
    job.quiet = true;
    train_class(job, r->ex);
    r->ckpt = job.out;
    return r;
  }();
  return *t;
}

LoadedCheckpoint load(const std::string& path) {
  LoadOptions lo;
  lo.quiet = true;
  return load_checkpoint(path, lo);
}

ScoredSample fake_scored(float score, Mode model_mode, Mode used, bool nan_in_map = false) {
  ScoredSample r;
  r.model_mode = model_mode;
  r.mode_used = used;
  r.out.fusion.image_score = score;
  r.out.fusion.fused = Tensor::zeros({4, 4});
  if (nan_in_map) r.out.fusion.fused.data()[5] = kNaN;
  return r;
}

// Runs the cmdr-iad binary; returns its exit status, stdout and stderr.
struct Run {
  int status = -1;
  std::string out, err;
  std::vector<nlohmann::json> lines() const {
    std::vector<nlohmann::json> v;
    std::istringstream is(out);
    std::string l;
    while (std::getline(is, l)) {
      if (!l.empty() && l[0] == '{') v.push_back(nlohmann::json::parse(l));
    }
    return v;
  }
};

std::string slurp_text(const std::string& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

Run cli(const std::string& args) {
  const testing::TempDir io;
  const std::string o = io.file("out"), e = io.file("err");
  // CMDR_CLI overrides the binary (e.g. to run these cases against another build).
  const char* env = std::getenv("CMDR_CLI");
  const std::string cmd =
      std::string(env ? env : CMDR_CLI_BINARY) + " --threads 2 " + args + " > " + o + " 2> " + e;
  const int st = std::system(cmd.c_str());
  Run r;
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp_text(o);
  r.err = slurp_text(e);
  return r;
}

std::string q(const std::string& s) {
  return "'" + s + "'";
}

const nlohmann::json* line_of(const std::vector<nlohmann::json>& v, const std::string& stem) {
  for (const auto& j : v) {
    const std::string s = j.at("sample").get<std::string>();
    if (fs::path(s).stem().string() == stem) return &j;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("verdicts: a score that cannot be computed is ERROR, never OK") {
  CheckpointMeta meta;
  meta.mode = Mode::Fused2D3D;
  meta.threshold = 1.0f;
  CHECK(judge(fake_scored(0.5f, Mode::Fused2D3D, Mode::Fused2D3D), meta, kNaN).verdict ==
        Verdict::Ok);
  CHECK(judge(fake_scored(1.5f, Mode::Fused2D3D, Mode::Fused2D3D), meta, kNaN).verdict ==
        Verdict::Nok);
  for (const float bad : {kNaN, INFINITY, -INFINITY}) {
    const Judgement j = judge(fake_scored(bad, Mode::Fused2D3D, Mode::Fused2D3D), meta, kNaN);
    CHECK(j.verdict == Verdict::Error);
    CHECK(j.error.find("not computable") != std::string::npos);
  }
  // A NaN inside the map does not reach the max-based score: still ERROR.
  CHECK(judge(fake_scored(0.5f, Mode::Fused2D3D, Mode::Fused2D3D, true), meta, kNaN).verdict ==
        Verdict::Error);
  // No threshold: UNKNOWN, not OK.
  meta.threshold = kNaN;
  CHECK(judge(fake_scored(0.5f, Mode::Fused2D3D, Mode::Fused2D3D), meta, kNaN).verdict ==
        Verdict::Unknown);
  CHECK(judge(fake_scored(0.5f, Mode::Fused2D3D, Mode::Fused2D3D), meta, 0.25f).verdict ==
        Verdict::Nok);
  CHECK(std::string(verdict_name(Verdict::Error)) == "ERROR");
}

TEST_CASE("verdicts: fallback samples use their own mode's threshold, else UNKNOWN") {
  CheckpointMeta meta;
  meta.mode = Mode::Fused2D3D;
  meta.threshold = 10.0f;
  const ScoredSample two_d = fake_scored(2.0f, Mode::Fused2D3D, Mode::Only2D);
  CHECK(two_d.fallback());
  // An old checkpoint (no per-mode thresholds): the 2d3d threshold does not apply.
  Judgement j = judge(two_d, meta, kNaN);
  CHECK(j.verdict == Verdict::Unknown);
  CHECK(j.threshold_source.find("no threshold for 2d") != std::string::npos);
  // --threshold is for the checkpoint's mode only.
  CHECK(judge(two_d, meta, 1.0f).verdict == Verdict::Unknown);
  meta.fallback_thresholds["2d"] = 1.5f;
  j = judge(two_d, meta, kNaN);
  CHECK(j.verdict == Verdict::Nok);
  CHECK(j.threshold == 1.5f);
  CHECK(j.threshold_source == "checkpoint (2d fallback)");
  CHECK(judge(fake_scored(2.0f, Mode::Fused2D3D, Mode::Only3D), meta, kNaN).verdict ==
        Verdict::Unknown);
}

TEST_CASE("verdicts: training stores per-mode thresholds; fallback samples are judged by them") {
  const Trained& t = trained();
  const LoadedCheckpoint ck = load(t.ckpt);
  REQUIRE(ck.meta.fallback_thresholds.count("2d") == 1);
  REQUIRE(ck.meta.fallback_thresholds.count("3d") == 1);
  CHECK(std::isfinite(ck.meta.threshold));
  CHECK(ck.meta.threshold_rule.find("2d fallback") != std::string::npos);
  const io::ClassSplit cs = io::scan_class(t.data, t.cls, {.quiet = true});
  // The stored 2d threshold is the rule on the validation samples scored without geometry,
  // i.e. exactly as a sample without an xyz file is scored.
  std::vector<float> s2d;
  for (const io::Sample& s : cs.validation) {
    const ScoredSample r = score_sample(*ck.model, t.ex, s.rgb, "");
    CHECK(r.mode_used == Mode::Only2D);
    s2d.push_back(r.out.fusion.image_score);
  }
  CHECK(ck.meta.fallback_thresholds.at("2d") == calibrate_threshold(s2d));
  const ScoredSample r = score_sample(*ck.model, t.ex, cs.test[0].rgb, "");
  const Judgement j = judge(r, ck.meta, kNaN);
  CHECK(j.threshold == ck.meta.fallback_thresholds.at("2d"));
  CHECK((j.verdict == Verdict::Ok || j.verdict == Verdict::Nok));
  const ScoredSample r3 = score_sample(*ck.model, t.ex, "", cs.test[0].xyz);
  CHECK(r3.mode_used == Mode::Only3D);
  CHECK(judge(r3, ck.meta, kNaN).threshold == ck.meta.fallback_thresholds.at("3d"));
}

TEST_CASE("verdicts: score_sample refuses an rgb / xyz pair of different sizes") {
  const Trained& t = trained();
  const LoadedCheckpoint ck = load(t.ckpt);
  const io::ClassSplit cs = io::scan_class(t.data, t.cls, {.quiet = true});
  testing::TempDir d;
  const std::string xyz = d.file("small.tiff");
  io::write_xyz_tiff(xyz, io::read_xyz_tiff(cs.test[0].xyz).narrow(0, 0, 40).narrow(1, 0, 40));
  CHECK_THROWS_WITH_AS(score_sample(*ck.model, t.ex, cs.test[0].rgb, xyz),
                       doctest::Contains("is 48x48 but xyz"), Error);
  CHECK_THROWS_WITH_AS(score_sample(*ck.model, t.ex, cs.test[0].rgb, xyz),
                       doctest::Contains("is 40x40"), Error);
}

TEST_CASE("verdicts: evaluate counts the samples the scanner dropped and lists every sample") {
  const Trained& t = trained();
  const LoadedCheckpoint ck = load(t.ckpt);
  testing::TempDir d;
  const std::string data = d.file("data");
  fs::copy(t.data, data, fs::copy_options::recursive);
  const io::ClassSplit full = io::scan_class(data, t.cls, {.quiet = true});
  const std::size_t n = full.test.size();
  // One test sample loses its xyz file: the scanner drops it; it must be counted.
  fs::remove(fs::path(data) / fs::relative(full.test.back().xyz, t.data));
  EvalJob ej;
  ej.data = data;
  ej.cls = t.cls;
  ej.quiet = true;
  const EvalReport er = evaluate_class(*ck.model, ck.meta, t.ex, ej);
  CHECK(er.skipped == 1);
  REQUIRE(er.skipped_messages.size() == 1);
  CHECK(er.skipped_messages[0].find("missing xyz") != std::string::npos);
  CHECK(er.samples == static_cast<int64_t>(n) - 1);
  CHECK(er.records.size() == n - 1);
  CHECK(er.threshold == ck.meta.threshold);
  int64_t judged = 0;
  for (const EvalSampleRecord& rec : er.records) {
    judged += rec.verdict == Verdict::Ok || rec.verdict == Verdict::Nok;
    CHECK(std::isfinite(rec.score));
  }
  CHECK(judged == er.true_pos + er.false_pos + er.true_neg + er.false_neg);
}

// ---- The binary ----

TEST_CASE("verdicts cli: detect --dir with a truncated PNG, a missing pair and 007.PNG") {
  const Trained& t = trained();
  const io::ClassSplit cs = io::scan_class(t.data, t.cls, {.quiet = true});
  testing::TempDir d;
  const std::string dir = d.file("parts");
  fs::create_directories(dir);
  // 000: a full pair; 007.PNG: upper-case extensions; 002: truncated PNG; 003: no xyz (2D
  // fallback); 004: no rgb (3D fallback).
  fs::copy_file(cs.test[0].rgb, dir + "/000.png");
  fs::copy_file(cs.test[0].xyz, dir + "/000.tiff");
  fs::copy_file(cs.test[1].rgb, dir + "/007.PNG");
  fs::copy_file(cs.test[1].xyz, dir + "/007.TIFF");
  std::vector<char> png = testing::slurp(cs.test[2].rgb);
  png.resize(png.size() / 2);
  testing::spit(dir + "/002.png", png);
  fs::copy_file(cs.test[2].xyz, dir + "/002.tiff");
  fs::copy_file(cs.test[3].rgb, dir + "/003.png");
  fs::copy_file(cs.test[3].xyz, dir + "/004.tiff");
  const LoadedCheckpoint ck = load(t.ckpt);

  const std::string out = d.file("heat");
  const Run r = cli("detect --checkpoint " + q(t.ckpt) + " --dir " + q(dir) + " --out " + q(out));
  INFO(r.err);
  CHECK(r.status == 2);  // a sample was skipped
  const auto lines = r.lines();
  CHECK(lines.size() == 5);  // every sample reported, the later ones too
  const nlohmann::json* bad = line_of(lines, "002");
  REQUIRE(bad);
  CHECK(bad->at("label") == "SKIPPED");
  CHECK(bad->at("error").get<std::string>().find("truncated") != std::string::npos);
  for (const char* stem : {"000", "007"}) {
    const nlohmann::json* j = line_of(lines, stem);
    REQUIRE(j);
    CHECK((j->at("label") == "OK" || j->at("label") == "NOK"));
    CHECK(j->at("mode") == "2d3d");
    CHECK(j->at("fallback") == false);
    CHECK(j->at("threshold").get<float>() == ck.meta.threshold);
    CHECK(fs::exists(j->at("heatmap").get<std::string>()));
  }
  const nlohmann::json* f2 = line_of(lines, "003");
  REQUIRE(f2);
  CHECK(f2->at("mode") == "2d");
  CHECK(f2->at("fallback") == true);
  CHECK(f2->at("threshold").get<float>() == ck.meta.fallback_thresholds.at("2d"));
  CHECK((f2->at("label") == "OK" || f2->at("label") == "NOK"));
  const nlohmann::json* f3 = line_of(lines, "004");
  REQUIRE(f3);
  CHECK(f3->at("mode") == "3d");
  CHECK(f3->at("threshold").get<float>() == ck.meta.fallback_thresholds.at("3d"));
  CHECK(r.err.find("5 sample(s):") != std::string::npos);
  CHECK(r.err.find("0 UNKNOWN, 0 ERROR, 1 skipped") != std::string::npos);

  // Without the broken file every sample is judged: exit 0.
  fs::remove(dir + "/002.png");
  fs::remove(dir + "/002.tiff");
  const Run ok =
      cli("detect --checkpoint " + q(t.ckpt) + " --dir " + q(dir) + " --out " + q(d.file("heat2")));
  INFO(ok.err);
  CHECK(ok.status == 0);
  CHECK(ok.lines().size() == 4);

  // A checkpoint without per-mode thresholds (older format): fallback samples are UNKNOWN,
  // never judged against the 2d3d threshold; exit 3.
  LoadedCheckpoint old = load(t.ckpt);
  old.meta.fallback_thresholds.clear();
  const std::string old_ck = d.file("old.safetensors");
  save_checkpoint(old_ck, *old.model, old.meta);
  const Run u =
      cli("detect --checkpoint " + q(old_ck) + " --dir " + q(dir) + " --out " + q(d.file("h3")));
  INFO(u.err);
  CHECK(u.status == 3);
  CHECK(line_of(u.lines(), "003")->at("label") == "UNKNOWN");
  CHECK(line_of(u.lines(), "004")->at("label") == "UNKNOWN");
  CHECK(line_of(u.lines(), "000")->at("label") != "UNKNOWN");

  // An unwritable heatmap (a folder in its place) does not lose the verdict line.
  fs::create_directories(d.file("h4/000_heatmap.png"));
  const Run h = cli("detect --checkpoint " + q(t.ckpt) + " --rgb " + q(dir + "/000.png") +
                    " --xyz " + q(dir + "/000.tiff") + " --out " + q(d.file("h4")) + " --force");
  CHECK(h.status == 2);
  REQUIRE(h.lines().size() == 1);
  CHECK((h.lines()[0].at("label") == "OK" || h.lines()[0].at("label") == "NOK"));
  CHECK(h.err.find("heatmap not written") != std::string::npos);
}

TEST_CASE("verdicts cli: NaN weights, non-finite scores, misaligned pairs") {
  const Trained& t = trained();
  const io::ClassSplit cs = io::scan_class(t.data, t.cls, {.quiet = true});
  testing::TempDir d;
  LoadedCheckpoint ck = load(t.ckpt);
  ag::StateDict sd = ck.model->state_dict();
  const std::string victim = "Dec2D." + [&] {
    for (const auto& [k, v] : sd)
      if (k.rfind("Dec2D.", 0) == 0 && k.find("weight") != std::string::npos) return k.substr(6);
    return std::string();
  }();
  // NaN weights: refused at load, naming the tensor; nothing scored, exit 1.
  {
    ag::StateDict bad = sd;
    bad[victim] = sd.at(victim).clone();
    bad[victim].data()[0] = kNaN;
    Cmdr m(ck.meta.config);
    m.load_state_dict(bad, true);
    const std::string p = d.file("nan.safetensors");
    save_checkpoint(p, m, ck.meta);
    const Run r = cli("detect --checkpoint " + q(p) + " --rgb " + q(cs.test[0].rgb) + " --xyz " +
                      q(cs.test[0].xyz) + " --out " + q(d.file("o1")));
    CHECK(r.status == 1);
    CHECK(r.lines().empty());
    CHECK(r.err.find(victim) != std::string::npos);
  }
  // Finite weights that overflow: the score is not computable -> ERROR, exit 2, no heatmap.
  {
    ag::StateDict big = sd;
    for (auto& [k, v] : big) {
      if (k.rfind("Dec2D.", 0) == 0 && k.find("weight") != std::string::npos) {
        v = v.clone();
        for (int64_t i = 0; i < v.numel(); ++i) v.data()[i] = 3e38f;
      }
    }
    Cmdr m(ck.meta.config);
    m.load_state_dict(big, true);
    const std::string p = d.file("big.safetensors");
    save_checkpoint(p, m, ck.meta);
    const Run r = cli("detect --checkpoint " + q(p) + " --rgb " + q(cs.test[0].rgb) + " --xyz " +
                      q(cs.test[0].xyz) + " --out " + q(d.file("o2")));
    INFO(r.err);
    INFO(r.out);
    CHECK(r.status == 2);
    REQUIRE(r.lines().size() == 1);
    CHECK(r.lines()[0].at("label") == "ERROR");
    CHECK(r.lines()[0].at("heatmap").is_null());
    CHECK(r.err.find("1 ERROR") != std::string::npos);
  }
  // rgb 48x48 with a 40x40 cloud: SKIPPED naming both sizes, exit 2.
  {
    const std::string xyz = d.file("small.tiff");
    io::write_xyz_tiff(xyz, io::read_xyz_tiff(cs.test[0].xyz).narrow(0, 0, 40).narrow(1, 0, 40));
    const Run r = cli("detect --checkpoint " + q(t.ckpt) + " --rgb " + q(cs.test[0].rgb) +
                      " --xyz " + q(xyz) + " --out " + q(d.file("o3")));
    CHECK(r.status == 2);
    REQUIRE(r.lines().size() == 1);
    CHECK(r.lines()[0].at("label") == "SKIPPED");
    const std::string e = r.lines()[0].at("error");
    CHECK(e.find("48x48") != std::string::npos);
    CHECK(e.find("40x40") != std::string::npos);
  }
  // --threshold nan / inf: a usage error.
  for (const char* v : {"nan", "inf"}) {
    const Run r = cli("detect --checkpoint " + q(t.ckpt) + " --rgb " + q(cs.test[0].rgb) +
                      " --threshold " + v + " --out " + q(d.file("o4")));
    CHECK(r.status == 1);
    CHECK(r.err.find("finite") != std::string::npos);
  }
}

TEST_CASE("verdicts cli: evaluate refuses to overwrite, reports threshold and every sample") {
  const Trained& t = trained();
  testing::TempDir d;
  const std::string json = d.file("m.json");
  {
    std::ofstream f(json);
    f << "keep me\n";
  }
  const std::string base =
      "evaluate --data " + q(t.data) + " --class " + t.cls + " --checkpoint " + q(t.ckpt);
  Run r = cli(base + " --json " + q(json));
  CHECK(r.status == 1);
  CHECK(r.err.find("--force") != std::string::npos);
  CHECK(slurp_text(json) == "keep me\n");
  // --save-maps / --heatmaps are checked too, before any work.
  fs::create_directories(d.file("maps"));
  testing::spit(d.file("maps/" + t.cls + ".safetensors"), {'x'});
  r = cli(base + " --save-maps " + q(d.file("maps")));
  CHECK(r.status == 1);
  CHECK(r.err.find("--save-maps") != std::string::npos);
  fs::create_directories(d.file("heat/" + t.cls));
  testing::spit(d.file("heat/" + t.cls + "/x.png"), {'x'});
  r = cli(base + " --heatmaps " + q(d.file("heat")));
  CHECK(r.status == 1);
  CHECK(r.err.find("--heatmaps") != std::string::npos);

  r = cli(base + " --json " + q(json) + " --force");
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find("defective caught") != std::string::npos);
  CHECK(r.err.find("s/sample, ETA") != std::string::npos);  // progress like train's
  const nlohmann::json j = nlohmann::json::parse(slurp_text(json));
  const nlohmann::json& c = j.at("classes").at(t.cls);
  CHECK(c.at("threshold").get<float>() == load(t.ckpt).meta.threshold);
  CHECK(c.at("skipped") == 0);
  const nlohmann::json& per = c.at("per_sample");
  CHECK(per.size() == c.at("samples").get<std::size_t>());
  int64_t nok_gt_nok = 0;
  for (const auto& s : per) {
    CHECK(s.contains("path"));
    CHECK(s.contains("score"));
    CHECK(s.contains("gt"));
    nok_gt_nok += s.at("label") == "NOK" && s.at("gt") == "NOK";
  }
  CHECK(nok_gt_nok == c.at("confusion_at_threshold").at("tp").get<int64_t>());
}

TEST_CASE("verdicts cli: plain messages for command-line mistakes") {
  const Trained& t = trained();
  testing::TempDir d;
  Run r = cli("detet");
  CHECK(r.status == 1);
  CHECK(r.err.find("unknown verb 'detet' (did you mean 'detect'?)") != std::string::npos);
  r = cli("detect --checkpoint " + q(t.ckpt) + " --bogus");
  CHECK(r.status == 1);
  CHECK(r.err.find("--bogus") != std::string::npos);
  CHECK(r.err.find("cmdr-iad detect --help") != std::string::npos);
  for (const char* n : {"-1", "1000"}) {
    r = cli(std::string("--threads ") + n + " info");
    CHECK(r.status == 1);
    CHECK(r.err.find("expected 0 (all cores) to 256") != std::string::npos);
    CHECK(r.err.size() < 200);  // no 300-digit range
  }
  r = cli("train --epochs -1 --data " + q(t.data) + " --class x --out " + q(d.file("c")));
  CHECK(r.status == 1);
  CHECK(r.err.size() < 200);
  // A directory given as a file, and --out under a regular file.
  const io::ClassSplit cs = io::scan_class(t.data, t.cls, {.quiet = true});
  r = cli("detect --checkpoint " + q(t.ckpt) + " --rgb " + q(d.path.string()));
  CHECK(r.status == 1);
  CHECK(r.err.find("is a directory, not a file") != std::string::npos);
  testing::spit(d.file("plain"), {'x'});
  r = cli("detect --checkpoint " + q(t.ckpt) + " --rgb " + q(cs.test[0].rgb) + " --out " +
          q(d.file("plain/sub")));
  CHECK(r.status == 1);
  CHECK(r.err.find("is a regular file, not a folder") != std::string::npos);
  CHECK(r.err.find("filesystem error") == std::string::npos);
  // --help shows defaults.
  r = cli("train --help");
  CHECK(r.status == 0);
  CHECK(r.out.find("=50") != std::string::npos);
}
