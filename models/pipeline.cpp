#include "models/pipeline.hpp"

#include <algorithm>
#include <iostream>
#include <sstream>

#include "engine/error.hpp"
#include "engine/profiler.hpp"
#include "io/image.hpp"
#include "io/tiff.hpp"
#include "io/transforms.hpp"
#include "models/feature_assembly.hpp"

namespace cmdr::models {

namespace {

double ms_since(int64_t t0) {
  return static_cast<double>(now_ns() - t0) / 1e6;
}

const Shape& shape_of(const st::File& f, const std::string& name, std::size_t rank) {
  CMDR_CHECK(f.has(name), f.path(), ": missing tensor '", name,
             "' (needed to read the extractor's architecture)");
  const Shape& s = f.info(name).shape;
  CMDR_CHECK(s.size() == rank, f.path(), ": tensor '", name, "' has shape ", shape_str(s),
             ", expected rank ", rank);
  return s;
}

int64_t count_blocks(const st::File& f, const std::string& prefix, const std::string& suffix) {
  int64_t n = 0;
  while (f.has(prefix + std::to_string(n) + suffix)) ++n;
  return n;
}

int64_t heads_from(const st::File& f, int64_t dim) {
  const auto it = f.metadata().find("cmdr.heads");
  if (it != f.metadata().end()) {
    try {
      return std::stoll(it->second);
    } catch (const std::exception&) {
      fail(f.path(), ": metadata cmdr.heads = '", it->second, "' is not an integer");
    }
  }
  return std::max<int64_t>(1, dim / 64);
}

// Strips the Point-MAE checkpoint prefixes (SPEC 4.2) for shape lookups.
std::string find_key(const st::File& f, const std::string& name) {
  for (const auto& t : f.tensors()) {
    if (point_mae_key(t.name) == name) return t.name;
  }
  fail(f.path(), ": missing tensor '", name, "' (needed to read the extractor's architecture)");
}

}  // namespace

DinoVitConfig dino_config_from(const st::File& f) {
  DinoVitConfig c;
  const Shape& w = shape_of(f, "patch_embed.proj.weight", 4);
  c.dim = w[0];
  c.in_chans = w[1];
  c.patch = w[2];
  const Shape& pos = shape_of(f, "pos_embed", 3);
  int64_t g = 0;
  while ((g + 1) * (g + 1) <= pos[1] - 1) ++g;
  CMDR_CHECK(g * g == pos[1] - 1, f.path(), ": pos_embed ", shape_str(pos),
             " is not 1 + a square number of tokens");
  c.image = g * c.patch;
  c.depth = count_blocks(f, "blocks.", ".norm1.weight");
  CMDR_CHECK(c.depth > 0, f.path(), ": no blocks.{i}.norm1.weight: not a DINO ViT file");
  c.mlp = shape_of(f, "blocks.0.mlp.fc1.weight", 2)[0];
  c.heads = heads_from(f, c.dim);
  return c;
}

PointMaeConfig point_mae_config_from(const st::File& f, const ExtractorOptions& opt) {
  PointMaeConfig c;
  c.num_group = opt.num_group;
  c.group_size = opt.group_size;
  c.bn_running_stats = opt.bn_running_stats;
  c.enc_c1 = f.info(find_key(f, "encoder.first_conv.0.weight")).shape.at(0);
  c.enc_c2 = f.info(find_key(f, "encoder.first_conv.3.weight")).shape.at(0);
  c.enc_c3 = f.info(find_key(f, "encoder.second_conv.0.weight")).shape.at(0);
  c.dim = f.info(find_key(f, "encoder.second_conv.3.weight")).shape.at(0);
  c.pos_hidden = f.info(find_key(f, "pos_embed.0.weight")).shape.at(0);
  c.mlp = f.info(find_key(f, "blocks.blocks.0.mlp.fc1.weight")).shape.at(0);
  int64_t depth = 0;
  for (const auto& t : f.tensors()) {
    const std::string k = point_mae_key(t.name);
    const std::string p = "blocks.blocks.";
    if (k.rfind(p, 0) == 0 && k.size() > p.size() + 12 &&
        k.compare(k.size() - 13, 13, ".norm1.weight") == 0) {
      depth = std::max<int64_t>(depth, std::stoll(k.substr(p.size())) + 1);
    }
  }
  CMDR_CHECK(depth > 0, f.path(), ": no blocks.blocks.{i}.norm1.weight: not a Point-MAE file");
  c.depth = depth;
  c.heads = heads_from(f, c.dim);
  const auto it = f.metadata().find("cmdr.taps");
  if (it != f.metadata().end()) {
    c.taps.clear();
    std::stringstream ss(it->second);
    std::string item;
    while (std::getline(ss, item, ',')) c.taps.push_back(std::stoll(item));
  } else if (depth == 12) {
    c.taps = {3, 7, 11};
  } else {
    c.taps = {depth - 1};
  }
  return c;
}

Extractors load_extractors(const std::string& rgb_weights, const std::string& xyz_weights,
                           const ExtractorOptions& opt, bool quiet) {
  Extractors ex;
  ex.opt = opt;
  CMDR_CHECK(opt.num_group > 0 && opt.group_size > 0, "extractors: group count ", opt.num_group,
             " and group size ", opt.group_size, " must be positive");
  if (!rgb_weights.empty()) {
    st::File f(rgb_weights);
    ex.vit = std::make_unique<DinoVit>(dino_config_from(f));
    const LoadReport r = ex.vit->load(f);
    ex.random |= r.random_weights;
    if (!quiet && !r.note().empty()) std::cerr << "extractors: " << r.note() << "\n";
    ex.rgb_path = rgb_weights;
    ex.rgb_sha256 = f.sha256_hex();  // the bytes just loaded, from the same mapping
  }
  if (!xyz_weights.empty()) {
    st::File f(xyz_weights);
    ex.pmae = std::make_unique<PointMae>(point_mae_config_from(f, opt));
    const LoadReport r = ex.pmae->load(f);
    ex.random |= r.random_weights;
    if (!quiet && !r.note().empty()) std::cerr << "extractors: " << r.note() << "\n";
    ex.xyz_path = xyz_weights;
    ex.xyz_sha256 = f.sha256_hex();
  }
  return ex;
}

SampleFeatures extract_features(const Extractors& ex, const std::string& rgb_png,
                                const std::string& xyz_tiff, int64_t side, bool keep_inputs) {
  CMDR_CHECK(side >= 8, "features: side S = ", side, " is too small");
  SampleFeatures f;
  f.side = side;
  if (!rgb_png.empty() && ex.vit) {
    int64_t t0 = now_ns();
    io::Image8 img = io::read_rgb_png(rgb_png);
    f.t.read += ms_since(t0);
    t0 = now_ns();
    const int64_t vs = ex.vit->cfg.image;
    Tensor vit_input = io::rgb_transform(img, vs);
    if (keep_inputs) f.rgb_input = side == vs ? vit_input : io::rgb_transform(img, side);
    f.t.transform += ms_since(t0);
    t0 = now_ns();
    {
      ProfileScope p("stage.rgb_extractor");
      f.rgb_tokens = dino_vit_forward(*ex.vit, vit_input);
    }
    f.t.rgb_extractor += ms_since(t0);
    f.grid = ex.vit->cfg.grid();
    f.has_rgb = true;
  }
  if (!xyz_tiff.empty() && ex.pmae) {
    int64_t t0 = now_ns();
    Tensor cloud = io::read_xyz_tiff(xyz_tiff);
    f.t.read += ms_since(t0);
    t0 = now_ns();
    Tensor pc = io::cloud_transform(cloud, side);
    cloud = Tensor();
    if (keep_inputs) f.pc_resized = pc;
    ValidPoints vp = valid_points(pc);
    f.t.transform += ms_since(t0);
    f.n_valid_points = vp.xyz.size(0);
    // Point-MAE needs G distinct FPS centres and K neighbours each: the configured SPEC 4.2
    // grouping when the cloud has the points, else the small-cloud rule (point_mae_grouping).
    const PointMaeGrouping gr =
        point_mae_grouping(ex.pmae->cfg, f.n_valid_points, ex.opt.scale_groups);
    const std::string at =
        "sample '" + xyz_tiff + "': at " + std::to_string(side) + "×" + std::to_string(side) + ", ";
    if (gr.groups == 0) {
      f.warning = at + gr.reason + ", 2D fallback";
    } else {
      if (gr.scaled) f.note = at + gr.reason;
      t0 = now_ns();
      PointMaeOutput pm;
      {
        ProfileScope p("stage.xyz_extractor");
        pm = point_mae_forward(*ex.pmae, vp.xyz, nullptr, &gr);
      }
      f.t.xyz_extractor += ms_since(t0);
      f.points = vp.xyz;
      f.pixel = std::move(vp.pixel);
      f.centers = pm.centers;
      f.group_features = pm.features;
      f.has_3d = true;
    }
  } else if (xyz_tiff.empty() && ex.pmae) {
    f.warning = "sample '" + rgb_png + "': no xyz file -> no 3D features, 2D fallback";
  }
  if (!f.has_rgb && !f.has_3d) {
    fail("features: sample (rgb '", rgb_png, "', xyz '", xyz_tiff,
         "') has neither usable rgb nor usable geometry for the loaded extractors");
  }
  return f;
}

Sample expand_features(const SampleFeatures& f, int64_t rgb_dim, int64_t xyz_dim, StageTimes* t,
                       bool dense) {
  const int64_t t0 = now_ns();
  ProfileScope p("stage.assemble");
  const int64_t S = f.side, L = S * S;
  if (f.has_rgb) {
    CMDR_CHECK(f.rgb_tokens.size(1) == rgb_dim, "features: rgb tokens ", f.rgb_tokens.str(),
               " vs the model's rgb width ", rgb_dim);
  }
  if (f.has_3d) {
    CMDR_CHECK(f.group_features.size(1) == xyz_dim, "features: group features ",
               f.group_features.str(), " vs the model's xyz width ", xyz_dim);
  }
  Sample s;
  // The CSR operator form is the default 3D assembly (SPEC 10): xyz_patch = P·G.
  s.compact =
      compact_patches(f.has_rgb ? f.rgb_tokens : Tensor(), f.grid, f.points, f.pixel, f.centers,
                      f.has_3d ? f.group_features : Tensor(), S, rgb_dim, xyz_dim);
  if (dense) {
    s.rgb = f.has_rgb ? assemble_rgb(f.rgb_tokens, f.grid, S) : Tensor::zeros({L, rgb_dim});
    s.xyz = f.has_3d ? s.compact.xyz_rows() : Tensor::zeros({L, xyz_dim});
    s.valid = s.compact.valid;
  }
  if (t) t->assemble += ms_since(t0);
  return s;
}

FeatureCache::Entry to_cache_entry(const SampleFeatures& f) {
  FeatureCache::Entry e;
  if (f.has_rgb) e["rgb_tokens"] = f.rgb_tokens;
  if (f.has_3d) {
    std::vector<float> px(f.pixel.size());
    for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<float>(f.pixel[i]);  // < 2^24
    e["points"] = f.points;
    e["pixel"] = Tensor::from_vector({static_cast<int64_t>(px.size())}, px);
    e["centers"] = f.centers;
    e["group_features"] = f.group_features;
  }
  return e;
}

FeatureCache::Expand cache_expander(int64_t side, int64_t rgb_dim, int64_t xyz_dim, bool dense) {
  return [side, rgb_dim, xyz_dim, dense](const FeatureCache::Entry& e) {
    SampleFeatures f;
    f.side = side;
    auto it = e.find("rgb_tokens");
    if (it != e.end()) {
      f.has_rgb = true;
      f.rgb_tokens = it->second;
      int64_t g = 0;
      while ((g + 1) * (g + 1) <= f.rgb_tokens.size(0)) ++g;
      f.grid = g;
    }
    if (e.count("group_features")) {
      f.has_3d = true;
      f.points = e.at("points");
      const std::vector<float> px = e.at("pixel").to_vector();
      f.pixel.assign(px.size(), 0);
      for (std::size_t i = 0; i < px.size(); ++i) f.pixel[i] = static_cast<int64_t>(px[i]);
      f.centers = e.at("centers");
      f.group_features = e.at("group_features");
    }
    return expand_features(f, rgb_dim, xyz_dim, nullptr, dense);
  };
}

}  // namespace cmdr::models
