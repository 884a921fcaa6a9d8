#include "models/weights.hpp"

#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "engine/error.hpp"

namespace cmdr::models {

std::string LoadReport::note() const {
  std::ostringstream os;
  if (!ignored.empty()) {
    os << path << ": ignored " << ignored.size() << " tensor(s) not used by this extractor";
    os << " (e.g. " << ignored.front() << ")";
  }
  if (!unexpected.empty()) {
    if (os.tellp() > 0) os << "; ";
    os << path << ": " << unexpected.size() << " unexpected tensor(s) ignored:";
    for (std::size_t i = 0; i < unexpected.size() && i < 20; ++i) os << " " << unexpected[i];
    if (unexpected.size() > 20) os << " ...";
  }
  return os.str();
}

bool warn_if_random(const st::File& file, const std::string& what) {
  auto it = file.metadata().find(kRandomWeightsKey);
  if (it == file.metadata().end() || it->second != "true") return false;
  std::cerr << "\n*** WARNING: " << what << " weights in '" << file.path()
            << "' are RANDOM (made by `cmdr-iad init-extractors`).\n"
            << "*** Features and every result computed from them are meaningless for real "
               "anomaly detection.\n\n";
  return true;
}

LoadReport load_params(const st::File& file, const std::vector<ParamSpec>& specs,
                       const std::string& what, const KeyMap& map) {
  LoadReport rep;
  rep.path = file.path();
  std::map<std::string, std::string> by_param;  // parameter name -> file key
  for (const auto& info : file.tensors()) {
    std::string name = map ? map(info.name) : info.name;
    if (name.empty()) {
      rep.ignored.push_back(info.name);
      continue;
    }
    CMDR_CHECK(!by_param.count(name), what, " '", file.path(), "': keys '", by_param[name],
               "' and '", info.name, "' both map to parameter '", name, "'");
    by_param[name] = info.name;
  }
  std::set<std::string> wanted;
  std::vector<std::string> missing;
  for (const auto& s : specs) {
    wanted.insert(s.name);
    if (!by_param.count(s.name)) missing.push_back(s.name);
  }
  if (!missing.empty()) {
    std::ostringstream os;
    os << what << " '" << file.path() << "': " << missing.size() << " missing tensor(s):";
    for (const auto& m : missing) os << " " << m;
    fail(os.str());
  }
  for (const auto& s : specs) {
    const std::string& key = by_param[s.name];
    const st::TensorInfo& info = file.info(key);
    CMDR_CHECK(info.shape == s.shape, what, " '", file.path(), "': tensor '", key, "' has shape ",
               shape_str(info.shape), ", expected ", shape_str(s.shape));
    CMDR_CHECK(info.dtype == st::DType::F32 || info.dtype == st::DType::F16 ||
                   info.dtype == st::DType::BF16 || info.dtype == st::DType::F64,
               what, " '", file.path(), "': tensor '", key, "' has dtype ",
               st::dtype_name(info.dtype), ", expected a float dtype");
    *s.target = file.get(key, s.shape, /*convert=*/true);
  }
  for (const auto& [name, key] : by_param) {
    if (wanted.count(name)) continue;
    const std::string tail = "num_batches_tracked";
    if (name.size() >= tail.size() &&
        name.compare(name.size() - tail.size(), tail.size(), tail) == 0)
      continue;  // BatchNorm's step counter: not a parameter of the forward pass
    rep.unexpected.push_back(key);
  }
  rep.random_weights = warn_if_random(file, what);
  return rep;
}

void init_params(const std::vector<ParamSpec>& specs, Rng& rng) {
  for (const auto& s : specs) {
    Tensor t = Tensor::empty(s.shape);
    switch (s.init) {
      case Init::TruncNormal02:
        rng.fill_trunc_normal(t, 0.02f);
        break;
      case Init::Zeros:
        t.fill_(0.0f);
        break;
      case Init::Ones:
        t.fill_(1.0f);
        break;
      case Init::BnRunningMean:
        rng.fill_normal(t, 0.0f, 0.05f);
        break;
      case Init::BnRunningVar:
        rng.fill_uniform(t, 0.5f, 1.5f);
        break;
    }
    *s.target = t;
  }
}

void write_params(const std::vector<ParamSpec>& specs, const std::vector<std::string>& counters,
                  const std::map<std::string, std::string>& metadata, const std::string& path) {
  st::Writer w;
  for (const auto& s : specs) {
    CMDR_CHECK(s.target->defined() && s.target->shape() == s.shape, "write_params: '", s.name,
               "' is ", s.target->defined() ? s.target->str() : std::string("undefined"),
               ", expected ", shape_str(s.shape));
    w.add(s.name, *s.target);
  }
  for (const auto& c : counters) w.add_i64(c, {0}, {});
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.set_metadata(kRandomWeightsKey, "true");
  w.write(path);
}

}  // namespace cmdr::models
