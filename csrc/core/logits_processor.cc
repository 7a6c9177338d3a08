#include "logits_processor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "error.h"
#include "kernels.h"

namespace fastergpt {

static const char* const kNonFinite =
    "the model's logits are not finite (NaN or Inf) at this step; its weights or activations "
    "overflow";

void apply_repetition_penalty(float* logits, const std::vector<int32_t>& seen, float penalty) {
  if (penalty == 1.0f) return;
  for (int32_t id : seen) {
    float& v = logits[id];
    v = v < 0.0f ? v * penalty : v / penalty;
  }
}

void mask_end_tokens(float* logits, const GenerationOptions& o) {
  if (o.eos_token_id >= 0) logits[o.eos_token_id] = -INFINITY;
  for (int64_t t : o.stop.end_token_ids) logits[t] = -INFINITY;
}

void ban_repeated_ngrams(float* logits, const int64_t* tokens, int64_t count, int64_t n) {
  if (n <= 0 || count < n) return;
  // The last n-1 tokens; a window whose first n-1 tokens equal them bans its last.
  const int64_t* prefix = tokens + count - (n - 1);
  for (int64_t i = 0; i + n <= count; ++i)
    if (std::equal(prefix, prefix + (n - 1), tokens + i)) logits[tokens[i + n - 1]] = -INFINITY;
}

// The largest of n floats, NaN aside (-inf if every one is NaN or -inf): max_first's
// (one SIMD pass), its index unused.
static float max_of(const float* x, int64_t n) {
  int64_t first;
  return max_first(x, n, &first);
}

static bool any_nan(const float* x, int64_t n) {
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) nan |= x[i] != x[i];
  return nan;
}

TokenChoice choose_greedy(const float* logits, int64_t vocab) {
  int64_t best;  // the lowest id with the top logit
  const float top = max_first(logits, vocab, &best);
  FGPT_CHECK(top > -INFINITY || !any_nan(logits, vocab), kNonFinite);
  FGPT_CHECK(top > -INFINITY, "every token is masked at this step (is min_length forcing out the only token?)");
  const double mass = sum_exp(logits, vocab, top);
  // A NaN anywhere makes the sum NaN: argmax over the rest would quietly pick a wrong token.
  FGPT_CHECK(std::isfinite(top) && std::isfinite(mass), kNonFinite);
  return {best, static_cast<float>(-std::log(mass))};
}

namespace {

// min_p (transformers' MinPLogitsWarper): drop candidates whose probability is
// below min_p x the top one's. weight = exp((logit - top) / T), so the top
// candidate weighs 1 and the test is weight >= min_p. Keeps the order.
int64_t keep_min_p(float min_p, int64_t n, int32_t* order, float* weight) {
  if (min_p <= 0.0f) return n;
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i)
    if (weight[i] >= min_p) {
      order[kept] = order[i];
      weight[kept++] = weight[i];
    }
  return kept;
}

// typical_p (transformers' TypicalLogitsWarper): rank candidates by how far
// their surprisal is from the distribution's entropy; keep the closest ones
// until their mass reaches typical_p (ties with the last kept one stay).
// Keeps the candidates' order.
int64_t keep_typical(float typical_p, int64_t n, int32_t* order, float* weight,
                     SamplerScratch& s) {
  if (typical_p >= 1.0f) return n;
  double mass = 0.0;
  for (int64_t i = 0; i < n; ++i) mass += weight[i];
  double entropy = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (weight[i] > 0.0f) {
      const double p = weight[i] / mass;
      entropy -= p * std::log(p);
    }
  s.shift.resize(n);
  s.rank.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const double p = weight[i] / mass;
    s.shift[i] = weight[i] > 0.0f ? std::fabs(-std::log(p) - entropy) : INFINITY;
    s.rank[i] = static_cast<int32_t>(i);
  }
  std::stable_sort(s.rank.begin(), s.rank.end(),
                   [&](int32_t a, int32_t b) { return s.shift[a] < s.shift[b]; });
  // The last rank whose mass before it is still below typical_p.
  double before = 0.0;
  int64_t last = 0;
  for (int64_t r = 0; r < n; ++r) {
    before += weight[s.rank[r]] / mass;
    if (before < typical_p) last = std::min(r + 1, n - 1);
  }
  const double cutoff = s.shift[s.rank[last]];
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i)
    if (s.shift[i] <= cutoff) {
      order[kept] = order[i];
      weight[kept++] = weight[i];
    }
  return kept;
}

}  // namespace

// The strict total order sampling ranks candidates by (logit descending, then id ascending,
// so ties are deterministic) as one unsigned integer per token, ascending: the logit's bits
// made monotone and inverted, then the id. Sorting and selecting these compares integers,
// where an order of ids compared through the logits read them at random.
static inline uint64_t rank_key(float logit, int64_t id) {
  uint32_t u;
  std::memcpy(&u, &logit, sizeof(u));
  if (logit == 0.0f) u = 0;  // -0.0 ties with +0.0
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (static_cast<uint64_t>(~ascending) << 32) | static_cast<uint32_t>(id);
}
static inline int32_t key_id(uint64_t key) { return static_cast<int32_t>(key & 0xffffffffu); }

// top_p over the head of the ranking, its weights w[0, head) in rank order: the number of
// candidates kept, the smallest prefix whose mass before its last candidate is below
// top_p x mass; -1 when the head ends first (so more of the ranking is needed).
static int64_t nucleus(const float* w, int64_t head, double mass, float top_p) {
  double before = 0.0;
  for (int64_t i = 0; i < head; ++i) {
    if (before / mass >= top_p) return i;
    before += w[i];
  }
  return before / mass >= top_p ? head : -1;
}

// Sorts ranking keys ascending. A long run (a broad nucleus: thousands of tokens) by a
// least-significant-byte-first radix sort, 8 stable counting passes, skipping a byte
// every key shares (an id's high bytes): 45000 keys 0.46 ms against std::sort's 2.39 ms
// (AMD EPYC Zen 5). A short one by std::sort.
static void sort_keys(std::vector<uint64_t>& keys, std::vector<uint64_t>& spare) {
  const size_t n = keys.size();
  if (n < 4096) {  // (measured: std::sort is the faster at 2048, 4.8x the slower at 8192)
    std::sort(keys.begin(), keys.end());
    return;
  }
  spare.resize(n);
  uint64_t* from = keys.data();
  uint64_t* to = spare.data();
  for (int shift = 0; shift < 64; shift += 8) {
    size_t start[256] = {};
    for (size_t i = 0; i < n; ++i) ++start[(from[i] >> shift) & 0xff];
    if (start[(from[0] >> shift) & 0xff] == n) continue;  // one value: the order stands
    size_t at = 0;
    for (size_t& c : start) {
      const size_t count = c;
      c = at;
      at += count;
    }
    for (size_t i = 0; i < n; ++i) to[start[(from[i] >> shift) & 0xff]++] = from[i];
    std::swap(from, to);
  }
  if (from != keys.data()) std::copy(from, from + n, keys.data());
}

// The k best of the ranking, in order, into keys: one pass holding the candidates that
// could still be among them (at most 2k), with the k-th best so far as a threshold. Most
// tokens fail one comparison against the threshold's logit; the buffer is cut back to its
// k best whenever it fills.
static void top_keys(const float* logits, int64_t vocab, int64_t k, std::vector<uint64_t>& keys,
                     std::vector<uint64_t>& spare) {
  keys.clear();
  const size_t cap = static_cast<size_t>(std::max<int64_t>(2 * k, 64));
  keys.reserve(cap);
  uint64_t threshold = ~uint64_t{0};
  float threshold_logit = -INFINITY;
  auto cut = [&] {
    std::nth_element(keys.begin(), keys.begin() + (k - 1), keys.end());
    keys.resize(k);
    threshold = keys[k - 1];
    threshold_logit = logits[key_id(threshold)];
  };
  for (int64_t i = 0; i < vocab; ++i) {
    if (logits[i] < threshold_logit) continue;  // ranks below the k-th best so far
    const uint64_t key = rank_key(logits[i], i);
    if (key >= threshold) continue;
    keys.push_back(key);
    if (keys.size() == cap) cut();
  }
  if (static_cast<int64_t>(keys.size()) > k) cut();
  sort_keys(keys, spare);
}

// w[i] = exp((logits[ids[i]] - top) * inv_t) for i < n (ids null: token i), through the
// vector exp: the scaled logits (<= 0) first, then the exp in place. A weight below 1e-37
// (exp(-85.2)) is 0: the vector exp stops at exp(-87), and a masked (-inf) token must weigh
// nothing. (std::exp gave 0 from about exp(-104), denormals above.)
static void weights_of(const float* logits, const int32_t* ids, int64_t n, float top, float inv_t,
                       float* w) {
  if (ids)
    for (int64_t i = 0; i < n; ++i) w[i] = (logits[ids[i]] - top) * inv_t;
  else  // (a loop of its own, which the compiler vectorises)
    for (int64_t i = 0; i < n; ++i) w[i] = (logits[i] - top) * inv_t;
  exp_in_place(w, n);
  for (int64_t i = 0; i < n; ++i) w[i] = w[i] < 1e-37f ? 0.0f : w[i];
}

// The first n of the ranking keys as ids and weights (rank order).
static void take_ranked(const float* logits, const uint64_t* keys, int64_t n, float top,
                        float inv_t, int32_t* order, float* weight) {
  for (int64_t i = 0; i < n; ++i) order[i] = key_id(keys[i]);
  weights_of(logits, order, n, top, inv_t, weight);
}

// The sum of n weights in double: four interleaved partial sums, then (0 + 1) + (2 + 3).
static double mass_of(const float* w, int64_t n) {
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; ++j) part[j] += w[i + j];
  for (; i < n; ++i) part[0] += w[i];
  return (part[0] + part[1]) + (part[2] + part[3]);
}

int64_t sampling_candidates(const float* logits, int64_t vocab, const GenerationOptions& o,
                            SamplerScratch& s) {
  const int64_t top_k = o.top_k;
  const float top_p = o.top_p;
  const int64_t kept_k = (top_k > 0 && top_k < vocab) ? top_k : vocab;
  const float top = max_of(logits, vocab);
  FGPT_CHECK(!any_nan(logits, vocab), kNonFinite);
  FGPT_CHECK(top > -INFINITY, "every token is masked at this step (is min_length forcing out the only token?)");
  FGPT_CHECK(std::isfinite(top), kNonFinite);
  // exp((logit - top) / T): the top candidate weighs 1.
  const float inv_t = static_cast<float>(1.0 / o.temperature);
  s.order.resize(vocab);
  s.weight.resize(vocab);
  int32_t* order = s.order.data();
  float* weight = s.weight.data();
  if (kept_k == vocab && top_p >= 1.0f) {  // every token, in id order
    weights_of(logits, nullptr, vocab, top, inv_t, weight);
    for (int64_t i = 0; i < vocab; ++i) order[i] = static_cast<int32_t>(i);
    return keep_typical(o.typical_p, keep_min_p(o.min_p, vocab, order, weight), order, weight, s);
  }
  int64_t n = vocab;
  if (kept_k < vocab) {
    // top_k: its candidates in rank order, their mass in that order.
    top_keys(logits, vocab, kept_k, s.keys, s.spare);
    take_ranked(logits, s.keys.data(), kept_k, top, inv_t, order, weight);
    double mass = 0.0;
    for (int64_t i = 0; i < kept_k; ++i) mass += weight[i];
    n = kept_k;
    if (top_p < 1.0f) {
      n = nucleus(weight, kept_k, mass, top_p);
      if (n < 0) n = kept_k;  // (rounding: the whole top_k falls short of top_p)
    }
  } else {
    // top_p over every token: the mass, and a histogram of it by how far below the top
    // each logit is (a quarter of 1 / T per bin). The bins up to the first whose running
    // mass reaches top_p hold the nucleus (higher logits, lower bins): only they are
    // ranked. Should rounding leave the nucleus unfinished there, every token is ranked.
    s.all.resize(vocab);
    float* all = s.all.data();  // every token's weight, by id
    weights_of(logits, nullptr, vocab, top, inv_t, all);
    const double mass = mass_of(all, vocab);
    constexpr int kBins = 256;
    double bin_mass[kBins] = {};
    s.bins.resize(vocab);
    uint8_t* bins = s.bins.data();
    for (int64_t i = 0; i < vocab; ++i) {
      const float below = (top - logits[i]) * inv_t;
      const int b = below < (kBins - 1) / 4.0f ? static_cast<int>(below * 4.0f) : kBins - 1;
      bins[i] = static_cast<uint8_t>(b);
      bin_mass[b] += all[i];
    }
    int last = 0;
    for (double running = bin_mass[0]; last < kBins - 1 && running < top_p * mass;)
      running += bin_mass[++last];
    // The tokens of bins [0, upto] ranked into order and weight (gathered from `all`); the
    // nucleus among them, or -1.
    auto nucleus_of_bins = [&](int upto) {
      s.keys.clear();
      for (int64_t i = 0; i < vocab; ++i)
        if (bins[i] <= upto) s.keys.push_back(rank_key(logits[i], i));
      sort_keys(s.keys, s.spare);
      const int64_t head = static_cast<int64_t>(s.keys.size());
      for (int64_t i = 0; i < head; ++i) {
        order[i] = key_id(s.keys[i]);
        weight[i] = all[order[i]];
      }
      return nucleus(weight, head, mass, top_p);
    };
    n = nucleus_of_bins(last);
    if (n < 0 && last < kBins - 1) n = nucleus_of_bins(kBins - 1);  // every token
    if (n < 0) n = vocab;
  }
  n = keep_min_p(o.min_p, n, order, weight);
  return keep_typical(o.typical_p, n, order, weight, s);
}

TokenChoice choose_sampled(const float* logits, int64_t vocab, const GenerationOptions& o,
                           double uniform, SamplerScratch& s) {
  const int64_t n = sampling_candidates(logits, vocab, o, s);
  const int32_t* order = s.order.data();
  const float* weight = s.weight.data();
  const double kept_mass = mass_of(weight, n);
  FGPT_CHECK(std::isfinite(kept_mass) && kept_mass > 0.0, kNonFinite);
  const double target = uniform * kept_mass;
  double acc = 0.0;
  int64_t pick = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (weight[i] <= 0.0f) continue;
    pick = i;  // the last positive-weight candidate absorbs rounding at the top end
    acc += weight[i];
    if (acc > target) break;
  }
  return {order[pick], static_cast<float>(std::log(weight[pick] / kept_mass))};
}

}  // namespace fastergpt
