// A read-only view of a packed weight matrix, as the kernels consume it.
// Linear layers store W as [N, K] (out rows, in columns): each output is the dot
// product of one contiguous row with the input, which is what a bandwidth-bound
// GEMV wants. The element format is a row of a table (`WeightFormat`); fp32 is
// the only one implemented so far, the others slot in as new rows with their
// scales, without changing the layer code.
#pragma once

#include <cstdint>

namespace fastergpt {

enum class WeightFormat {
  kF32,  // plain float32
};

struct Matrix {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;     // [rows, cols] in `format`
  const float* scales = nullptr;  // per-row scales for quantized formats, else null
  int64_t rows = 0;               // N (outputs)
  int64_t cols = 0;               // K (inputs)

  const float* f32() const { return static_cast<const float*>(data); }
};

}  // namespace fastergpt
