#include "generation_options.h"

#include <cmath>

#include "error.h"

namespace fastergpt {

void GenerationOptions::validate(int64_t vocab_size) const {
  FGPT_CHECK(max_new_tokens >= 1, "max_new_tokens must be >= 1, got ", max_new_tokens);
  FGPT_CHECK(min_length >= 0, "min_length must be >= 0, got ", min_length);
  FGPT_CHECK(top_k >= 0, "top_k must be >= 0 (0 disables it), got ", top_k);
  FGPT_CHECK(std::isfinite(top_p) && top_p > 0.0f && top_p <= 1.0f,
             "top_p must be in (0, 1], got ", top_p);
  FGPT_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0.0f,
             "repetition_penalty must be > 0, got ", repetition_penalty);
  if (strategy == DecodeStrategy::kSampling)
    FGPT_CHECK(std::isfinite(temperature) && temperature > 0.0f,
               "temperature must be > 0 for sampling, got ", temperature);
  FGPT_CHECK(eos_token_id < vocab_size, "eos_token_id ", eos_token_id,
             " is outside the vocabulary of size ", vocab_size);
  FGPT_CHECK(pad_token_id < vocab_size, "pad_token_id ", pad_token_id,
             " is outside the vocabulary of size ", vocab_size);
  FGPT_CHECK(num_return_sequences >= 1, "num_return_sequences must be >= 1, got ",
             num_return_sequences);
  FGPT_CHECK(num_threads >= 0, "num_threads must be >= 0 (0 = all cores), got ", num_threads);
}

}  // namespace fastergpt
