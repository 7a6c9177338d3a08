// The GPU's row-wise and element-wise ops: embedding lookup, LayerNorm and
// RMSNorm (statistics in double, as on the CPU), rotary embedding, the gated
// MLP's activation, and the small additions. One block per row where a row
// reduces, one thread per element elsewhere.
#include "../core/activation_math.h"
#include "cuda_common.h"
#include "cuda_ops.h"

namespace fastergpt {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// The sum of v over the block (every thread gets it); `shared` holds a value per warp.
__device__ double block_sum(double v, double* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read from the previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  double total = 0.0;
  for (int w = 0; w < static_cast<int>(blockDim.x) / 32; ++w) total += shared[w];
  return total;
}

template <class T>
__global__ void embed_rows(const T* __restrict__ table, const float* __restrict__ positions,
                           const int64_t* __restrict__ tokens, const TokenSlot* __restrict__ slots,
                           int64_t E, float* x) {
  const int64_t m = blockIdx.x;
  const T* row = table + tokens[m] * E;
  const float* pe = positions ? positions + slots[m].slot * E : nullptr;
  for (int64_t i = threadIdx.x; i < E; i += blockDim.x)
    x[m * E + i] = element(row, i) + (pe ? pe[i] : 0.0f);
}

__global__ void layer_norm_rows(const float* x, int64_t D, const float* __restrict__ gamma,
                                const float* __restrict__ beta, float eps, float* y) {
  __shared__ double shared[32];
  const float* xr = x + blockIdx.x * D;
  float* yr = y + blockIdx.x * D;
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) sum += xr[i];
  const double mean = block_sum(sum, shared) / D;
  double sq = 0.0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    const double d = xr[i] - mean;
    sq += d * d;
  }
  const float inv = static_cast<float>(1.0 / sqrt(block_sum(sq, shared) / D + eps));
  const float mu = static_cast<float>(mean);
  __syncthreads();  // every thread has read x before y (which may be x) is written
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x)
    yr[i] = (xr[i] - mu) * inv * gamma[i] + (beta ? beta[i] : 0.0f);
}

__global__ void rms_norm_rows(const float* x, int64_t D, const float* __restrict__ gamma,
                              float eps, float* y) {
  __shared__ double shared[32];
  const float* xr = x + blockIdx.x * D;
  float* yr = y + blockIdx.x * D;
  double sq = 0.0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) sq += double(xr[i]) * xr[i];
  const float inv = static_cast<float>(1.0 / sqrt(block_sum(sq, shared) / D + eps));
  __syncthreads();
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) yr[i] = gamma[i] * (xr[i] * inv);
}

// One thread per (token, head, pair): the q heads, then the k heads.
__global__ void rotary_pairs(float* qkv, const TokenSlot* __restrict__ slots, int64_t M,
                             int64_t heads, int64_t stride, int64_t Dh, RotaryTable t) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= M * heads * t.half) return;
  const int64_t pair = i % t.half, h = (i / t.half) % heads, m = i / (t.half * heads);
  float* v = qkv + m * stride + h * Dh;
  const int64_t at = slots[m].slot * t.half + pair;
  if (t.interleaved) rotate_pair(v + 2 * pair, v + 2 * pair + 1, t.cos[at], t.sin[at]);
  else rotate_pair(v + pair, v + pair + t.half, t.cos[at], t.sin[at]);
}

__global__ void glu_elements(const float* __restrict__ in, int64_t M, int64_t F, Activation act,
                             float* __restrict__ out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= M * F) return;
  const int64_t m = i / F, f = i % F;
  out[i] = activate(act, in[m * 2 * F + f]) * in[m * 2 * F + F + f];
}

__global__ void add_elements(const float* __restrict__ src, int64_t n, float* dst) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] += src[i];
}

__global__ void add_position_rows(const float* __restrict__ positions,
                                  const TokenSlot* __restrict__ slots, int64_t D, float* x) {
  const int64_t m = blockIdx.x;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) x[m * D + i] += positions[slots[m].slot * D + i];
}

// Saturated at the largest half (+-65504), so a large activation stays large instead of
// becoming infinite (and its row NaN); NaN stays NaN.
__global__ void to_half_elements(const float* __restrict__ in, int64_t n, __half* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float v = in[i];
  out[i] = __float2half_rn(v != v ? v : fminf(fmaxf(v, -65504.0f), 65504.0f));
}

}  // namespace

void embed(Context&, const Matrix& table, const float* positions, const int64_t* tokens,
           const TokenSlot* slots, int64_t M, float* x) {
  if (M == 0) return;
  EnqueueLock lock(enqueue_mutex());
  cudaStream_t stream = state().stream;
  const int64_t* d_tokens = upload(Scratch::kTokens, tokens, M);
  const TokenSlot* d_slots = upload(Scratch::kSlots, slots, M);
  const unsigned rows = static_cast<unsigned>(M);
  if (table.format == WeightFormat::kF32)
    embed_rows<<<rows, kThreads, 0, stream>>>(static_cast<const float*>(table.data), positions,
                                              d_tokens, d_slots, table.cols, x);
  else
    embed_rows<<<rows, kThreads, 0, stream>>>(static_cast<const __half*>(table.data), positions,
                                              d_tokens, d_slots, table.cols, x);
  check_launch("embed");
}

void layer_norm(Context&, const float* x, int64_t M, int64_t D, const float* gamma,
                const float* beta, float eps, float* y) {
  if (M == 0) return;
  layer_norm_rows<<<static_cast<unsigned>(M), kThreads, 0, state().stream>>>(x, D, gamma, beta,
                                                                              eps, y);
  check_launch("layer_norm");
}

void rms_norm(Context&, const float* x, int64_t M, int64_t D, const float* gamma, float eps,
              float* y) {
  if (M == 0) return;
  rms_norm_rows<<<static_cast<unsigned>(M), kThreads, 0, state().stream>>>(x, D, gamma, eps, y);
  check_launch("rms_norm");
}

void rotary(Context&, float* qkv, const TokenSlot* slots, int64_t M, int64_t H, int64_t KVH,
            int64_t Dh, const RotaryTable& table) {
  EnqueueLock lock(enqueue_mutex());
  const int64_t n = M * (H + KVH) * table.half;
  if (n == 0) return;
  const TokenSlot* d_slots = upload(Scratch::kSlots, slots, M);
  rotary_pairs<<<blocks_for(n, kThreads), kThreads, 0, state().stream>>>(
      qkv, d_slots, M, H + KVH, (H + 2 * KVH) * Dh, Dh, table);
  check_launch("rotary");
}

void glu(Context&, const float* in, int64_t M, int64_t F, Activation act, float* out) {
  if (M * F == 0) return;
  glu_elements<<<blocks_for(M * F, kThreads), kThreads, 0, state().stream>>>(in, M, F, act, out);
  check_launch("glu");
}

void add(Context&, const float* src, int64_t n, float* dst) {
  if (n == 0) return;
  add_elements<<<blocks_for(n, kThreads), kThreads, 0, state().stream>>>(src, n, dst);
  check_launch("add");
}

void add_positions(Context&, const float* positions, const TokenSlot* slots, int64_t M, int64_t D,
                   float* x) {
  EnqueueLock lock(enqueue_mutex());
  if (M == 0) return;
  const TokenSlot* d_slots = upload(Scratch::kSlots, slots, M);
  add_position_rows<<<static_cast<unsigned>(M), kThreads, 0, state().stream>>>(positions, d_slots,
                                                                                D, x);
  check_launch("add_positions");
}

void to_half(const float* in, int64_t n, void* out) {
  if (n == 0) return;
  to_half_elements<<<blocks_for(n, kThreads), kThreads, 0, state().stream>>>(
      in, n, static_cast<__half*>(out));
  check_launch("to_half");
}

}  // namespace cuda
}  // namespace fastergpt
