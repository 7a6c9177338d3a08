#include "logits_processor.h"

#include <algorithm>
#include <cmath>
#include <numeric>

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

int64_t sampling_candidates(const float* logits, int64_t vocab, const GenerationOptions& o,
                            SamplerScratch& s) {
  const int64_t top_k = o.top_k;
  const float top_p = o.top_p, temperature = o.temperature;
  const int64_t kept_k = (top_k > 0 && top_k < vocab) ? top_k : vocab;
  // A strict total order (logit, then id) keeps selection deterministic on ties.
  auto higher = [logits](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  s.order.resize(vocab);
  std::iota(s.order.begin(), s.order.end(), 0);
  int32_t* order = s.order.data();
  if (kept_k < vocab) std::nth_element(order, order + kept_k, order + vocab, higher);

  const float top = *std::max_element(logits, logits + vocab);
  FGPT_CHECK(!std::isnan(top), kNonFinite);
  FGPT_CHECK(top > -INFINITY, "every token is masked at this step (is min_length forcing out the only token?)");
  FGPT_CHECK(std::isfinite(top), kNonFinite);
  const double inv_t = 1.0 / temperature;
  s.weight.resize(vocab);
  float* weight = s.weight.data();  // weight[i] = exp((logit - top) / T) of order[i]
  double mass = 0.0;
  for (int64_t i = 0; i < kept_k; ++i) {
    weight[i] = static_cast<float>(std::exp((logits[order[i]] - top) * inv_t));
    mass += weight[i];
  }

  int64_t n = kept_k;
  if (top_p < 1.0f) {
    // Sort only as many candidates as the nucleus needs: grow the sorted
    // prefix until its mass reaches top_p (usually a few dozen tokens).
    int64_t sorted = 0;
    for (int64_t want = std::min<int64_t>(kept_k, 64);; want = std::min(kept_k, want * 4)) {
      if (want < kept_k) std::nth_element(order + sorted, order + want, order + kept_k, higher);
      std::sort(order + sorted, order + want, higher);
      sorted = want;
      double before = 0.0;
      n = -1;
      for (int64_t i = 0; i < sorted; ++i) {
        const double w = std::exp((logits[order[i]] - top) * inv_t);
        if (before / mass >= top_p) {
          n = i;
          break;
        }
        before += w;
      }
      if (n >= 0 || sorted == kept_k) {
        if (n < 0) n = sorted;
        break;
      }
    }
    for (int64_t i = 0; i < n; ++i)
      weight[i] = static_cast<float>(std::exp((logits[order[i]] - top) * inv_t));
  } else if (kept_k < vocab) {
    std::sort(order, order + kept_k, higher);
    for (int64_t i = 0; i < kept_k; ++i)
      weight[i] = static_cast<float>(std::exp((logits[order[i]] - top) * inv_t));
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
