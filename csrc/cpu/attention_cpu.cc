// attention() on the CPU: stores each token's keys/values in the cache, then runs
// each (block of consecutive queries, head) pair, the pairs split between threads.
// Also sum_exp(), the softmax denominator the logits processors use.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/activation_math.h"
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
        rotate_pair(t.interleaved ? v + 2 * i : v + i, t.interleaved ? v + 2 * i + 1 : v + i + half,
                    c[i], s[i]);
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
  // Runs of tokens of one row at consecutive slots (a prompt, or a prompt-lookup draft),
  // cut into blocks of at most `lanes`: a block of several queries goes through
  // attend_queries (each key read once for the block), a lone token through attend();
  // both give the same bits. Beam search's gathered histories take attend_sources().
  const auto& k = simd();
  const int64_t lanes = k.attention_lanes();
  const int64_t block_min = std::max<int64_t>(2, lanes / 4);  // fewer: attend() is cheaper
  struct Block {
    int64_t m, T;
  };
  std::vector<Block> blocks;
  for (int64_t m = 0; m < M;) {
    int64_t T = 1;
    while (!cache.has_sources() && T < lanes && m + T < M && slots[m + T].row == slots[m].row &&
           slots[m + T].slot == slots[m].slot + T)
      ++T;
    blocks.push_back({m, T});
    m += T;
  }
  // The threads take contiguous ranges of items, and a block's cost grows with its
  // position (a late block of a prompt sees every earlier key): in prompt order the
  // second of 2 threads got 3/4 of a long prompt's work. Ordered largest, smallest,
  // second largest, second smallest, ... any contiguous range holds near-equal pairs.
  // (Which thread runs a block changes no number.)
  if (blocks.size() > 2) {
    auto cost = [&](const Block& b) { return b.T * (slots[b.m].slot + b.T); };
    std::stable_sort(blocks.begin(), blocks.end(),
                     [&](const Block& a, const Block& b) { return cost(a) > cost(b); });
    std::vector<Block> zigzag;
    zigzag.reserve(blocks.size());
    for (size_t lo = 0, hi = blocks.size(); lo < hi;) {
      zigzag.push_back(blocks[lo++]);
      if (lo < hi) zigzag.push_back(blocks[--hi]);
    }
    blocks.swap(zigzag);
  }
  const int64_t items = static_cast<int64_t>(blocks.size()) * H;
  // Enough (block, head) items per thread to outweigh the hand-off.
  const int64_t per_block = std::max<int64_t>(1, M / static_cast<int64_t>(blocks.size()));
  const int64_t grain = std::max<int64_t>(1, 16384 / (Dh * (slots[0].slot + 1) * per_block));
  ctx.pool().parallel_for(items, grain, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> work;
    const size_t need = static_cast<size_t>((Dh + cache.max_length()) * std::max<int64_t>(lanes, 1));
    if (work.size() < need) work.resize(need);
    for (int64_t i = i0; i < i1; ++i) {
      const Block& b = blocks[i / H];
      const int64_t h = i % H;
      const TokenSlot& s = slots[b.m];
      if (b.T >= block_min) {
        k.attend_queries(qkv + b.m * stride + h * Dh, stride, cache.key(layer, s.row, h / group, 0),
                         cache.value(layer, s.row, h / group, 0), s.slot, b.T, Dh, scale,
                         out + b.m * Q + h * Dh, Q, work.data());
        continue;
      }
      for (int64_t m = b.m; m < b.m + b.T; ++m) {
        const TokenSlot& one = slots[m];
        if (cache.has_sources())
          attend_sources(qkv + m * stride + h * Dh, cache, layer, h / group, cache.sources(one.row),
                         one.slot + 1, scale, out + m * Q + h * Dh, work.data());
        else
          attend(qkv + m * stride + h * Dh, cache.key(layer, one.row, h / group, 0),
                 cache.value(layer, one.row, h / group, 0), one.slot + 1, Dh, scale,
                 out + m * Q + h * Dh, work.data());
      }
    }
  });
}

}  // namespace cpu

double sum_exp(const float* x, int64_t n, float shift) { return cpu::simd().sum_exp(x, n, shift); }

}  // namespace fastergpt
