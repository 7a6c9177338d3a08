// The CUDA implementations of the Backend operations (csrc/core/kernels.h);
// cuda_backend.cu puts them in the table. Every pointer is device memory
// except the per-pass index arrays (tokens, slots), which come from the host.
#pragma once

#include "../core/kernels.h"

namespace fastergpt {
namespace cuda {

// linear_cuda.cu
void linear(Context& ctx, const float* x, int64_t M, const Matrix& W, const float* bias,
            Epilogue epilogue, float* y);

// elementwise_cuda.cu
void embed(Context& ctx, const Matrix& table, const float* positions, const int64_t* tokens,
           const TokenSlot* slots, int64_t M, float* x);
void layer_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma,
                const float* beta, float eps, float* y);
void rms_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma, float eps,
              float* y);
void rotary(Context& ctx, float* qkv, const TokenSlot* slots, int64_t M, int64_t H, int64_t KVH,
            int64_t Dh, const RotaryTable& table);
void glu(Context& ctx, const float* in, int64_t M, int64_t F, Activation act, float* out);
void add(Context& ctx, const float* src, int64_t n, float* dst);
void add_positions(Context& ctx, const float* positions, const TokenSlot* slots, int64_t M,
                   int64_t D, float* x);
// out[n] = half(in[n]) (fp16 GEMM operands).
void to_half(const float* in, int64_t n, void* out);

// attention_cuda.cu
void store_kv(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
              const TokenSlot* slots, int64_t M);
void attention(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
               const TokenSlot* slots, int64_t M, float* out);

}  // namespace cuda
}  // namespace fastergpt
