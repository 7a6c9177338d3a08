// Declarations of the per-instruction-set inner loops (see simd_kernels.inc)
// and of the scalar activations they share with the reference tests. The
// activations are `static`: each ISA translation unit keeps its own copy, so
// the linker can never hand an AVX-512 build of them to a generic caller.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/kernels.h"

namespace fastergpt {
namespace cpu {

static inline float gelu_tanh(float v) {
  const float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
}

static inline float gelu_erf(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.7071067811865476f)); }

// y[m, n] (op)= scale[n] * dot(x[m, :], W[n, :]) + bias[n] for n in [n_begin, n_end).
using LinearRowsFn = void (*)(const float* x, int64_t M, const void* W, const float* scales,
                              int64_t K, int64_t N, int64_t n_begin, int64_t n_end,
                              const float* bias, Epilogue ep, float* y);
// out[K] = scale[row] * W[row, :] as floats.
using DequantizeRowFn = void (*)(const void* W, const float* scales, int64_t K, int64_t row,
                                 float* out);

#define FGPT_DECLARE_SIMD(ns)                                                           \
  namespace ns {                                                                        \
  void linear_f32_rows(const float*, int64_t, const void*, const float*, int64_t, int64_t, \
                       int64_t, int64_t, const float*, Epilogue, float*);               \
  void linear_f16_rows(const float*, int64_t, const void*, const float*, int64_t, int64_t, \
                       int64_t, int64_t, const float*, Epilogue, float*);               \
  void dequantize_f32_row(const void*, const float*, int64_t, int64_t, float*);         \
  void dequantize_f16_row(const void*, const float*, int64_t, int64_t, float*);         \
  void dequantize_i8_row(const void*, const float*, int64_t, int64_t, float*);          \
  float dot(const float* a, const float* b, int64_t n);                                 \
  void axpy(float a, const float* x, float* y, int64_t n);                              \
  double sum_exp(const float* x, int64_t n, float shift);                               \
  void quantize_rows(const float* x, int64_t M, int64_t K, int8_t* xs, float* sx);      \
  void linear_q8_rows(const int8_t* xs, const float* sx, int64_t M, const void* W,      \
                      const float* scales, int64_t K, int64_t N, int64_t n_begin,       \
                      int64_t n_end, const float* bias, Epilogue ep, float* y);         \
  }
FGPT_DECLARE_SIMD(generic)
FGPT_DECLARE_SIMD(avx2)
FGPT_DECLARE_SIMD(avx512)
FGPT_DECLARE_SIMD(avx512vnni)
#undef FGPT_DECLARE_SIMD

// The inner loops of the instruction set chosen for this CPU.
static_assert(static_cast<int>(WeightFormat::kF32) == 0 && static_cast<int>(WeightFormat::kF16) == 1 &&
                  static_cast<int>(WeightFormat::kI8) == 2,
              "SimdKernels tables are indexed by WeightFormat");

// Per-format entries are indexed by WeightFormat (the order of kWeightFormats);
// int8 matrices multiply quantised activations instead (linear_q8_rows).
struct SimdKernels {
  const char* name;
  LinearRowsFn linear_rows[2];  // float32, float16
  DequantizeRowFn dequantize_row[3];
  float (*dot)(const float*, const float*, int64_t);
  void (*axpy)(float, const float*, float*, int64_t);
  double (*sum_exp)(const float*, int64_t, float);  // sum exp(x[i] - shift)
  // int8 weights: per-row symmetric int8 activations (xs, scale sx), then
  // exact int32 dot products (VNNI where the CPU has it).
  void (*quantize_rows)(const float* x, int64_t M, int64_t K, int8_t* xs, float* sx);
  void (*linear_q8_rows)(const int8_t* xs, const float* sx, int64_t M, const void* W,
                         const float* scales, int64_t K, int64_t N, int64_t n_begin,
                         int64_t n_end, const float* bias, Epilogue ep, float* y);
};

const SimdKernels& simd();
// For tests: the kernels of a named ISA if this CPU and build have it, else null.
const SimdKernels* simd_by_name(const char* name);

}  // namespace cpu
}  // namespace fastergpt
