// The whole generation in one call: a context pass over every prompt token of
// the batch, then one decoding step per new token over a preallocated KV
// cache, with logits processing and sampling in between, until every row has
// finished or max_new_tokens is reached.
//
// Batch contract (B prompts, L padded length, R = num_return_sequences):
//   input_ids       int64 [B, L]  ids in [0, vocab) (ids under padding are ignored)
//   attention_mask  int64 [B, L]  1 = real token, 0 = padding; padding on the LEFT,
//                                 at least one real token per row; null = all real
// Row b's real tokens take positions 0..n_b-1 (n_b its real length) whatever
// its padding, so a prompt gives the same output alone or in a padded batch.
// Results, for B*R expanded rows (prompt b -> rows b*R .. b*R+R-1):
//   ids       [B*R, T]  generated tokens only; finished rows hold pad after their end token
//   lengths   [B*R]     tokens each row generated, its end token included
//   logprobs  [B*R, T]  when requested; 0 after a row finished
// T is the number of steps actually run (<= max_new_tokens).
#pragma once

#include <cstdint>
#include <vector>

#include "generation_options.h"
#include "model_config.h"
#include "weights.h"

namespace fastergpt {

struct GenerationInput {
  const int64_t* input_ids = nullptr;
  const int64_t* attention_mask = nullptr;  // may be null
  int64_t batch = 0;                        // B
  int64_t length = 0;                       // L
};

struct GenerationResult {
  int64_t rows = 0;   // B * R
  int64_t steps = 0;  // T
  std::vector<int64_t> ids;
  std::vector<int64_t> lengths;
  std::vector<float> logprobs;
};

// Throws Error (naming the argument) on bad input, before any work is done.
GenerationResult generate(const ModelConfig& config, const ModelWeights& weights,
                          const GenerationInput& input, const GenerationOptions& options);

// Only the argument checks of generate(), for front ends whose host framework
// would lose the engine's message (the Paddle Inference predictor does).
void validate_request(const ModelConfig& config, const GenerationInput& input,
                      const GenerationOptions& options);

// Next-token logits at every position: float32 [B, L, V], zeros under padding.
// For scoring text (perplexity) and for checking weight formats against fp32.
std::vector<float> compute_logits(const ModelConfig& config, const ModelWeights& weights,
                                  const GenerationInput& input, int64_t num_threads = 0);

}  // namespace fastergpt
