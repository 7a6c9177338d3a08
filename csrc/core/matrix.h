// Weight formats and the read-only view of a packed weight matrix.
//
// Linear layers store W as [N, K] (out rows, in columns): each output is the
// dot product of one contiguous row with the input, which is what a
// bandwidth-bound GEMV wants. Decoding at small batch reads every weight once
// per token, so the format decides the speed. Each format is ONE row of
// kWeightFormats: how it is stored, its scales and how its kernels take their
// activations; the per-ISA kernels of a format sit in the CPU kernel table
// under the same index (csrc/cpu/simd_kernels.h), Python's pack/unpack in
// fastergpt/quantize.py under the same name, and everything else (the CLIs'
// choices, the checks) reads this list.
#pragma once

#include <cstdint>
#include <string>

namespace fastergpt {

// How one tensor element is stored (what an adapter's tensor dtype must be).
enum class ElementType { kF32, kF16, kI8 };
const char* element_name(ElementType t);  // "float32", "float16", "int8"

enum class WeightFormat { kF32, kF16, kI8 };
constexpr int kNumWeightFormats = 3;

enum class ScaleLayout {
  kNone,    // the stored values are the weights
  kPerRow,  // a float32 [N] tensor "<matrix>.scale" follows the matrix: W[n, :] ~= s[n] * q[n, :]
};

// What a format's kernels multiply the weights with.
enum class ActivationInput {
  kFloat,    // float32 activations, fp32 FMA
  kInt8Rows, // activations quantised to int8 per row first, exact int32 dot products
};

struct WeightFormatInfo {
  WeightFormat format;
  const char* name;          // as adapters, config files and CLIs spell it
  const char* alias;         // a second accepted spelling, or ""
  ElementType element;       // storage of the matrix
  int bits;                  // bits per stored weight
  ScaleLayout scales;
  ActivationInput activations;
  const char* description;
};

constexpr WeightFormatInfo kWeightFormats[kNumWeightFormats] = {
    {WeightFormat::kF32, "float32", "fp32", ElementType::kF32, 32, ScaleLayout::kNone,
     ActivationInput::kFloat, "float32 weights"},
    {WeightFormat::kF16, "float16", "fp16", ElementType::kF16, 16, ScaleLayout::kNone,
     ActivationInput::kFloat, "IEEE half weights, converted in registers; fp32 accumulation"},
    {WeightFormat::kI8, "int8", "", ElementType::kI8, 8, ScaleLayout::kPerRow,
     ActivationInput::kInt8Rows,
     "symmetric int8 weights with a float32 scale per output row; int8 activations per row, "
     "exact int32 sums (VNNI where the CPU has it)"},
};

const WeightFormatInfo& format_info(WeightFormat f);
// A format by name or alias; throws Error naming the value and the known names.
WeightFormat parse_weight_format(const std::string& name);

struct Matrix {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;     // [rows, cols] elements of the format's storage
  const float* scales = nullptr;  // [rows] for ScaleLayout::kPerRow, else null
  int64_t rows = 0;               // N (outputs)
  int64_t cols = 0;               // K (inputs)
};

}  // namespace fastergpt
