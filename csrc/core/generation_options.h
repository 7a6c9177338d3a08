// Per-call generation settings. Every field is a runtime input of the Paddle
// operator (and so of an exported graph): nothing here is frozen at export.
#pragma once

#include <cstdint>

namespace fastergpt {

enum class DecodeStrategy { kGreedy, kSampling };

struct GenerationOptions {
  DecodeStrategy strategy = DecodeStrategy::kGreedy;
  int64_t max_new_tokens = 20;      // >= 1; prompt + new tokens must fit the position table
  int64_t min_length = 0;           // end token masked until a row generated this many tokens
  int64_t top_k = 0;                // sampling: keep the k most likely tokens; 0 = off
  float top_p = 1.0f;               // sampling: nucleus mass in (0, 1]; 1 = off
  float temperature = 1.0f;         // sampling: > 0; greedy ignores it
  float repetition_penalty = 1.0f;  // > 0; HF rule: logit<0 ? logit*p : logit/p, once per seen id
  int64_t eos_token_id = -1;        // < 0: never stop early
  int64_t pad_token_id = -1;        // emitted by finished rows; < 0: use eos_token_id
  int64_t num_return_sequences = 1; // each prompt is expanded to this many rows
  uint64_t seed = 0;                // RNG stream of expanded row r is Philox(seed, r)
  int64_t num_threads = 0;          // 0 = all cores
  bool return_logprobs = false;     // fill GenerationResult::logprobs

  // Throws Error naming the first invalid field.
  void validate(int64_t vocab_size) const;
};

}  // namespace fastergpt
