// A read-only view of a packed weight matrix, as the kernels consume it.
// Linear layers store W as [N, K] (out rows, in columns): each output is the dot
// product of one contiguous row with the input, which is what a bandwidth-bound
// GEMV wants. Decoding at small batch reads every weight once per token, so the
// element format decides the speed: each format is one row of kWeightFormats.
#pragma once

#include <cstdint>
#include <string>

namespace fastergpt {

enum class WeightFormat {
  kF32,  // float32
  kF16,  // IEEE half, converted to float32 in registers; fp32 accumulation
  kI8,   // int8 weight-only, symmetric, one float32 scale per output row:
         // W[n, k] ~= scale[n] * q[n, k]; fp32 accumulation
};

struct WeightFormatInfo {
  WeightFormat format;
  const char* name;      // as adapters and config files spell it
  int bytes_per_weight;  // element size in the packed matrix
  bool has_row_scales;   // a [rows] float32 scale tensor follows the matrix
};

constexpr WeightFormatInfo kWeightFormats[] = {
    {WeightFormat::kF32, "float32", 4, false},
    {WeightFormat::kF16, "float16", 2, false},
    {WeightFormat::kI8, "int8", 1, true},
};

const WeightFormatInfo& format_info(WeightFormat f);
// "float32" / "float16" / "int8" (also "fp32", "fp16"); throws Error naming the value.
WeightFormat parse_weight_format(const std::string& name);

struct Matrix {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;     // [rows, cols] elements of `format`
  const float* scales = nullptr;  // [rows] for formats with row scales, else null
  int64_t rows = 0;               // N (outputs)
  int64_t cols = 0;               // K (inputs)
};

}  // namespace fastergpt
