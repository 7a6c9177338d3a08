// The RNG and the logits processors against hand-computed references.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <cstdio>
#include <vector>

#include "../../csrc/core/error.h"
#include "../../csrc/core/kernels.h"
#include "../../csrc/core/logits_processor.h"
#include "../../csrc/core/philox.h"
#include "check.h"

using namespace fastergpt;

static GenerationOptions sampling(int64_t top_k, float top_p, float temperature) {
  GenerationOptions o;
  o.decode_strategy = DecodeStrategy::kSampling;
  o.top_k = top_k;
  o.top_p = top_p;
  o.temperature = temperature;
  return o;
}

// Known-answer vectors of Philox-4x32-10 from the Random123 distribution.
static void test_philox_known_answers() {
  Philox4x32 r = philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(r.v[0] == 0x6627e8d5u && r.v[1] == 0xe169c58du && r.v[2] == 0xbc57ac4cu &&
        r.v[3] == 0x9b00dbd8u);
  r = philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  CHECK(r.v[0] == 0x408f276du && r.v[1] == 0x41c83b0eu && r.v[2] == 0xa20bc7c6u &&
        r.v[3] == 0x6d5451fdu);
  // Uniforms stay in [0, 1) and differ across streams and steps.
  double a = philox_uniform(7, 0, 0), b = philox_uniform(7, 1, 0), c = philox_uniform(7, 0, 1);
  CHECK(a >= 0 && a < 1 && b >= 0 && b < 1 && c >= 0 && c < 1);
  CHECK(a != b && a != c);
  CHECK(philox_uniform(7, 3, 9) == philox_uniform(7, 3, 9));
}

static void test_greedy() {
  std::vector<float> l = {0.5f, 2.0f, -1.0f, 2.0f};
  TokenChoice c = choose_greedy(l.data(), 4);
  CHECK(c.token == 1);  // lowest id on ties
  double lse = 0;
  for (float v : l) lse += std::exp(double(v));
  CHECK_NEAR(c.logprob, 2.0 - std::log(lse), 1e-6);
}

// A NaN logit anywhere is refused with the non-finite message, by greedy search and by
// sampling with any filter, even where the NaN is outside top_k's candidates; every logit
// NaN too (not "every token is masked").
static void test_nan_refused() {
  std::vector<float> l = {3.0f, 1.0f, NAN, 0.5f};
  std::vector<float> all_nan(4, NAN);
  SamplerScratch scratch;
  auto refused = [&](auto&& call) {
    try {
      call();
    } catch (const Error& e) {
      return std::strstr(e.what(), "not finite") != nullptr;
    }
    return false;
  };
  for (const std::vector<float>* x : {&l, &all_nan}) {
    CHECK(refused([&] { choose_greedy(x->data(), 4); }));
    for (const GenerationOptions& o : {sampling(0, 1.0f, 1.0f), sampling(1, 1.0f, 1.0f),
                                       sampling(0, 0.9f, 1.0f), sampling(2, 0.5f, 1.0f)})
      CHECK(refused([&] { choose_sampled(x->data(), 4, o, 0.5, scratch); }));
  }
}

static void test_repetition_penalty() {
  std::vector<float> l = {2.0f, -2.0f, 1.0f};
  apply_repetition_penalty(l.data(), {0, 1}, 2.0f);
  CHECK(l[0] == 1.0f && l[1] == -4.0f && l[2] == 1.0f);
}

// no_repeat_ngram_size: a token that would complete an n-gram already present gets -inf.
static void test_repeated_ngrams() {
  const int64_t seq[] = {1, 2, 3, 1, 2};
  auto banned = [&](int64_t n, int64_t count) {
    std::vector<float> l(6, 0.0f);
    ban_repeated_ngrams(l.data(), seq, count, n);
    std::vector<int> out;
    for (int i = 0; i < 6; ++i)
      if (std::isinf(l[i])) out.push_back(i);
    return out;
  };
  CHECK((banned(3, 5) == std::vector<int>{3}));      // "1 2" was followed by 3
  CHECK((banned(2, 5) == std::vector<int>{3}));      // "2" was followed by 3
  CHECK((banned(1, 5) == std::vector<int>{1, 2, 3}));  // every token seen
  CHECK(banned(4, 5).empty());                        // "3 1 2" never began a 4-gram
  CHECK(banned(5, 4).empty());                        // shorter than n: nothing to ban
  CHECK(banned(0, 5).empty());                        // off
}

// Expected distribution after temperature, top-k then top-p (as documented).
static std::vector<double> expected(const std::vector<float>& l, int64_t k, float p, float t) {
  const int64_t V = l.size();
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  const int64_t kk = (k > 0 && k < V) ? k : V;
  std::vector<double> w(V, 0.0);
  double tot = 0;
  for (int64_t i = 0; i < kk; ++i) tot += (w[order[i]] = std::exp((l[order[i]] - l[order[0]]) / t));
  double before = 0, kept = 0;
  for (int64_t i = 0; i < kk; ++i) {
    if (before / tot >= p) {
      w[order[i]] = 0;
      continue;
    }
    before += w[order[i]];
    kept += w[order[i]];
  }
  for (auto& x : w) x /= kept;
  return w;
}

static void test_sampling_distribution() {
  const std::vector<float> l = {1.0f, 0.2f, 2.5f, -0.3f, 2.5f, 0.9f, -3.0f};
  struct Case {
    int64_t k;
    float p, t;
  } cases[] = {{0, 1.0f, 1.0f}, {3, 1.0f, 0.7f}, {0, 0.8f, 1.3f}, {4, 0.6f, 1.0f}, {1, 1.0f, 1.0f}};
  SamplerScratch scratch;
  for (const Case& cs : cases) {
    const std::vector<double> want = expected(l, cs.k, cs.p, cs.t);
    const int n = 40000;
    std::vector<int> count(l.size(), 0);
    for (int i = 0; i < n; ++i) {
      const TokenChoice c = choose_sampled(l.data(), l.size(), sampling(cs.k, cs.p, cs.t),
                                           philox_uniform(11, i, 0), scratch);
      count[c.token]++;
      CHECK(want[c.token] > 0);
      CHECK_NEAR(c.logprob, std::log(want[c.token]), 1e-5);
    }
    // Pearson chi-square over the kept tokens; 30 is far above the 99.9% point
    // for <= 6 degrees of freedom (22.5), so only a wrong distribution fails.
    double chi2 = 0;
    for (size_t i = 0; i < l.size(); ++i)
      if (want[i] > 0) chi2 += std::pow(count[i] - n * want[i], 2) / (n * want[i]);
    CHECK(chi2 < 30.0);
  }
  // top_k = 1 and a tiny top_p are greedy (ties to the lowest id).
  for (int i = 0; i < 50; ++i) {
    CHECK(choose_sampled(l.data(), l.size(), sampling(1, 1.0f, 1.0f), philox_uniform(1, i, 0), scratch).token == 2);
    CHECK(choose_sampled(l.data(), l.size(), sampling(0, 1e-6f, 1.0f), philox_uniform(1, i, 0), scratch).token == 2);
  }
}

// top-p on a large vocabulary exercises the growing sorted prefix.
static void test_top_p_large_vocab() {
  const int64_t V = 5000;
  std::vector<float> l(V);
  for (int64_t i = 0; i < V; ++i) l[i] = std::sin(i * 0.37f) * 3.0f;
  SamplerScratch scratch;
  for (float p : {0.1f, 0.5f, 0.95f, 0.999f}) {
    const std::vector<double> want = expected(l, 0, p, 1.0f);
    for (int i = 0; i < 200; ++i) {
      const TokenChoice c = choose_sampled(l.data(), V, sampling(0, p, 1.0f), philox_uniform(5, i, 0), scratch);
      CHECK(want[c.token] > 0);
      CHECK_NEAR(c.logprob, std::log(want[c.token]), 1e-4);
    }
  }
}

// sampling_candidates against the plain definition: every token ranked by (logit
// descending, id ascending), top_k's head kept, the mass of the kept (top_k's in rank
// order), and top_p's smallest prefix whose mass before its last candidate is below
// top_p; order and weights bit for bit. The weights come from the same vector exp (its
// accuracy is kernels_test's), so this checks which candidates, in which order. Broad and peaked logits, ties,
// -inf and signed zeros, vocabularies from 7 to GPT-2's.
static void test_candidates_equal_full_ranking() {
  std::mt19937 rng(7);
  SamplerScratch scratch;
  int64_t cases = 0;
  for (int64_t V : {7, 1000, 50257})
    for (float sigma : {0.3f, 3.0f, 10.0f})
      for (int variant = 0; variant < 3; ++variant) {
        std::normal_distribution<float> d(0.0f, sigma);
        std::vector<float> l(V);
        for (auto& v : l) v = d(rng);
        if (variant >= 1)  // ties: logits on a grid
          for (auto& v : l) v = std::round(v * 2.0f) / 2.0f;
        if (variant == 2)  // masked tokens and signed zeros
          for (int64_t i = 0; i < V; i += 3) l[i] = i % 2 ? -INFINITY : (i % 4 ? -0.0f : 0.0f);
        for (float t : {0.7f, 1.0f, 1.5f})
          for (int64_t k : {int64_t(0), int64_t(1), int64_t(4), int64_t(50), V - 1})
            for (float p : {1.0f, 0.9f, 0.5f, 1e-6f, 0.999999f}) {
              const GenerationOptions o = sampling(k, p, t);
              const int64_t n = sampling_candidates(l.data(), V, o, scratch);
              // the plain definition
              std::vector<int32_t> rank(V);
              std::iota(rank.begin(), rank.end(), 0);
              std::sort(rank.begin(), rank.end(), [&](int32_t a, int32_t b) {
                return l[a] > l[b] || (l[a] == l[b] && a < b);
              });
              const float top = l[rank[0]];
              // the weights: exp((logit - top) / T) through the engine's vector exp, 0 below 1e-37
              const float inv_t = static_cast<float>(1.0 / t);
              std::vector<float> all(V);
              for (int64_t i = 0; i < V; ++i) all[i] = (l[i] - top) * inv_t;
              exp_in_place(all.data(), V);
              for (float& v : all) v = v < 1e-37f ? 0.0f : v;
              auto w = [&](int32_t id) { return all[id]; };
              const int64_t kept = k > 0 && k < V ? k : V;
              // the kept mass: top_k's in rank order; every token's in four interleaved
              // partial sums by id, (0 + 1) + (2 + 3)
              double mass = 0.0, part[4] = {};
              for (int64_t i = 0; i < kept; ++i) {
                if (kept < V) mass += w(rank[i]);
                else part[i % 4] += w(int32_t(i));
              }
              if (kept == V) mass = (part[0] + part[1]) + (part[2] + part[3]);
              int64_t want_n = kept;
              if (p < 1.0f) {
                double before = 0.0;
                for (int64_t i = 0; i < kept; ++i) {
                  if (before / mass >= p) {
                    want_n = i;
                    break;
                  }
                  before += w(rank[i]);
                }
              }
              bool same = n == want_n;
              for (int64_t i = 0; same && i < n; ++i) {
                const int32_t id = kept < V || p < 1.0f ? rank[i] : int32_t(i);
                same = scratch.order[i] == id && scratch.weight[i] == w(id);
              }
              if (!same)
                std::fprintf(stderr, "V=%lld sigma=%g variant=%d T=%g top_k=%lld top_p=%g: n %lld, want %lld\n",
                             (long long)V, sigma, variant, t, (long long)k, p, (long long)n,
                             (long long)want_n);
              CHECK(same);
              ++cases;
            }
      }
  std::printf("sampling_candidates: %lld cases against the full ranking\n", (long long)cases);
}

int main() {
  test_philox_known_answers();
  test_greedy();
  test_nan_refused();
  test_repetition_penalty();
  test_repeated_ngrams();
  test_sampling_distribution();
  test_top_p_large_vocab();
  test_candidates_equal_full_ranking();
  TEST_MAIN_END();
}
