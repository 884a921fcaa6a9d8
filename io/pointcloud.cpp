// Point-cloud chunk readers and the dataset layout (see pointcloud.hpp).
#include "io/pointcloud.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/error.hpp"

namespace fs = std::filesystem;

namespace cmdr::io {

namespace {

std::vector<uint8_t> slurp(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  CMDR_CHECK(f.good(), what, ": cannot open '", path, "'");
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CMDR_CHECK(!f.bad(), what, ": read error on '", path, "'");
  return b;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

// ---- NPY header: a Python dict literal with exactly descr / fortran_order / shape.
struct HeaderParser {
  const std::string& label;
  const std::string& h;
  std::size_t i = 0;
  void ws() {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == '\n' || h[i] == '\r')) ++i;
  }
  [[noreturn]] void bad(const std::string& why) {
    fail("npy: '", label, "': malformed header (", why, ") in: ", h);
  }
  void expect(char c) {
    ws();
    if (i >= h.size() || h[i] != c) bad(std::string("expected '") + c + "'");
    ++i;
  }
  bool peek(char c) {
    ws();
    return i < h.size() && h[i] == c;
  }
  std::string str() {
    ws();
    if (i >= h.size() || (h[i] != '\'' && h[i] != '"')) bad("expected a string");
    const char q = h[i++];
    const std::size_t s = i;
    while (i < h.size() && h[i] != q) ++i;
    if (i >= h.size()) bad("unterminated string");
    return h.substr(s, i++ - s);
  }
  bool boolean() {
    ws();
    if (h.compare(i, 4, "True") == 0) {
      i += 4;
      return true;
    }
    if (h.compare(i, 5, "False") == 0) {
      i += 5;
      return false;
    }
    bad("fortran_order is not True/False");
  }
  std::vector<int64_t> tuple() {
    expect('(');
    std::vector<int64_t> v;
    while (!peek(')')) {
      ws();
      const std::size_t s = i;
      while (i < h.size() && std::isdigit(static_cast<unsigned char>(h[i]))) ++i;
      if (s == i || i - s > 15) bad("shape entry is not a non-negative integer");
      v.push_back(std::stoll(h.substr(s, i - s)));
      if (peek(',')) {
        ++i;
      } else if (!peek(')')) {
        bad("expected ',' or ')' in shape");
      }
    }
    ++i;
    return v;
  }
};

int64_t descr_item_size(const std::string& d) {
  if (d.size() < 3) return 0;
  try {
    return std::stoll(d.substr(2));
  } catch (...) {
    return 0;
  }
}

}  // namespace

NpyArray parse_npy(const std::string& label, const uint8_t* b, std::size_t n) {
  static const uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  CMDR_CHECK(n >= 10 && std::memcmp(b, magic, 6) == 0, "npy: '", label,
             "' is not an NPY file (no \\x93NUMPY magic; ", n, " bytes)");
  const int major = b[6];
  std::size_t hlen = 0, off = 0;
  if (major == 1) {
    hlen = static_cast<std::size_t>(b[8]) | (static_cast<std::size_t>(b[9]) << 8);
    off = 10;
  } else if (major == 2 || major == 3) {
    CMDR_CHECK(n >= 12, "npy: '", label, "': truncated header");
    hlen = static_cast<std::size_t>(b[8]) | (static_cast<std::size_t>(b[9]) << 8) |
           (static_cast<std::size_t>(b[10]) << 16) | (static_cast<std::size_t>(b[11]) << 24);
    off = 12;
  } else {
    fail("npy: '", label, "': unsupported NPY format version ", major, ".", int(b[7]));
  }
  CMDR_CHECK(off + hlen <= n, "npy: '", label, "': header length ", hlen, " exceeds the file (", n,
             " bytes)");
  const std::string h(reinterpret_cast<const char*>(b + off), hlen);
  HeaderParser p{label, h};
  NpyArray a;
  bool have_descr = false, have_fortran = false, have_shape = false;
  p.expect('{');
  while (!p.peek('}')) {
    const std::string key = p.str();
    p.expect(':');
    if (key == "descr" && !have_descr) {
      a.descr = p.str();
      have_descr = true;
    } else if (key == "fortran_order" && !have_fortran) {
      a.fortran_order = p.boolean();
      have_fortran = true;
    } else if (key == "shape" && !have_shape) {
      a.shape = p.tuple();
      have_shape = true;
    } else {
      p.bad("unexpected or duplicate key '" + key + "'");
    }
    if (p.peek(',')) {
      ++p.i;
    } else if (!p.peek('}')) {
      p.bad("expected ',' or '}'");
    }
  }
  ++p.i;
  p.ws();
  CMDR_CHECK(p.i == h.size(), "npy: '", label, "': trailing characters after the header dict");
  CMDR_CHECK(have_descr && have_fortran && have_shape, "npy: '", label,
             "': header lacks one of 'descr', 'fortran_order', 'shape': ", h);
  a.item_size = descr_item_size(a.descr);
  CMDR_CHECK(a.item_size > 0 && a.item_size <= 16, "npy: '", label, "': unsupported dtype '",
             a.descr, "'");
  int64_t count = 1;
  for (int64_t d : a.shape) {
    CMDR_CHECK(d == 0 || count <= (int64_t{1} << 40) / d, "npy: '", label, "': shape ",
               shape_str(a.shape), " is too large");
    count *= d;
  }
  const std::size_t need = static_cast<std::size_t>(count * a.item_size);
  CMDR_CHECK(n - off - hlen == need, "npy: '", label, "': data is ", n - off - hlen,
             " bytes, shape ", shape_str(a.shape), " of '", a.descr, "' needs ", need);
  a.data.assign(b + off + hlen, b + n);
  return a;
}

NpyArray read_npy(const std::string& path) {
  const std::vector<uint8_t> b = slurp(path, "npy");
  return parse_npy(path, b.data(), b.size());
}

void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  CMDR_CHECK(shape.size() == 1 || shape.size() == 2, "write_npy_f32: '", path, "': shape ",
             shape_str(shape), " must be 1-d or 2-d");
  std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
  // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
  while ((10 + h.size() + 1) % 64 != 0) h += ' ';
  h += '\n';
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  std::ofstream f(path, std::ios::binary);
  CMDR_CHECK(f.good(), "write_npy_f32: cannot create '", path, "'");
  const uint8_t pre[10] = {0x93,
                           'N',
                           'U',
                           'M',
                           'P',
                           'Y',
                           1,
                           0,
                           static_cast<uint8_t>(h.size() & 0xff),
                           static_cast<uint8_t>(h.size() >> 8)};
  f.write(reinterpret_cast<const char*>(pre), 10);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * 4));
  CMDR_CHECK(f.good(), "write_npy_f32: write error on '", path, "'");
}

namespace {

void check_finite(const PointChunk& c) {
  const float* p = c.xyz.data();
  const int64_t n = c.xyz.size(0);
  for (int64_t i = 0; i < 3 * n; ++i)
    CMDR_CHECK(std::isfinite(p[i]), "points: '", c.path, "': point ", i / 3,
               " has a non-finite coordinate");
}

uint8_t to_label(double v, const std::string& path, int64_t i) {
  CMDR_CHECK(v == 0.0 || v == 1.0, "points: '", path, "': label of point ", i, " is ", v,
             ", expected 0 or 1");
  return static_cast<uint8_t>(v);
}

}  // namespace

PointChunk read_points_npy(const std::string& path) {
  const NpyArray a = read_npy(path);
  CMDR_CHECK(a.descr == "<f4" || a.descr == "<f8", "points: '", path, "': dtype '", a.descr,
             "', expected float32 '<f4' or float64 '<f8' (little-endian)");
  CMDR_CHECK(!a.fortran_order, "points: '", path, "': Fortran-order array, expected C order");
  CMDR_CHECK(a.shape.size() == 2 && a.shape[1] == 3, "points: '", path, "': shape ",
             shape_str(a.shape), ", expected (N, 3)");
  PointChunk c;
  c.path = path;
  const int64_t n = a.shape[0];
  c.xyz = Tensor::empty({n, 3});
  float* o = c.xyz.data();
  if (a.item_size == 4) {
    std::memcpy(o, a.data.data(), static_cast<std::size_t>(n * 3 * 4));
  } else {
    for (int64_t i = 0; i < 3 * n; ++i) {
      double v;
      std::memcpy(&v, a.data.data() + 8 * i, 8);
      o[i] = static_cast<float>(v);
    }
  }
  return c;
}

namespace {

// Splits a line on whitespace and commas.
std::vector<std::string> tokens(const std::string& line) {
  std::vector<std::string> t;
  std::string cur;
  for (char ch : line) {
    if (ch == ' ' || ch == '\t' || ch == ',' || ch == '\r') {
      if (!cur.empty()) t.push_back(std::move(cur)), cur.clear();
    } else {
      cur += ch;
    }
  }
  if (!cur.empty()) t.push_back(cur);
  return t;
}

double parse_num(const std::string& s, const std::string& path, int64_t line) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (...) {
    used = 0;
  }
  CMDR_CHECK(used == s.size() && used > 0, "points: '", path, "' line ", line, ": '", s,
             "' is not a number");
  return v;
}

}  // namespace

PointChunk read_points_xyz(const std::string& path) {
  std::ifstream f(path);
  CMDR_CHECK(f.good(), "points: cannot open '", path, "'");
  std::vector<float> xyz;
  std::vector<uint8_t> lab;
  std::size_t cols = 0;
  std::string line;
  int64_t ln = 0;
  while (std::getline(f, line)) {
    ++ln;
    const std::vector<std::string> t = tokens(line);
    if (t.empty() || t[0][0] == '#') continue;
    CMDR_CHECK(t.size() == 3 || t.size() == 4, "points: '", path, "' line ", ln, ": ", t.size(),
               " columns, expected 'x y z' or 'x y z label'");
    if (cols == 0) cols = t.size();
    CMDR_CHECK(t.size() == cols, "points: '", path, "' line ", ln, ": ", t.size(),
               " columns, earlier lines have ", cols);
    for (int k = 0; k < 3; ++k) xyz.push_back(static_cast<float>(parse_num(t[k], path, ln)));
    if (cols == 4)
      lab.push_back(to_label(parse_num(t[3], path, ln), path, static_cast<int64_t>(lab.size())));
  }
  PointChunk c;
  c.path = path;
  const int64_t n = static_cast<int64_t>(xyz.size() / 3);
  c.xyz = Tensor::from_vector({n, 3}, xyz);
  c.labels = std::move(lab);
  if (!c.labels.empty()) c.label_source = "in-file";
  return c;
}

namespace {

enum class PlyType { I8, U8, I16, U16, I32, U32, F32, F64 };

bool ply_type(const std::string& s, PlyType* t) {
  static const std::pair<const char*, PlyType> names[] = {
      {"char", PlyType::I8},    {"int8", PlyType::I8},     {"uchar", PlyType::U8},
      {"uint8", PlyType::U8},   {"short", PlyType::I16},   {"int16", PlyType::I16},
      {"ushort", PlyType::U16}, {"uint16", PlyType::U16},  {"int", PlyType::I32},
      {"int32", PlyType::I32},  {"uint", PlyType::U32},    {"uint32", PlyType::U32},
      {"float", PlyType::F32},  {"float32", PlyType::F32}, {"double", PlyType::F64},
      {"float64", PlyType::F64}};
  for (const auto& [n, v] : names)
    if (s == n) {
      *t = v;
      return true;
    }
  return false;
}

int ply_size(PlyType t) {
  switch (t) {
    case PlyType::I8:
    case PlyType::U8:
      return 1;
    case PlyType::I16:
    case PlyType::U16:
      return 2;
    case PlyType::I32:
    case PlyType::U32:
    case PlyType::F32:
      return 4;
    case PlyType::F64:
      return 8;
  }
  return 0;
}

template <class T>
double load_as(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return static_cast<double>(v);
}

double ply_read(PlyType t, const uint8_t* p) {
  switch (t) {
    case PlyType::I8:
      return load_as<int8_t>(p);
    case PlyType::U8:
      return load_as<uint8_t>(p);
    case PlyType::I16:
      return load_as<int16_t>(p);
    case PlyType::U16:
      return load_as<uint16_t>(p);
    case PlyType::I32:
      return load_as<int32_t>(p);
    case PlyType::U32:
      return load_as<uint32_t>(p);
    case PlyType::F32:
      return load_as<float>(p);
    case PlyType::F64:
      return load_as<double>(p);
  }
  return 0;
}

struct PlyProp {
  std::string name;
  PlyType type = PlyType::F32;
  bool list = false;
};
struct PlyElement {
  std::string name;
  int64_t count = 0;
  std::vector<PlyProp> props;
};

}  // namespace

PointChunk read_points_ply(const std::string& path) {
  const std::vector<uint8_t> b = slurp(path, "points");
  // Header: lines up to "end_header\n".
  std::size_t pos = 0;
  auto next_line = [&](std::string* out) {
    const std::size_t s = pos;
    while (pos < b.size() && b[pos] != '\n') ++pos;
    CMDR_CHECK(pos < b.size(), "points: '", path, "': PLY header has no end_header line");
    *out = std::string(reinterpret_cast<const char*>(b.data() + s), pos - s);
    if (!out->empty() && out->back() == '\r') out->pop_back();
    ++pos;
  };
  std::string line;
  next_line(&line);
  CMDR_CHECK(line == "ply", "points: '", path, "' is not a PLY file (first line '", line, "')");
  std::string format;
  std::vector<PlyElement> els;
  for (;;) {
    next_line(&line);
    const std::vector<std::string> t = tokens(line);
    if (t.empty() || t[0] == "comment" || t[0] == "obj_info") continue;
    if (t[0] == "end_header") break;
    if (t[0] == "format") {
      CMDR_CHECK(t.size() == 3, "points: '", path, "': bad PLY format line '", line, "'");
      format = t[1];
    } else if (t[0] == "element") {
      CMDR_CHECK(t.size() == 3, "points: '", path, "': bad PLY element line '", line, "'");
      PlyElement e;
      e.name = t[1];
      e.count = static_cast<int64_t>(parse_num(t[2], path, 0));
      CMDR_CHECK(e.count >= 0, "points: '", path, "': negative element count in '", line, "'");
      els.push_back(e);
    } else if (t[0] == "property") {
      CMDR_CHECK(!els.empty(), "points: '", path, "': PLY property before any element");
      PlyProp p;
      if (t.size() == 5 && t[1] == "list") {
        p.list = true;
        PlyType dummy;
        CMDR_CHECK(ply_type(t[2], &dummy) && ply_type(t[3], &p.type), "points: '", path,
                   "': unknown PLY type in '", line, "'");
        p.name = t[4];
      } else {
        CMDR_CHECK(t.size() == 3 && ply_type(t[1], &p.type), "points: '", path,
                   "': bad PLY property line '", line, "'");
        p.name = t[2];
      }
      els.back().props.push_back(p);
    } else {
      fail("points: '", path, "': unknown PLY header line '", line, "'");
    }
  }
  CMDR_CHECK(format == "ascii" || format == "binary_little_endian", "points: '", path,
             "': PLY format '", format, "' is not supported (ascii or binary_little_endian)");
  const bool ascii = format == "ascii";
  std::size_t vi = els.size();
  for (std::size_t e = 0; e < els.size(); ++e)
    if (els[e].name == "vertex") {
      vi = e;
      break;
    }
  CMDR_CHECK(vi < els.size(), "points: '", path, "': PLY has no 'vertex' element");
  const PlyElement& v = els[vi];
  int ix = -1, iy = -1, iz = -1, il = -1;
  for (std::size_t k = 0; k < v.props.size(); ++k) {
    const std::string& nm = v.props[k].name;
    CMDR_CHECK(!v.props[k].list, "points: '", path, "': list property '", nm,
               "' in the vertex element is not supported");
    const int kk = static_cast<int>(k);
    if (nm == "x") ix = kk;
    if (nm == "y") iy = kk;
    if (nm == "z") iz = kk;
    if (nm == "label" || nm == "scalar_label" || nm == "class" || nm == "scalar_class") {
      CMDR_CHECK(il < 0, "points: '", path,
                 "': more than one label property in the vertex element");
      il = kk;
    }
  }
  CMDR_CHECK(ix >= 0 && iy >= 0 && iz >= 0, "points: '", path,
             "': the vertex element lacks one of the properties x, y, z");
  const int64_t n = v.count;
  PointChunk c;
  c.path = path;
  c.xyz = Tensor::empty({n, 3});
  float* o = c.xyz.data();
  if (il >= 0) c.labels.resize(static_cast<std::size_t>(n));
  std::vector<double> row(v.props.size());
  if (ascii) {
    // Skip the lines of earlier elements (one line per item in ASCII PLY).
    std::string text(reinterpret_cast<const char*>(b.data() + pos), b.size() - pos);
    std::istringstream in(text);
    std::string l;
    int64_t ln = 0;
    for (std::size_t e = 0; e < vi; ++e)
      for (int64_t k = 0; k < els[e].count; ++k) {
        CMDR_CHECK(static_cast<bool>(std::getline(in, l)), "points: '", path,
                   "': PLY data ends inside element '", els[e].name, "'");
        ++ln;
      }
    for (int64_t i = 0; i < n; ++i) {
      CMDR_CHECK(static_cast<bool>(std::getline(in, l)), "points: '", path, "': PLY has ", i,
                 " vertex lines, the header declares ", n);
      ++ln;
      const std::vector<std::string> t = tokens(l);
      CMDR_CHECK(t.size() == v.props.size(), "points: '", path, "': vertex ", i, " has ", t.size(),
                 " values, the header declares ", v.props.size(), " properties");
      for (std::size_t k = 0; k < t.size(); ++k) row[k] = parse_num(t[k], path, ln);
      o[3 * i] = static_cast<float>(row[ix]);
      o[3 * i + 1] = static_cast<float>(row[iy]);
      o[3 * i + 2] = static_cast<float>(row[iz]);
      if (il >= 0) c.labels[i] = to_label(row[il], path, i);
    }
  } else {
    std::size_t p = pos;
    for (std::size_t e = 0; e < vi; ++e) {
      int64_t stride = 0;
      for (const PlyProp& q : els[e].props) {
        CMDR_CHECK(!q.list, "points: '", path, "': binary PLY element '", els[e].name,
                   "' before 'vertex' has a list property (not supported)");
        stride += ply_size(q.type);
      }
      p += static_cast<std::size_t>(stride * els[e].count);
    }
    int64_t stride = 0;
    for (const PlyProp& q : v.props) stride += ply_size(q.type);
    CMDR_CHECK(p <= b.size() && static_cast<int64_t>(b.size() - p) >= stride * n, "points: '", path,
               "': binary PLY data is ", b.size() - std::min(p, b.size()), " bytes, ", n,
               " vertices need ", stride * n);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* r = b.data() + p + static_cast<std::size_t>(i * stride);
      for (std::size_t k = 0; k < v.props.size(); ++k) {
        row[k] = ply_read(v.props[k].type, r);
        r += ply_size(v.props[k].type);
      }
      o[3 * i] = static_cast<float>(row[ix]);
      o[3 * i + 1] = static_cast<float>(row[iy]);
      o[3 * i + 2] = static_cast<float>(row[iz]);
      if (il >= 0) c.labels[i] = to_label(row[il], path, i);
    }
  }
  if (il >= 0) c.label_source = "in-file";
  return c;
}

std::vector<uint8_t> read_label_file(const std::string& path, int64_t n) {
  std::vector<uint8_t> out;
  const std::string ext = lower(fs::path(path).extension().string());
  if (ext == ".npy") {
    const NpyArray a = read_npy(path);
    CMDR_CHECK(!a.fortran_order || a.shape.size() < 2, "labels: '", path, "': Fortran order");
    CMDR_CHECK((a.shape.size() == 1 && a.shape[0] == n) ||
                   (a.shape.size() == 2 && a.shape[0] == n && a.shape[1] == 1),
               "labels: '", path, "': shape ", shape_str(a.shape), ", expected (", n, ",) or (", n,
               ", 1) for a chunk of ", n, " points");
    const std::string& d = a.descr;
    const bool ok = d == "|b1" || d == "|u1" || d == "|i1" || d == "<i4" || d == "<i8" ||
                    d == "<f4" || d == "<f8" || d == "<u1" || d == "<i1";
    CMDR_CHECK(ok, "labels: '", path, "': dtype '", d,
               "' not supported (bool, u1, i1, <i4, <i8, <f4, <f8)");
    out.resize(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* p = a.data.data() + i * a.item_size;
      double v = 0;
      if (d[1] == 'f') {
        v = a.item_size == 4 ? load_as<float>(p) : load_as<double>(p);
      } else if (d[1] == 'i') {
        v = a.item_size == 1   ? load_as<int8_t>(p)
            : a.item_size == 4 ? load_as<int32_t>(p)
                               : load_as<int64_t>(p);
      } else {
        v = p[0];
      }
      out[i] = to_label(v, path, i);
    }
  } else {
    std::ifstream f(path);
    CMDR_CHECK(f.good(), "labels: cannot open '", path, "'");
    std::string line;
    int64_t ln = 0;
    while (std::getline(f, line)) {
      ++ln;
      const std::vector<std::string> t = tokens(line);
      if (t.empty() || t[0][0] == '#') continue;
      CMDR_CHECK(t.size() == 1, "labels: '", path, "' line ", ln, ": ", t.size(),
                 " values, expected one 0/1 label per line");
      out.push_back(to_label(parse_num(t[0], path, ln), path, static_cast<int64_t>(out.size())));
    }
    CMDR_CHECK(static_cast<int64_t>(out.size()) == n, "labels: '", path, "' has ", out.size(),
               " labels, the chunk has ", n, " points");
  }
  return out;
}

std::string label_sidecar(const std::string& chunk_path) {
  const fs::path p(chunk_path);
  const fs::path stem = p.parent_path() / p.stem();
  for (const char* ext : {".labels.npy", ".labels.txt"}) {
    const std::string s = stem.string() + ext;
    if (fs::exists(s)) return s;
  }
  return "";
}

bool is_chunk_file(const std::string& path) {
  const std::string name = lower(fs::path(path).filename().string());
  const std::string ext = lower(fs::path(path).extension().string());
  if (ext != ".npy" && ext != ".xyz" && ext != ".ply") return false;
  return name.find(".labels.") == std::string::npos;
}

PointChunk read_point_chunk(const std::string& path) {
  CMDR_CHECK(fs::is_regular_file(path), "points: '", path, "' does not exist or is not a file");
  const std::string ext = lower(fs::path(path).extension().string());
  PointChunk c;
  if (ext == ".npy") {
    c = read_points_npy(path);
  } else if (ext == ".xyz") {
    c = read_points_xyz(path);
  } else if (ext == ".ply") {
    c = read_points_ply(path);
  } else {
    fail("points: '", path, "': unknown extension '", ext, "' (expected .npy, .xyz or .ply)");
  }
  const int64_t n = c.xyz.size(0);
  CMDR_CHECK(n > 0, "points: '", path, "' has no points");
  check_finite(c);
  const std::string side = label_sidecar(path);
  if (!side.empty()) {
    CMDR_CHECK(c.labels.empty(), "points: '", path, "' has in-file labels and a sidecar '", side,
               "': ambiguous, remove one");
    c.labels = read_label_file(side, n);
    c.label_source = side;
  }
  return c;
}

namespace {

void scan(const fs::path& dir, bool recurse_one, std::vector<PointFile>* out, bool good) {
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());
  for (const fs::path& p : entries) {
    if (fs::is_directory(p)) {
      if (recurse_one) scan(p, false, out, good || p.filename() == "good");
    } else if (is_chunk_file(p.string())) {
      out->push_back({p.string(), good});
    }
  }
}

}  // namespace

PointDataset list_point_dataset(const std::string& dir, bool need_train, bool need_test) {
  CMDR_CHECK(fs::is_directory(dir), "points: dataset folder '", dir, "' does not exist");
  PointDataset d;
  d.root = dir;
  const fs::path root(dir);
  auto sub = [&](const char* name, bool need, std::vector<PointFile>* out, bool good) {
    const fs::path p = root / name;
    if (!fs::is_directory(p)) {
      CMDR_CHECK(!need, "points: '", dir, "' has no '", name,
                 "/' folder (layout: ", point_dataset_help(), ")");
      return;
    }
    scan(p, true, out, good);
    CMDR_CHECK(!need || !out->empty(), "points: '", p.string(),
               "' has no chunk files (*.npy, *.xyz, *.ply)");
  };
  sub("train", need_train, &d.train, true);
  sub("validation", false, &d.validation, true);
  sub("test", need_test, &d.test, false);
  return d;
}

const char* point_dataset_help() {
  return "DIR/train/*.{npy,xyz,ply} normal chunks; optional DIR/validation/* normal chunks "
         "(threshold calibration); DIR/test/* and DIR/test/<sub>/* labelled chunks, "
         "DIR/test/good/* all-normal. A chunk is N×3 float32/float64 .npy, ASCII .xyz "
         "('x y z [label]') or .ply (ascii/binary_little_endian, vertex x,y,z [label]); "
         "per-point 0/1 labels in-file or in a sidecar <stem>.labels.npy / <stem>.labels.txt";
}

}  // namespace cmdr::io
