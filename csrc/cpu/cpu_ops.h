// The CPU implementations of the Backend operations (csrc/core/kernels.h),
// one source file each; cpu_backend.cc puts them in the table.
#pragma once

#include "../core/kernels.h"

namespace fastergpt {
namespace cpu {

void linear(Context& ctx, const float* x, int64_t M, const Matrix& W, const float* bias,
            Epilogue epilogue, float* y);
void embed(Context& ctx, const Matrix& table, const float* positions, const int64_t* tokens,
           const TokenSlot* slots, int64_t M, float* x);
void layer_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma,
                const float* beta, float eps, float* y);
void attention(Context& ctx, KVCache& cache, int64_t layer, const float* qkv,
               const TokenSlot* slots, int64_t M, float* out);

// One query over a contiguous run of cached keys/values (single-threaded):
// out[Dh] = softmax(q.K^T * scale) V over K, V [n_keys, Dh]; `scores` holds n_keys floats.
void attend(const float* q, const float* K, const float* V, int64_t n_keys, int64_t Dh,
            float scale, float* out, float* scores);

}  // namespace cpu
}  // namespace fastergpt
