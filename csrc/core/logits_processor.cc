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

TokenChoice choose_greedy(const float* logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = i;
  const float top = logits[best];
  FGPT_CHECK(!std::isnan(top), kNonFinite);
  FGPT_CHECK(top > -INFINITY, "every token is masked at this step (is min_length forcing out the only token?)");
  const double mass = sum_exp(logits, vocab, top);
  // NaN compares false everywhere, so argmax would quietly pick a wrong token.
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

// top_p over the head of the ranking keys[0, head) (in rank order): the number of
// candidates kept, the smallest prefix whose mass before its last candidate is below
// top_p x mass; -1 when the head ends first (so more of the ranking is needed).
static int64_t nucleus(const float* logits, float top, double inv_t, double mass, float top_p,
                       const uint64_t* keys, int64_t head) {
  double before = 0.0;
  for (int64_t i = 0; i < head; ++i) {
    if (before / mass >= top_p) return i;
    before += std::exp((logits[key_id(keys[i])] - top) * inv_t);
  }
  return before / mass >= top_p ? head : -1;
}

// The k best of the ranking, in order, into keys: one pass holding the candidates that
// could still be among them (at most 2k), with the k-th best so far as a threshold. Most
// tokens fail one comparison against the threshold's logit; the buffer is cut back to its
// k best whenever it fills.
static void top_keys(const float* logits, int64_t vocab, int64_t k, std::vector<uint64_t>& keys) {
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
  std::sort(keys.begin(), keys.end());
}

int64_t sampling_candidates(const float* logits, int64_t vocab, const GenerationOptions& o,
                            SamplerScratch& s) {
  const int64_t top_k = o.top_k;
  const float top_p = o.top_p, temperature = o.temperature;
  const int64_t kept_k = (top_k > 0 && top_k < vocab) ? top_k : vocab;
  float top = -INFINITY;
  bool nan = false;
  for (int64_t i = 0; i < vocab; ++i) {
    nan |= logits[i] != logits[i];
    top = logits[i] > top ? logits[i] : top;
  }
  FGPT_CHECK(!nan, kNonFinite);
  FGPT_CHECK(top > -INFINITY, "every token is masked at this step (is min_length forcing out the only token?)");
  FGPT_CHECK(std::isfinite(top), kNonFinite);
  const double inv_t = 1.0 / temperature;
  auto weight_of = [&](int32_t id) {  // exp((logit - top) / T): the top candidate weighs 1
    return static_cast<float>(std::exp((logits[id] - top) * inv_t));
  };
  s.order.resize(vocab);
  s.weight.resize(vocab);
  int32_t* order = s.order.data();
  float* weight = s.weight.data();
  int64_t n = vocab;
  if (kept_k < vocab) {
    // top_k: its candidates in rank order, their mass in that order.
    top_keys(logits, vocab, kept_k, s.keys);
    double mass = 0.0;
    for (int64_t i = 0; i < kept_k; ++i) {
      order[i] = key_id(s.keys[i]);
      weight[i] = weight_of(order[i]);
      mass += weight[i];
    }
    n = kept_k;
    if (top_p < 1.0f) {
      n = nucleus(logits, top, inv_t, mass, top_p, s.keys.data(), kept_k);
      if (n < 0) n = kept_k;  // (rounding: the whole top_k falls short of top_p)
    }
  } else if (top_p < 1.0f) {
    // top_p over every token: the mass in id order, and on the way a histogram of it by
    // how far below the top each logit is (a quarter of 1 / T per bin). The bins up to
    // the first whose running mass reaches top_p hold the nucleus (higher logits, lower
    // bins): only they are ranked. Should rounding leave the nucleus unfinished there,
    // every token is ranked.
    constexpr int kBins = 256;
    double bin_mass[kBins] = {};
    s.bins.resize(vocab);
    uint8_t* bins = s.bins.data();
    double mass = 0.0;
    for (int64_t i = 0; i < vocab; ++i) {
      const double below = (top - logits[i]) * inv_t;
      const float w = static_cast<float>(std::exp(-below));
      const int b = below < (kBins - 1) / 4.0 ? static_cast<int>(below * 4.0) : kBins - 1;
      bins[i] = static_cast<uint8_t>(b);
      bin_mass[b] += w;
      mass += w;
    }
    int last = 0;
    for (double running = bin_mass[0]; last < kBins - 1 && running < top_p * mass;)
      running += bin_mass[++last];
    s.keys.clear();
    for (int64_t i = 0; i < vocab; ++i)
      if (bins[i] <= last) s.keys.push_back(rank_key(logits[i], i));
    std::sort(s.keys.begin(), s.keys.end());
    const int64_t head = static_cast<int64_t>(s.keys.size());
    n = nucleus(logits, top, inv_t, mass, top_p, s.keys.data(), head);
    if (n < 0) {
      s.keys.resize(vocab);
      for (int64_t i = 0; i < vocab; ++i) s.keys[i] = rank_key(logits[i], i);
      std::sort(s.keys.begin(), s.keys.end());
      n = nucleus(logits, top, inv_t, mass, top_p, s.keys.data(), vocab);
      if (n < 0) n = vocab;
    }
    for (int64_t i = 0; i < n; ++i) {
      order[i] = key_id(s.keys[i]);
      weight[i] = weight_of(order[i]);
    }
  } else {  // every token, in id order
    for (int64_t i = 0; i < vocab; ++i) {
      order[i] = static_cast<int32_t>(i);
      weight[i] = weight_of(order[i]);
    }
  }
  n = keep_min_p(o.min_p, n, order, weight);
  return keep_typical(o.typical_p, n, order, weight, s);
}

TokenChoice choose_sampled(const float* logits, int64_t vocab, const GenerationOptions& o,
                           double uniform, SamplerScratch& s) {
  const int64_t n = sampling_candidates(logits, vocab, o, s);
  const int32_t* order = s.order.data();
  const float* weight = s.weight.data();
  double kept_mass = 0.0;
  for (int64_t i = 0; i < n; ++i) kept_mass += weight[i];
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
