#pragma once
// Organized point clouds as float32 TIFF (SPEC 1): H×W pixels, 3 samples per pixel
// (X, Y, Z in metres), SampleFormat IEEEFP, 32 bits; a pixel without a measurement is
// (0,0,0). MVTec 3D-AD stores them contiguous (PlanarConfig 1), uncompressed, in strips;
// this reader also accepts tiles, separate planes and any libtiff compression.
// libtiff messages are captured per file (never printed) and quoted in the cmdr::Error.
#include <cstdint>
#include <string>

#include "engine/tensor.hpp"

namespace cmdr::io {

struct TiffInfo {
  int64_t width = 0, height = 0, samples = 0, bits = 0;
  std::string sample_format;  // "float", "uint", "int", "void"
  bool tiled = false;
  bool planar_separate = false;
};
// Header facts; throws naming the file if it is not a readable TIFF.
TiffInfo tiff_info(const std::string& path);

// Reads an xyz cloud as an H×W×3 tensor. NaN/Inf points are missing points: the whole pixel
// is set to (0,0,0). Their count goes to *nonfinite when given; otherwise a count > 0 is
// reported as a warning on stderr naming the file.
Tensor read_xyz_tiff(const std::string& path, int64_t* nonfinite = nullptr);

struct TiffWriteOptions {
  bool tiled = false;
  int64_t rows_per_strip = 0;  // 0: the whole image in one strip (as MVTec's files)
  int64_t tile = 16;           // tile side, a multiple of 16 (TIFF rule)
  bool deflate = false;
};
// Writes an H×W×3 tensor as float32, 3 samples/pixel, contiguous.
void write_xyz_tiff(const std::string& path, const Tensor& hw3, const TiffWriteOptions& opt = {});

}  // namespace cmdr::io
