// linear() on the GPU: one cuBLAS GEMM (float32, or IEEE half operands with
// float32 accumulation), then one kernel for the bias and the epilogue.
//
// y[M, N] = x[M, K] W[N, K]^T is, in cuBLAS's column-major terms, the [N, M]
// matrix W x^T: W row-major is a K x N column-major matrix, taken transposed.
#include "../core/activation_math.h"
#include "cuda_common.h"
#include "cuda_ops.h"

namespace fastergpt {
namespace cuda {
namespace {

// y[m, n] = epilogue((p[m, n] + bias[n]), old y[m, n]).
__global__ void bias_epilogue(const float* __restrict__ p, const float* __restrict__ bias,
                              int64_t M, int64_t N, Epilogue e, float* y) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= M * N) return;
  const float v = p[i] + (bias ? bias[i % N] : 0.0f);
  y[i] = epilogue_value(e, v, y[i]);
}

}  // namespace

void linear(Context&, const float* x, int64_t M, const Matrix& W, const float* bias,
            Epilogue epilogue, float* y) {
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
