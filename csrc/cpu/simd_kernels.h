// Declarations of the per-instruction-set inner loops (see simd_kernels.inc)
// and of the scalar activations they share with the reference tests. The
// activations are `static`: each ISA translation unit keeps its own copy, so
// the linker can never hand an AVX-512 build of them to a generic caller.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/activation_math.h"
#include "../core/kernels.h"
#include "../core/matrix.h"

namespace fastergpt {
namespace cpu {

static inline float gelu_tanh(float v) {
  const float kSqrt2OverPi = 0.7978845608028654f;
  return 0.5f * v * (1.0f + std::tanh(kSqrt2OverPi * (v + 0.044715f * v * v * v)));
}

static inline float gelu_erf(float v) { return gelu_erf_scalar(v); }

// y[m, n] (op)= dot(x[m, :], W[n, :]) + bias[n] for n in [n_begin, n_end), n_begin a
// multiple of the format's block of rows.
using LinearRowsFn = void (*)(const float* x, int64_t M, const Matrix& W, int64_t n_begin,
                              int64_t n_end, const float* bias, Epilogue ep, float* y);
// out[cols] = row `row` of W as floats.
using DequantizeRowFn = void (*)(const Matrix& W, int64_t row, float* out);

#define FGPT_DECLARE_SIMD(ns)                                                           \
  namespace ns {                                                                        \
  void linear_f32_rows(const float*, int64_t, const Matrix&, int64_t, int64_t,          \
                       const float*, Epilogue, float*);                                 \
  void linear_f16_rows(const float*, int64_t, const Matrix&, int64_t, int64_t,          \
                       const float*, Epilogue, float*);                                 \
  void linear_bf16_rows(const float*, int64_t, const Matrix&, int64_t, int64_t,         \
                        const float*, Epilogue, float*);                                \
  void dequantize_bf16_row(const Matrix&, int64_t, float*);                             \
  void dequantize_f32_row(const Matrix&, int64_t, float*);                              \
  void dequantize_f16_row(const Matrix&, int64_t, float*);                              \
  void dequantize_i8_row(const Matrix&, int64_t, float*);                               \
  void dequantize_i4_row(const Matrix&, int64_t, float*);                               \
  float dot(const float* a, const float* b, int64_t n);                                 \
  void axpy(float a, const float* x, float* y, int64_t n);                              \
  double sum_exp(const float* x, int64_t n, float shift);                               \
  float max_first(const float* x, int64_t n, int64_t* first);                           \
  float dot_rows(const float* q, const float* K, int64_t ld, int64_t n, int64_t Dh,     \
                 float scale, float* scores);                                           \
  double exp_shift(float* x, int64_t n, float shift);                                   \
  void exp_floats(float* x, int64_t n);                                                 \
  void weighted_rows(const float* p, float inv, const float* V, int64_t ld, int64_t n,  \
                     int64_t Dh, float* out);                                           \
  void attend_queries(const float* Q, int64_t ldq, const float* K, const float* V,      \
                      int64_t n0, int64_t T, int64_t Dh, float scale, float* out,       \
                      int64_t ldo, float* work);                                        \
  int attention_lanes();                                                                \
  void store_half(const float* x, int64_t n, uint16_t* out);                            \
  float dot_f16(const float* a, const uint16_t* b, int64_t n);                          \
  void axpy_f16(float a, const uint16_t* x, float* y, int64_t n);                       \
  float dot_rows_f16(const float* q, const uint16_t* K, int64_t ld, int64_t n,          \
                     int64_t Dh, float scale, float* scores);                           \
  void weighted_rows_f16(const float* p, float inv, const uint16_t* V, int64_t ld,      \
                         int64_t n, int64_t Dh, float* out);                            \
  void attend_queries_f16(const float* Q, int64_t ldq, const uint16_t* K,               \
                          const uint16_t* V, int64_t n0, int64_t T, int64_t Dh,         \
                          float scale, float* out, int64_t ldo, float* work);           \
  void quantize_rows(const float* x, int64_t M, int64_t K, const int32_t* columns,     \
                     int8_t* xs, float* sx);                                            \
  void linear_q8_rows(const int8_t* xs, const float* sx, int64_t M, const Matrix& W,    \
                      int64_t n_begin, int64_t n_end, const float* bias, Epilogue ep,   \
                      float* y);                                                        \
  void linear_q4_rows(const int8_t* xs, const float* sx, int64_t M, const Matrix& W,     \
                      int64_t n_begin, int64_t n_end, const float* bias, Epilogue ep,   \
                      float* y);                                                        \
  void layer_norm_rows(const float* x, int64_t M, int64_t D, const float* gamma,        \
                       const float* beta, float eps, float* y);                         \
  void rms_norm_rows(const float* x, int64_t M, int64_t D, const float* gamma,          \
                     float eps, float* y);                                              \
  void glu_rows(const float* in, int64_t M, int64_t F, Activation act, float* out);     \
  }
FGPT_DECLARE_SIMD(generic)
FGPT_DECLARE_SIMD(avx2)
FGPT_DECLARE_SIMD(avx512)
FGPT_DECLARE_SIMD(avx512vnni)
FGPT_DECLARE_SIMD(avx512bf16)
#undef FGPT_DECLARE_SIMD

// matmul_precision=bfloat16 (AVX-512 BF16 only): x as bfloat16 pairs, [M, bf16_pair_words(K)] words
// (to_bf16_pairs), times float32 / float16 weights rounded to bfloat16 in registers.
using Bf16RowsFn = void (*)(const uint32_t* xb, int64_t M, const Matrix& W, int64_t n_begin,
                            int64_t n_end, const float* bias, Epilogue ep, float* y);
namespace avx512bf16 {
void to_bf16_pairs(const float* x, int64_t M, int64_t K, uint32_t* out);
void linear_f32_rows_bf16(const uint32_t*, int64_t, const Matrix&, int64_t, int64_t, const float*,
                          Epilogue, float*);
void linear_f16_rows_bf16(const uint32_t*, int64_t, const Matrix&, int64_t, int64_t, const float*,
                          Epilogue, float*);
void linear_bf16_rows_bf16(const uint32_t*, int64_t, const Matrix&, int64_t, int64_t, const float*,
                           Epilogue, float*);
}  // namespace avx512bf16

// The instruction sets the library is built for, narrowest first (tests go through them all).
constexpr const char* kIsaNames[] = {"generic", "avx2", "avx512", "avx512vnni", "avx512bf16"};

// int8 activations times a format's weights (ActivationInput::kInt8Rows): y rows
// [n_begin, n_end), n_begin a multiple of the format's block of rows.
using Q8RowsFn = void (*)(const int8_t* xs, const float* sx, int64_t M, const Matrix& W,
                          int64_t n_begin, int64_t n_end, const float* bias, Epilogue ep,
                          float* y);

// int8 activations times a grouped format's weights (ActivationInput::kInt8Groups):
// y rows [n_begin, n_end), n_begin a multiple of the format's block of rows.
using Q4RowsFn = void (*)(const int8_t* xs, const float* sx, int64_t M, const Matrix& W,
                          int64_t n_begin, int64_t n_end, const float* bias, Epilogue ep,
                          float* y);

// One weight format's kernels on one ISA: the CPU half of its row in
// kWeightFormats (csrc/core/matrix.h). Which linear entry is set follows the
// row's ActivationInput.
struct FormatKernels {
  LinearRowsFn float_rows;  // ActivationInput::kFloat
  Q8RowsFn int8_rows;       // ActivationInput::kInt8Rows
  Q4RowsFn int8_groups;     // ActivationInput::kInt8Groups
  DequantizeRowFn dequantize_row;
  Bf16RowsFn bf16_rows;     // kFloat under matmul_precision=bfloat16; null without AVX-512 BF16
};

// The inner loops of one instruction set.
struct SimdKernels {
  const char* name;
  FormatKernels formats[kNumWeightFormats];  // indexed by WeightFormat
  float (*dot)(const float*, const float*, int64_t);
  void (*axpy)(float, const float*, float*, int64_t);
  double (*sum_exp)(const float*, int64_t, float);  // sum exp(x[i] - shift)
  float (*max_first)(const float*, int64_t, int64_t*);  // max(x), its lowest index
  // Attention over contiguous key / value rows (csrc/cpu/attention_cpu.cc).
  float (*dot_rows)(const float*, const float*, int64_t, int64_t, int64_t, float, float*);
  double (*exp_shift)(float*, int64_t, float);  // x = exp(x - shift) in place; their sum
  void (*exp_floats)(float*, int64_t);  // x = exp(x) in place, x <= 0 (the sampler's weights)
  void (*weighted_rows)(const float*, float, const float*, int64_t, int64_t, int64_t, float*);
  // A block of <= attention_lanes() consecutive queries of one head at once (the prompt
  // pass), bit for bit what the three above give each query alone.
  void (*attend_queries)(const float* Q, int64_t ldq, const float* K, const float* V, int64_t n0,
                         int64_t T, int64_t Dh, float scale, float* out, int64_t ldo, float* work);
  int (*attention_lanes)();
  // Per-row symmetric int8 activations (xs, scale sx) for kInt8Rows formats; `columns`
  // (an act-order matrix's column order, or null) picks x[m, columns[k]] as column k.
  void (*quantize_rows)(const float* x, int64_t M, int64_t K, const int32_t* columns,
                        int8_t* xs, float* sx);
  // A float16 KV cache (kv_cache_dtype=float16): what it stores for n floats (clamped to
  // +-65504, rounded to nearest even), and the attention helpers above over float16 keys
  // and values, each bit for bit its float32 twin over the floats they hold.
  void (*store_half)(const float* x, int64_t n, uint16_t* out);
  float (*dot_f16)(const float*, const uint16_t*, int64_t);
  void (*axpy_f16)(float, const uint16_t*, float*, int64_t);
  float (*dot_rows_f16)(const float*, const uint16_t*, int64_t, int64_t, int64_t, float, float*);
  void (*weighted_rows_f16)(const float*, float, const uint16_t*, int64_t, int64_t, int64_t,
                            float*);
  void (*attend_queries_f16)(const float* Q, int64_t ldq, const uint16_t* K, const uint16_t* V,
                             int64_t n0, int64_t T, int64_t Dh, float scale, float* out,
                             int64_t ldo, float* work);
  // x [M, K] as bfloat16 pairs for the bf16_rows kernels; null without AVX-512 BF16.
  void (*to_bf16_pairs)(const float* x, int64_t M, int64_t K, uint32_t* out);
  // M rows of D: LayerNorm (beta may be null) and RMSNorm, statistics in double
  // (simd_norm.inc: the same bits on every ISA).
  void (*layer_norm_rows)(const float* x, int64_t M, int64_t D, const float* gamma,
                          const float* beta, float eps, float* y);
  void (*rms_norm_rows)(const float* x, int64_t M, int64_t D, const float* gamma, float eps,
                        float* y);
  // M rows of a gated MLP: out[m, i] = act(in[m, i]) * in[m, F + i] (in rows of 2F).
  void (*glu_rows)(const float* in, int64_t M, int64_t F, Activation act, float* out);

  const FormatKernels& of(WeightFormat f) const { return formats[static_cast<int>(f)]; }
};

// The kernels of the instruction set chosen for this CPU, once per process.
const SimdKernels& simd();
// For tests: the kernels of a named ISA if this CPU and build have it, else null.
const SimdKernels* simd_by_name(const char* name);

}  // namespace cpu
}  // namespace fastergpt
