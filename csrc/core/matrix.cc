#include "matrix.h"

#include <algorithm>

#include "error.h"

namespace fastergpt {

const char* element_name(ElementType t) {
  switch (t) {
    case ElementType::kF32: return "float32";
    case ElementType::kF16: return "float16";
    case ElementType::kI8: return "int8";
  }
  return "?";
}

const WeightFormatInfo& format_info(WeightFormat f) {
  for (const auto& info : kWeightFormats)
    if (info.format == f) return info;
  fail("unknown weight format");
}

int64_t q4_group_size(int64_t cols, int64_t groups) {
  int64_t g = 8;
  while (g * groups < cols) g *= 2;
  return g;
}

void int8_row_sums(const Matrix& W, int64_t block_begin, int64_t block_end, int32_t* out) {
  const int64_t Kp = q8_padded_cols(W.cols);
  const auto* data = static_cast<const int8_t*>(W.data);
  for (int64_t b = block_begin; b < block_end; ++b) {
    int32_t sums[16] = {};
    const int8_t* block = data + b * 16 * Kp;
    for (int64_t s = 0; s < Kp / 4; ++s) {  // 64 bytes per step: row r's 4 at 4r
      const int8_t* q = block + s * 64;
      for (int r = 0; r < 16; ++r) sums[r] += q[4 * r] + q[4 * r + 1] + q[4 * r + 2] + q[4 * r + 3];
    }
    std::copy(sums, sums + 16, out + (b - block_begin) * 16);
  }
}

std::vector<int64_t> storage_shape(WeightFormat f, int64_t rows, int64_t cols) {
  switch (format_info(f).layout) {
    case StorageLayout::kFloatBlocks16: return {q4_blocks(rows), 16 * cols};
    case StorageLayout::kByteBlocks16: return {q4_blocks(rows), 16 * q8_padded_cols(cols)};
    case StorageLayout::kNibbleBlocks16: return {q4_blocks(rows), 8 * q4_padded_cols(cols)};
  }
  fail("unknown storage layout");
}

WeightFormat parse_weight_format(const std::string& name) {
  std::string known;
  for (const auto& info : kWeightFormats) {
    if (name == info.name || (info.alias[0] && name == info.alias)) return info.format;
    known += (known.empty() ? "" : ", ") + std::string(info.name);
  }
  fail("weight_format: unsupported '", name, "' (expected one of ", known, ")");
}

}  // namespace fastergpt
