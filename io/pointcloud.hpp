#pragma once
// Unorganised point-cloud chunks for the 3D-only experiment (issue 5 item 6: the paper's
// polyurethane data): readers for `.npy`, ASCII `.xyz` and `.ply`, per-point 0/1 labels,
// and the dataset folder layout.
//
// Formats (every rejection is a cmdr::Error naming the file and what was found):
//  - `.npy`: NPY format 1.0/2.0/3.0, C order, little-endian (or byte-order-free) float32
//    ('<f4') or float64 ('<f8'), shape (N, 3). Anything else (other dtype, big-endian,
//    Fortran order, other shape, truncated data) is rejected.
//  - `.xyz`: ASCII, one point per line "x y z" or "x y z label" (whitespace or commas);
//    blank lines and lines starting with '#' are skipped; every point line must have the
//    same column count (3 or 4). The 4th column is the point's 0/1 label.
//  - `.ply`: header `format ascii 1.0` or `format binary_little_endian 1.0`; the `vertex`
//    element must have float/double (or any scalar) properties x, y, z; an optional scalar
//    property named `label`, `scalar_label`, `class` or `scalar_class` holds the 0/1 label.
//    Elements before `vertex` are skipped (binary: scalar properties only); list properties
//    inside `vertex` and binary_big_endian are rejected.
// Labels: the in-file label (4th .xyz column / PLY label property) when present; otherwise a
// sidecar next to the chunk: `<stem>.labels.npy` (N or N×1; bool, u1, i1, i4, i8, f4 or f8
// holding 0/1) or `<stem>.labels.txt` (N lines, each 0 or 1). In-file labels plus a sidecar
// is an error (ambiguous). Label values other than 0/1 are an error.
//
// Dataset layout (`--points DIR`):
//   DIR/train/           normal chunks for training (labels, if any, are ignored except for
//                        a warning when a point is labelled 1)
//   DIR/validation/      optional normal chunks; used to calibrate the decision threshold
//   DIR/test/            test chunks; each needs per-point labels (in-file or sidecar) ...
//   DIR/test/good/       ... except chunks under a folder named `good`, which are all-normal
//   DIR/test/<any>/      one level of sub-folders is scanned (labels required as above)
// Chunk files are `*.npy`, `*.xyz`, `*.ply` (sidecars `*.labels.npy|txt` are not chunks),
// taken in sorted path order.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.hpp"

namespace cmdr::io {

// A parsed NPY array: the raw little-endian data with its dtype descriptor and shape.
struct NpyArray {
  std::string descr;  // e.g. "<f4"
  bool fortran_order = false;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // product(shape) × item size bytes
  int64_t item_size = 0;
};
// Parses the NPY header strictly (magic, version, header length, the dict keys 'descr',
// 'fortran_order', 'shape' and nothing else) and reads the data. Throws naming `path`.
NpyArray read_npy(const std::string& path);
// Same from bytes already in memory (`label` names the source in errors).
NpyArray parse_npy(const std::string& label, const uint8_t* bytes, std::size_t size);
// Writes a float32 little-endian C-order array (for tests and tools). Shape 1-d or 2-d.
void write_npy_f32(const std::string& path, const std::vector<int64_t>& shape, const float* data);

struct PointChunk {
  std::string path;
  Tensor xyz;                   // [N, 3] float32
  std::vector<uint8_t> labels;  // [N] 0/1, or empty when the chunk has no labels
  std::string label_source;     // "", "in-file", or the sidecar path
};

PointChunk read_points_npy(const std::string& path);  // labels left empty
PointChunk read_points_xyz(const std::string& path);  // 4th column -> labels
PointChunk read_points_ply(const std::string& path);  // label property -> labels
// Per-point labels from a sidecar file (.npy or .txt) for a chunk of n points.
std::vector<uint8_t> read_label_file(const std::string& path, int64_t n);
// The sidecar of a chunk, if one exists ("" otherwise): <stem>.labels.npy, then .txt.
std::string label_sidecar(const std::string& chunk_path);
// Reads a chunk by extension (.npy/.xyz/.ply, case-insensitive) and attaches its labels
// (in-file or sidecar, see above). Rejects N = 0 and non-finite coordinates.
PointChunk read_point_chunk(const std::string& path);

// True for a chunk file name (.npy/.xyz/.ply but not a *.labels.* sidecar).
bool is_chunk_file(const std::string& path);

struct PointFile {
  std::string path;
  bool known_good = false;  // under a `good` folder: all-normal without labels
};
struct PointDataset {
  std::string root;
  std::vector<PointFile> train, validation, test;
};
// Lists DIR per the layout above. Errors when DIR/train or DIR/test is missing (naming
// which is needed) — `need_train` / `need_test` select which must exist.
PointDataset list_point_dataset(const std::string& dir, bool need_train, bool need_test);

// The layout description used by --help.
const char* point_dataset_help();

}  // namespace cmdr::io
