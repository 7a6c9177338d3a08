// linear() on the GPU: the product, then one kernel for the bias and the epilogue.
// The product: cuBLAS in float32; float16 weights at a few rows (decoding) go through a
// GEMV of this file that reads the half weights with the float32 activations, as the CPU
// does, and at more rows (prompts, batches) through cuBLAS on the tensor cores, with the
// activations rounded to half (saturated at +-65504) and float32 accumulation.
//
// y[M, N] = x[M, K] W[N, K]^T is, in cuBLAS's column-major terms, the [N, M]
// matrix W x^T: W row-major is a K x N column-major matrix, taken transposed.
#include "../core/activation_math.h"
#include "cuda_common.h"
#include "cuda_ops.h"

namespace fastergpt {
namespace cuda {
namespace {

constexpr int kGemvRows = 8;  // up to this many rows, float16 weights take the GEMV

// y[m, n] = sum_k x[m, k] W[n, k] for m < M <= kGemvRows; W half, row-major [N, K]. One
// warp per output row: the lanes read W's row in order (pairs of halves when K is even),
// float32 products and sums, then a shuffle reduction per token row.
__global__ void gemv_half(const __half* __restrict__ W, const float* __restrict__ x, int M,
                          int64_t N, int64_t K, float* __restrict__ y) {
  const int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (n >= N) return;
  const __half* w = W + n * K;
  float acc[kGemvRows] = {};
  if (K % 2 == 0) {
    const __half2* w2 = reinterpret_cast<const __half2*>(w);
    for (int64_t k2 = lane; k2 < K / 2; k2 += 32) {
      const float2 wf = __half22float2(w2[k2]);
#pragma unroll
      for (int m = 0; m < kGemvRows; ++m)
        if (m < M) {
          const float2 xv = *reinterpret_cast<const float2*>(x + m * K + 2 * k2);
          acc[m] += wf.x * xv.x + wf.y * xv.y;
        }
    }
  } else {
    for (int64_t k = lane; k < K; k += 32) {
      const float wk = __half2float(w[k]);
#pragma unroll
      for (int m = 0; m < kGemvRows; ++m)
        if (m < M) acc[m] += wk * x[m * K + k];
    }
  }
#pragma unroll
  for (int m = 0; m < kGemvRows; ++m) {
    float v = acc[m];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0 && m < M) y[m * N + n] = v;
  }
}

// y[m, n] = epilogue((p[m, n] + bias[n]), old y[m, n]); p may be y.
__global__ void bias_epilogue(const float* p, const float* __restrict__ bias,
                              int64_t M, int64_t N, Epilogue e, float* y) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= M * N) return;
  const float v = p[i] + (bias ? bias[i % N] : 0.0f);
  y[i] = epilogue_value(e, v, y[i]);
}

}  // namespace

void linear(Context&, const float* x, int64_t M, const Matrix& W, const float* bias,
            Epilogue epilogue, float* y) {
  EnqueueLock lock(enqueue_mutex());
  DeviceState& s = state();
  const int64_t N = W.rows, K = W.cols;
  if (M == 0 || N == 0) return;
  // The product goes straight into y unless the epilogue needs y's old values
  // (the residual add keeps the CPU's order: y + (xW + b)).
  const bool direct = epilogue != Epilogue::kAccumulate;
  float* product = direct ? y : static_cast<float*>(scratch(Scratch::kProduct, M * N * 4));
  const float one = 1.0f, zero = 0.0f;
  if (W.format == WeightFormat::kF32) {
    check(cublasGemmEx(s.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                       static_cast<int>(K), &one, W.data, CUDA_R_32F, static_cast<int>(K), x,
                       CUDA_R_32F, static_cast<int>(K), &zero, product, CUDA_R_32F,
                       static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "linear (float32 GEMM)");
  } else if (W.format == WeightFormat::kF16 && M <= kGemvRows) {
    const int threads = 256, rows_per_block = threads / 32;
    gemv_half<<<blocks_for(N, rows_per_block), threads, 0, s.stream>>>(
        static_cast<const __half*>(W.data), x, static_cast<int>(M), N, K, product);
    check_launch("linear (float16 GEMV)");
  } else if (W.format == WeightFormat::kF16) {
    void* xh = scratch(Scratch::kHalfInput, M * K * 2);
    to_half(x, M * K, xh);
    check(cublasGemmEx(s.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                       static_cast<int>(K), &one, W.data, CUDA_R_16F, static_cast<int>(K), xh,
                       CUDA_R_16F, static_cast<int>(K), &zero, product, CUDA_R_32F,
                       static_cast<int>(N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "linear (float16 GEMM)");
  } else {
    throw Error(std::string("linear: weight format ") + format_info(W.format).name +
                " has no CUDA kernel");
  }
  if (direct && !bias && epilogue == Epilogue::kStore) return;
  const int threads = 256;
  bias_epilogue<<<blocks_for(M * N, threads), threads, 0, s.stream>>>(product, bias, M, N,
                                                                      epilogue, y);
  check_launch("linear's epilogue");
}

}  // namespace cuda
}  // namespace fastergpt
