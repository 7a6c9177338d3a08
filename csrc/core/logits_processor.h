// Turns a row's raw next-token logits into a choice: the HF-defined processors
// (repetition penalty, min length), then greedy argmax or sampling with
// temperature, top-k and top-p. Pure functions of their inputs, so the same
// logits and uniform draw always give the same token.
#pragma once

#include <cstdint>
#include <vector>

#include "generation_options.h"

namespace fastergpt {

struct TokenChoice {
  int64_t token = 0;
  float logprob = 0.0f;  // log-probability under the distribution it was chosen from
};

// For each DISTINCT id in `seen`: logit = logit < 0 ? logit * penalty : logit / penalty.
void apply_repetition_penalty(float* logits, const std::vector<int32_t>& seen, float penalty);

// no_repeat_ngram_size: every token that would complete an n-gram already in
// tokens[0..count) (the prompt's real tokens, then the output) gets -inf, as
// transformers' NoRepeatNGramLogitsProcessor (which also counts left padding).
void ban_repeated_ngrams(float* logits, const int64_t* tokens, int64_t count, int64_t n);

// min_length: eos_token_id and every other end token get -inf (transformers'
// MinLengthLogitsProcessor masks each of its eos ids).
void mask_end_tokens(float* logits, const GenerationOptions& o);

// Greedy: the highest logit (the lowest id on ties); logprob = log_softmax there.
TokenChoice choose_greedy(const float* logits, int64_t vocab);

// Scratch reused across steps so sampling allocates nothing in the decode loop.
struct SamplerScratch {
  std::vector<uint64_t> keys;  // the ranking (logit, id) as integers: top_k, top_p
  std::vector<uint64_t> spare;  // top_k, top_p: the radix sort's other buffer
  std::vector<uint8_t> bins;   // top_p: each token's histogram bin
  std::vector<float> all;      // top_p: every token's weight, by id
  std::vector<int32_t> order;
  std::vector<float> weight;
  std::vector<double> shift;  // typical_p
  std::vector<int32_t> rank;  // typical_p
};

// The candidates sampling draws from, in transformers' warper order:
// temperature, top_k, top_p, min_p, typical_p. Fills s.order[0..n) with token
// ids and s.weight[0..n) with exp((logit - max) / T); returns n.
int64_t sampling_candidates(const float* logits, int64_t vocab, const GenerationOptions& o,
                            SamplerScratch& s);

// Sampling: logits / temperature, keep the top_k largest (0 = all), then the
// smallest prefix (by descending logit) whose probability reaches top_p, then
// min_p and typical_p filters, and draw with `uniform` in [0, 1) by inverse
// CDF over the candidates in that order. logprob is the chosen token's
// renormalised probability.
TokenChoice choose_sampled(const float* logits, int64_t vocab, const GenerationOptions& o,
                           double uniform, SamplerScratch& scratch);

}  // namespace fastergpt
