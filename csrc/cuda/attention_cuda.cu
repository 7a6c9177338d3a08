// Attention over the KV cache on the GPU (the masked multi-head attention of
// decoding, and of a prompt's tokens over their rows' history): first every
// token's K/V go to their cache slots, then one block per (token, query head)
// scores its row's history into a scratch row, normalises it and sums the
// values. With beam search's source tables, position t of a row is read from
// the row that wrote it, as on the CPU.
#include <algorithm>
#include <cfloat>

#include "../core/kv_cache.h"
#include "cuda_common.h"
#include "cuda_ops.h"

namespace fastergpt {
namespace cuda {
namespace {

constexpr int kThreads = 256;

struct CacheView {
  float* keys;   // layer's base: [rows, heads, max_length, Dh]
  float* values;
  int64_t row_stride, head_stride, max_length, Dh;
  __device__ int64_t at(int64_t row, int64_t head, int64_t slot) const {
    return row * row_stride + head * head_stride + slot * Dh;
  }
};

__global__ void write_kv(const float* __restrict__ qkv, int64_t stride, int64_t q_size,
                         int64_t KVH, const TokenSlot* __restrict__ slots, CacheView c) {
  const int64_t m = blockIdx.x, kv = KVH * c.Dh;
  const float* k = qkv + m * stride + q_size;
  for (int64_t j = threadIdx.x; j < kv; j += blockDim.x) {
    const int64_t at = c.at(slots[m].row, j / c.Dh, slots[m].slot) + j % c.Dh;
    c.keys[at] = k[j];
    c.values[at] = k[kv + j];
  }
}

template <class Op>
__device__ float block_reduce(float v, float* shared, Op op, float identity) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float r = identity;
  for (int w = 0; w < static_cast<int>(blockDim.x) / 32; ++w) r = op(r, shared[w]);
  return r;
}

// Block (i, h): token m0 + i, query head h. Shared memory: q [Dh], the value partial
// sums [groups, Dh], 32 floats for the reductions.
__global__ void attend_heads(const float* __restrict__ qkv, int64_t stride, int64_t H,
                             int64_t group, const TokenSlot* __restrict__ slots,
                             const int32_t* __restrict__ sources, CacheView c, float scale,
                             int64_t m0, float* scores_all, float* out) {
  extern __shared__ float shared[];
  const int64_t Dh = c.Dh, m = m0 + blockIdx.x, h = blockIdx.y, kvh = h / group;
  float* q = shared;
  float* partial = shared + Dh;
  float* reduce = partial + blockDim.x;
  const int64_t row = slots[m].row, n = slots[m].slot + 1;
  const int32_t* src = sources ? sources + row * c.max_length : nullptr;
  float* scores = scores_all + (blockIdx.x * H + h) * c.max_length;
  for (int64_t d = threadIdx.x; d < Dh; d += blockDim.x) q[d] = qkv[m * stride + h * Dh + d];
  __syncthreads();

  float local_max = -FLT_MAX;
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    const float* k = c.keys + c.at(src ? src[t] : row, kvh, t);
    float dot = 0.0f;
    for (int64_t d = 0; d < Dh; ++d) dot += q[d] * k[d];
    const float s = dot * scale;
    scores[t] = s;
    local_max = fmaxf(local_max, s);
  }
  const float max_score =
      block_reduce(local_max, reduce, [](float a, float b) { return fmaxf(a, b); }, -FLT_MAX);
  float local_sum = 0.0f;
  for (int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    const float e = expf(scores[t] - max_score);
    scores[t] = e;
    local_sum += e;
  }
  const float sum = block_reduce(local_sum, reduce, [](float a, float b) { return a + b; }, 0.0f);
  // (block_reduce's barriers also make every scores[t] written above visible to the block)

  // Thread (g, d): g-th share of the positions, output element d.
  const int64_t groups = blockDim.x / Dh, g = threadIdx.x / Dh, d = threadIdx.x % Dh;
  if (g < groups) {
    float acc = 0.0f;
    for (int64_t t = g; t < n; t += groups) acc += scores[t] * c.values[c.at(src ? src[t] : row, kvh, t) + d];
    partial[g * Dh + d] = acc;
  }
  __syncthreads();
  if (threadIdx.x < Dh) {
    float acc = 0.0f;
    for (int64_t j = 0; j < groups; ++j) acc += partial[j * Dh + threadIdx.x];
    out[(m * H + h) * Dh + threadIdx.x] = acc / sum;
  }
}

// `layer` of the cache as the kernels index it.
CacheView cache_view(KVCache& cache, int64_t layer) {
  const int64_t KVH = cache.heads(), Dh = cache.head_size(), L = cache.max_length();
  return {cache.key(layer, 0, 0, 0), cache.value(layer, 0, 0, 0), KVH * L * Dh, L * Dh, L, Dh};
}

// Enqueues the store of M tokens' K/V (qkv rows of H query heads and view's KV heads;
// their slots already on the device) at their slots; `what` names it in a launch error.
void enqueue_write_kv(const float* qkv, int64_t H, int64_t KVH, const TokenSlot* d_slots,
                      int64_t M, const CacheView& view, cudaStream_t stream, const char* what) {
  write_kv<<<static_cast<unsigned>(M), kThreads, 0, stream>>>(qkv, (H + 2 * KVH) * view.Dh,
                                                              H * view.Dh, KVH, d_slots, view);
  check_launch(what);
}

}  // namespace

void store_kv(Context&, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
              const TokenSlot* slots, int64_t M) {
  if (M == 0) return;
  EnqueueLock lock(enqueue_mutex());
  const TokenSlot* d_slots = upload(Scratch::kSlots, slots, M);
  enqueue_write_kv(qkv, H, cache.heads(), d_slots, M, cache_view(cache, layer), state().stream,
                   "storing K/V");
}

void attention(Context&, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
               const TokenSlot* slots, int64_t M, float* out) {
  if (M == 0) return;
  const int64_t KVH = cache.heads(), Dh = cache.head_size(), L = cache.max_length();
  FGPT_CHECK(Dh <= kThreads, "attention on the GPU: head size ", Dh, " is over ", kThreads);
  EnqueueLock lock(enqueue_mutex());
  cudaStream_t stream = state().stream;
  const TokenSlot* d_slots = upload(Scratch::kSlots, slots, M);
  const int32_t* d_sources =
      cache.has_sources() ? upload(Scratch::kSources, cache.sources(), cache.rows() * L) : nullptr;
  const CacheView view = cache_view(cache, layer);
  const int64_t stride = (H + 2 * KVH) * Dh;
  enqueue_write_kv(qkv, H, KVH, d_slots, M, view, stream, "attention (storing K/V)");
  // The score rows of at most 64M floats at a time.
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(M, (int64_t(64) << 20) / (H * L)));
  float* scores = static_cast<float*>(scratch(Scratch::kScores, chunk * H * L * 4));
  const size_t shared = static_cast<size_t>(Dh + kThreads + 32) * sizeof(float);
  const float scale = 1.0f / sqrtf(static_cast<float>(Dh));
  for (int64_t m0 = 0; m0 < M; m0 += chunk) {
    const dim3 grid(static_cast<unsigned>(std::min(chunk, M - m0)), static_cast<unsigned>(H));
    attend_heads<<<grid, kThreads, shared, stream>>>(qkv, stride, H, H / KVH, d_slots, d_sources,
                                                     view, scale, m0, scores, out);
    check_launch("attention");
  }
}

}  // namespace cuda
}  // namespace fastergpt
