// The CPU implementations of the Backend operations (csrc/core/kernels.h),
// one source file each; cpu_backend.cc puts them in the table.
#pragma once

#include "../core/kernels.h"
#include "huge_pages.h"  // place_weights

namespace fastergpt {
namespace cpu {

// Asks for every cache line of a small block of activations at once, before a kernel
// reads it. The block was mostly just written by the other threads (each wrote its own
// columns of every row), so its lines sit in other cores' caches; read as the kernel
// walks them, each such line is a stall of its own, while requested together they
// arrive side by side. Blocks past 32 KB (a prompt's rows) are left to the hardware
// prefetcher: they would not stay in L1.
inline void request_lines(const void* p, int64_t bytes) {
  if (bytes > (32 << 10)) return;
  const char* c = static_cast<const char*>(p);
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(c + i);
}

// memory_cpu.cc
void* allocate(int64_t bytes);
void deallocate(void* p);
void copy(void* dst, const void* src, int64_t bytes, CopyKind kind);
Matrix bind_matrix(const Matrix& m, std::vector<DeviceBlock>* keep);
const float* bind_vector(const float* v, int64_t n, std::vector<DeviceBlock>* keep);
void add(Context& ctx, const float* src, int64_t n, float* dst);
void add_positions(Context& ctx, const float* positions, const TokenSlot* slots, int64_t M,
                   int64_t D, float* x);

void linear(Context& ctx, const float* x, int64_t M, const Matrix& W, const float* bias,
            Epilogue epilogue, float* y);
// The chosen instruction set multiplies bfloat16 pairs (matmul_precision=bfloat16).
bool has_bf16_matmul();
void embed(Context& ctx, const Matrix& table, const float* positions, const int64_t* tokens,
           const TokenSlot* slots, int64_t M, float* x);
void layer_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma,
                const float* beta, float eps, float* y);
void rms_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma, float eps,
              float* y);
void rotary(Context& ctx, float* qkv, const TokenSlot* slots, int64_t M, int64_t H, int64_t KVH,
            int64_t Dh, const RotaryTable& table);
void glu(Context& ctx, const float* in, int64_t M, int64_t F, Activation act, float* out);
void store_kv(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
              const TokenSlot* slots, int64_t M);
void attention(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
               const TokenSlot* slots, int64_t M, float* out);

// One query over a contiguous run of cached keys/values (single-threaded):
// out[Dh] = softmax(q.K^T * scale) V over K, V [n_keys, Dh]; `scores` holds n_keys floats.
void attend(const float* q, const float* K, const float* V, int64_t n_keys, int64_t Dh,
            float scale, float* out, float* scores);
// The same over a history gathered by source row: key j is cache.key(layer, src[j], head, j).
void attend_sources(const float* q, KVCache& cache, int64_t layer, int64_t head,
                    const int32_t* src, int64_t n_keys, float scale, float* out, float* scores);

}  // namespace cpu
}  // namespace fastergpt
