// attention() on the CPU: stores each token's keys/values in the cache, then runs
// each (block of consecutive queries, head) pair, the pairs split between threads.
// Also sum_exp(), exp_in_place() and max_first(), the softmax sums, weights and top logit
// the logits processors use.
//
// The cache holds float32 or float16 elements (kv_cache_dtype); one body serves both,
// through CacheElements<T>: a float16 cache rounds what it stores, and from there the
// arithmetic is the float32 one over the floats the halves hold.
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
namespace {

// The cache's elements of one type T, and the kernels that read them.
template <typename T>
struct CacheElements;
template <>
struct CacheElements<float> {
  static float* key(KVCache& c, int64_t l, int64_t r, int64_t h, int64_t s) { return c.key(l, r, h, s); }
  static float* value(KVCache& c, int64_t l, int64_t r, int64_t h, int64_t s) {
    return c.value(l, r, h, s);
  }
  static void store(const float* x, int64_t n, float* out) { std::memcpy(out, x, n * sizeof(float)); }
  static float dot(const float* q, const float* k, int64_t n) { return simd().dot(q, k, n); }
  static void axpy(float a, const float* v, float* y, int64_t n) { simd().axpy(a, v, y, n); }
  static constexpr auto dot_rows = &SimdKernels::dot_rows;
  static constexpr auto weighted_rows = &SimdKernels::weighted_rows;
  static constexpr auto attend_queries = &SimdKernels::attend_queries;
};
template <>
struct CacheElements<uint16_t> {
  static uint16_t* key(KVCache& c, int64_t l, int64_t r, int64_t h, int64_t s) {
    return c.key_half(l, r, h, s);
  }
  static uint16_t* value(KVCache& c, int64_t l, int64_t r, int64_t h, int64_t s) {
    return c.value_half(l, r, h, s);
  }
  static void store(const float* x, int64_t n, uint16_t* out) { simd().store_half(x, n, out); }
  static float dot(const float* q, const uint16_t* k, int64_t n) { return simd().dot_f16(q, k, n); }
  static void axpy(float a, const uint16_t* v, float* y, int64_t n) { simd().axpy_f16(a, v, y, n); }
  static constexpr auto dot_rows = &SimdKernels::dot_rows_f16;
  static constexpr auto weighted_rows = &SimdKernels::weighted_rows_f16;
  static constexpr auto attend_queries = &SimdKernels::attend_queries_f16;
};

// softmax(q.K^T * scale) V over n_keys contiguous keys: three SIMD calls (scores,
// exponentials, weighted sum), none per key.
template <typename T>
void attend_keys(const float* q, const T* K, const T* V, int64_t n_keys, int64_t Dh, float scale,
            float* out, float* scores) {
  using E = CacheElements<T>;
  const auto& k = simd();
  const float max_score = (k.*E::dot_rows)(q, K, Dh, n_keys, Dh, scale, scores);
  const float inv = static_cast<float>(1.0 / k.exp_shift(scores, n_keys, max_score));
  (k.*E::weighted_rows)(scores, inv, V, Dh, n_keys, Dh, out);
}

// attend() over keys/values gathered by source row: key j of the history is
// key(layer, src[j], head, j) (beam search's shared histories). The same
// arithmetic as attend(), key for key.
template <typename T>
void attend_gathered(const float* q, KVCache& cache, int64_t layer, int64_t head,
                    const int32_t* src, int64_t n_keys, float scale, float* out, float* scores) {
  using E = CacheElements<T>;
  const auto& k = simd();
  const int64_t Dh = cache.head_size();
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = E::dot(q, E::key(cache, layer, src[j], head, j), Dh) * scale;
    max_score = scores[j] > max_score ? scores[j] : max_score;
  }
  const float inv = static_cast<float>(1.0 / k.exp_shift(scores, n_keys, max_score));
  for (int64_t i = 0; i < Dh; ++i) out[i] = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j)
    E::axpy(scores[j] * inv, E::value(cache, layer, src[j], head, j), out, Dh);
}

}  // namespace

void attend(const float* q, const float* K, const float* V, int64_t n_keys, int64_t Dh,
            float scale, float* out, float* scores) {
  attend_keys<float>(q, K, V, n_keys, Dh, scale, out, scores);
}
void attend_sources(const float* q, KVCache& cache, int64_t layer, int64_t head,
                    const int32_t* src, int64_t n_keys, float scale, float* out, float* scores) {
  attend_gathered<float>(q, cache, layer, head, src, n_keys, scale, out, scores);
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

namespace {

// The keys and values of key/value heads [h0, h1) (all of them by default) of the M tokens.
template <typename Elem>
void store_kv_of(KVCache& cache, int64_t layer, int64_t H, const float* qkv,
                 const TokenSlot* slots, int64_t M, int64_t h0 = 0, int64_t h1 = -1) {
  using E = CacheElements<Elem>;
  const int64_t KVH = cache.heads(), Dh = cache.head_size();
  const int64_t stride = (H + 2 * KVH) * Dh, Q = H * Dh;
  if (h1 < 0) h1 = KVH;
  for (int64_t m = 0; m < M; ++m) {
    const float* t = qkv + m * stride;
    for (int64_t h = h0; h < h1; ++h) {
      E::store(t + Q + h * Dh, Dh, E::key(cache, layer, slots[m].row, h, slots[m].slot));
      E::store(t + Q + KVH * Dh + h * Dh, Dh,
               E::value(cache, layer, slots[m].row, h, slots[m].slot));
    }
  }
}

template <typename Elem>
void attention_of(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
                  const TokenSlot* slots, int64_t M, float* out) {
  using E = CacheElements<Elem>;
  const int64_t KVH = cache.heads(), Dh = cache.head_size(), group = H / KVH;
  const int64_t stride = (H + 2 * KVH) * Dh, Q = H * Dh;
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  // Runs of tokens of one row at consecutive slots (a prompt, or a prompt-lookup draft),
  // cut into blocks of at most `lanes`: a block of several queries goes through
  // attend_queries (each key read once for the block), a lone token through attend();
  // both give the same bits. Beam search's gathered histories take attend_sources().
  const auto& k = simd();
  const int64_t lanes = k.attention_lanes();
  const int64_t block_min = 2;  // (bench_kernels "draft block": from 2 queries a block is cheaper)
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
  // position (a late block of a prompt sees every earlier key). The items go head by
  // head, each head over every block: all heads cost the same, so a range of whole heads
  // is an even share, and each thread reads only its own heads' keys and values. Within
  // a head the blocks go largest, smallest, second largest, second smallest, ..., so
  // that a range ending inside a head (heads not a multiple of the threads) still takes
  // about its share of that head. (Block by block, in that order, a 147-token prompt of
  // 4 heads gave one of 2 threads 57% of the work; which thread runs an item changes
  // no number.)
  // A block's work: its queries times the keys the last of them sees.
  auto cost = [&](const Block& b) { return b.T * (slots[b.m].slot + b.T); };
  if (blocks.size() > 2) {
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
  const int64_t n_blocks = static_cast<int64_t>(blocks.size()), items = n_blocks * H;
  // Enough (block, head) items per thread to outweigh the hand-off, by an item's work
  // (counted by the first token's slot alone, an 84-token prompt's block was one key's
  // work: the grain took 18 of its 24 items, 79% of the work, to one thread).
  int64_t pairs = 0;
  for (const Block& b : blocks) pairs += cost(b);
  const int64_t per_item = std::max<int64_t>(1, pairs / n_blocks);
  const int64_t grain = ctx.pool().even_grain(items, 16384 / (Dh * per_item));
  // Where every share is whole key/value heads (the grain a multiple of a head's items),
  // each thread stores its own heads' new keys and values, which then stay in its core's
  // cache for the attention that reads them; else one thread stores them all first.
  // (Stored by the other thread, a decoding step's new keys and values crossed between
  // the cores twice.)
  const int64_t per_kv_head = group * n_blocks;
  const bool own_stores = grain % per_kv_head == 0;
  if (!own_stores) store_kv_of<Elem>(cache, layer, H, qkv, slots, M);
  ctx.pool().parallel_for(items, grain, [&](int64_t i0, int64_t i1) {
    if (own_stores)
      store_kv_of<Elem>(cache, layer, H, qkv, slots, M, i0 / per_kv_head, i1 / per_kv_head);
    thread_local std::vector<float> work;
    const size_t need = static_cast<size_t>((Dh + cache.max_length()) * std::max<int64_t>(lanes, 1));
    if (work.size() < need) work.resize(need);
    for (int64_t i = i0; i < i1; ++i) {
      const Block& b = blocks[i % n_blocks];
      const int64_t h = i / n_blocks;
      const TokenSlot& s = slots[b.m];
      if (b.T >= block_min) {
        (k.*E::attend_queries)(qkv + b.m * stride + h * Dh, stride,
                               E::key(cache, layer, s.row, h / group, 0),
                               E::value(cache, layer, s.row, h / group, 0), s.slot, b.T, Dh,
                               scale, out + b.m * Q + h * Dh, Q, work.data());
        continue;
      }
      for (int64_t m = b.m; m < b.m + b.T; ++m) {
        const TokenSlot& one = slots[m];
        if (cache.has_sources())
          attend_gathered<Elem>(qkv + m * stride + h * Dh, cache, layer, h / group,
                            cache.sources(one.row), one.slot + 1, scale, out + m * Q + h * Dh,
                            work.data());
        else
          attend_keys<Elem>(qkv + m * stride + h * Dh, E::key(cache, layer, one.row, h / group, 0),
                    E::value(cache, layer, one.row, h / group, 0), one.slot + 1, Dh, scale,
                    out + m * Q + h * Dh, work.data());
      }
    }
  });
}

}  // namespace

void store_kv(Context&, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
              const TokenSlot* slots, int64_t M) {
  if (cache.dtype() == KVDtype::kFloat16)
    store_kv_of<uint16_t>(cache, layer, H, qkv, slots, M);
  else
    store_kv_of<float>(cache, layer, H, qkv, slots, M);
}

void attention(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
               const TokenSlot* slots, int64_t M, float* out) {
  if (cache.dtype() == KVDtype::kFloat16)
    attention_of<uint16_t>(ctx, cache, layer, H, qkv, slots, M, out);
  else
    attention_of<float>(ctx, cache, layer, H, qkv, slots, M, out);
}

}  // namespace cpu

double sum_exp(const float* x, int64_t n, float shift) { return cpu::simd().sum_exp(x, n, shift); }
float max_first(const float* x, int64_t n, int64_t* first) {
  return cpu::simd().max_first(x, n, first);
}
void exp_in_place(float* x, int64_t n) { cpu::simd().exp_floats(x, n); }

}  // namespace fastergpt
