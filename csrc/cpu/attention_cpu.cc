// attention() on the CPU: stores each token's keys/values in the cache, then
// runs one attend() per (token, head) pair, the pairs split between threads.
// Also sum_exp(), the softmax denominator the logits processors use.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/context.h"
#include "cpu_ops.h"
#include "simd_kernels.h"

namespace fastergpt {
namespace cpu {

// softmax(q.K^T * scale) V over n_keys contiguous keys: three SIMD calls (scores,
// exponentials, weighted sum), none per key.
void attend(const float* q, const float* K, const float* V, int64_t n_keys, int64_t Dh,
            float scale, float* out, float* scores) {
  const auto& k = simd();
  const float max_score = k.dot_rows(q, K, Dh, n_keys, Dh, scale, scores);
  const float inv = static_cast<float>(1.0 / k.exp_shift(scores, n_keys, max_score));
  k.weighted_rows(scores, inv, V, Dh, n_keys, Dh, out);
}

// attend() over keys/values gathered by source row: key j of the history is
// cache.key(layer, src[j], head, j) (beam search's shared histories). The same
// arithmetic as attend(), key for key.
void attend_sources(const float* q, KVCache& cache, int64_t layer, int64_t head,
                    const int32_t* src, int64_t n_keys, float scale, float* out, float* scores) {
  const auto& k = simd();
  const int64_t Dh = cache.head_size();
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = k.dot(q, cache.key(layer, src[j], head, j), Dh) * scale;
    max_score = scores[j] > max_score ? scores[j] : max_score;
  }
  const float inv = static_cast<float>(1.0 / k.exp_shift(scores, n_keys, max_score));
  for (int64_t i = 0; i < Dh; ++i) out[i] = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j)
    k.axpy(scores[j] * inv, cache.value(layer, src[j], head, j), out, Dh);
}

void rotary(Context& ctx, float* qkv, const TokenSlot* slots, int64_t M, int64_t H, int64_t KVH,
            int64_t Dh, const RotaryTable& t) {
  const int64_t heads = H + KVH, stride = (H + 2 * KVH) * Dh, half = t.half;
  for (int64_t m = 0; m < M; ++m) {
    const float* c = t.cos + slots[m].slot * half;
    const float* s = t.sin + slots[m].slot * half;
    for (int64_t h = 0; h < heads; ++h) {  // the q heads, then the k heads
      float* v = qkv + m * stride + h * Dh;
      for (int64_t i = 0; i < half; ++i) {
        float* a = t.interleaved ? v + 2 * i : v + i;
        float* b = t.interleaved ? v + 2 * i + 1 : v + i + half;
        const float x = *a, y = *b;
        *a = x * c[i] - y * s[i];
        *b = y * c[i] + x * s[i];
      }
    }
  }
}

void attention(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
               const TokenSlot* slots, int64_t M, float* out) {
  const int64_t KVH = cache.heads(), Dh = cache.head_size(), group = H / KVH;
  const int64_t stride = (H + 2 * KVH) * Dh, Q = H * Dh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  for (int64_t m = 0; m < M; ++m) {
    const float* t = qkv + m * stride;
    for (int64_t h = 0; h < KVH; ++h) {
      std::memcpy(cache.key(layer, slots[m].row, h, slots[m].slot), t + Q + h * Dh,
                  Dh * sizeof(float));
      std::memcpy(cache.value(layer, slots[m].row, h, slots[m].slot), t + Q + KVH * Dh + h * Dh,
                  Dh * sizeof(float));
    }
  }
  // Enough (token, head) pairs per thread to outweigh the hand-off.
  const int64_t grain = std::max<int64_t>(1, 16384 / (Dh * (slots[0].slot + 1)));
  ctx.pool().parallel_for(M * H, grain, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> scores;
    if (static_cast<int64_t>(scores.size()) < cache.max_length()) scores.resize(cache.max_length());
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m = t / H, h = t % H;
      const TokenSlot& s = slots[m];
      if (cache.has_sources())
        attend_sources(qkv + m * stride + h * Dh, cache, layer, h / group, cache.sources(s.row),
                       s.slot + 1, scale, out + m * Q + h * Dh, scores.data());
      else
        attend(qkv + m * stride + h * Dh, cache.key(layer, s.row, h / group, 0),
               cache.value(layer, s.row, h / group, 0), s.slot + 1, Dh, scale,
               out + m * Q + h * Dh, scores.data());
    }
  });
}

}  // namespace cpu

double sum_exp(const float* x, int64_t n, float shift) { return cpu::simd().sum_exp(x, n, shift); }

}  // namespace fastergpt
