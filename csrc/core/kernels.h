// The operations the decoder is built from, as the generator calls them.
// Implemented per device: csrc/cpu/*_cpu.cc today (csrc/cuda later, behind the
// same declarations). Shapes use M rows (tokens), K inputs, N outputs, D hidden,
// Dh head size. All buffers are float32, row-major, contiguous.
#pragma once

#include <cstdint>

#include "matrix.h"
#include "model_config.h"
#include "thread_pool.h"

namespace fastergpt {

// What linear() does with each result element after adding the bias.
enum class Epilogue {
  kStore,       // y = xW^T + b
  kGeluTanh,    // y = gelu_tanh(xW^T + b)
  kGeluErf,     // y = gelu_erf(xW^T + b)
  kAccumulate,  // y += xW^T + b  (the residual add, fused)
};

inline Epilogue gelu_epilogue(Activation a) {
  return a == Activation::kGeluTanh ? Epilogue::kGeluTanh : Epilogue::kGeluErf;
}

// y[M, N] (op)= x[M, K] * W[N, K]^T + bias[N]; bias may be null. W in any
// WeightFormat; accumulation is float32 for every format.
void linear(const float* x, int64_t M, const Matrix& W, const float* bias, Epilogue epilogue,
            float* y, ThreadPool& pool);

// out[K] = row `row` of W as floats (scales applied): embedding lookups from a
// compressed token table.
void dequantize_row(const Matrix& W, int64_t row, float* out);

// y[M, D] = layer_norm(x[M, D]) * gamma + beta.
void layer_norm(const float* x, int64_t M, int64_t D, const float* gamma, const float* beta,
                float eps, float* y, ThreadPool& pool);

// One attention query against a cached key/value sequence:
// out[Dh] = softmax(q.K^T * scale) V over K, V [n_keys, Dh].
// `scores` is scratch of at least n_keys floats.
void attend(const float* q, const float* K, const float* V, int64_t n_keys, int64_t Dh,
            float scale, float* out, float* scores);

// sum_i exp(x[i] - shift) over n floats, SIMD (~2 ulp per term); shift >= max(x).
double sum_exp(const float* x, int64_t n, float shift);

// Best of `repeats` timed passes reading `bytes` of memory with every pool
// thread, in GB/s: the machine's read bandwidth for the roofline.
double measure_read_bandwidth(int64_t bytes, int repeats, ThreadPool& pool);

// Name of the SIMD path the CPU kernels picked at run time ("avx512", "avx2", "generic").
const char* cpu_isa_name();

}  // namespace fastergpt
