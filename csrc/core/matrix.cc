#include "matrix.h"

#include "error.h"

namespace fastergpt {

const char* element_name(ElementType t) {
  switch (t) {
    case ElementType::kF32: return "float32";
    case ElementType::kF16: return "float16";
    case ElementType::kI8: return "int8";
    case ElementType::kBF16: return "bfloat16";
    case ElementType::kI32: return "int32";
  }
  return "?";
}

int64_t element_bytes(ElementType t) {
  switch (t) {
    case ElementType::kF32: case ElementType::kI32: return 4;
    case ElementType::kF16: case ElementType::kBF16: return 2;
    case ElementType::kI8: return 1;
  }
  return 0;
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

std::vector<int64_t> storage_shape(WeightFormat f, int64_t rows, int64_t cols) {
  switch (format_info(f).layout) {
    case StorageLayout::kFloatBlocks16: return {q4_blocks(rows), 16 * cols};
    case StorageLayout::kByteBlocks16: return {q4_blocks(rows), 16 * q8_padded_cols(cols)};
    case StorageLayout::kNibbleBlocks16: return {q4_blocks(rows), 8 * q4_padded_cols(cols)};
    case StorageLayout::kPairBlocks16: return {q4_blocks(rows), 16 * bf16_padded_cols(cols)};
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
