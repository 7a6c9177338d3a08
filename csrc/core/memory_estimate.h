// What a request will allocate, estimated before anything is allocated, and
// the check of that figure against a budget (the `max_memory_mb` setting; by
// default the memory this machine has available). A request over budget gets
// an error saying how much it would need and where, instead of an OOM kill.
#pragma once

#include <cstdint>
#include <string>

#include "generation_options.h"
#include "model_config.h"

namespace fastergpt {

struct MemoryEstimate {
  int64_t kv_cache = 0;     // keys and values of every row and position
  int64_t logits = 0;       // next-token logits of every row
  int64_t activations = 0;  // one prompt-pass chunk's activations
  int64_t row_state = 0;    // outputs, penalty flags, sampler scratch
  int64_t total() const { return kv_cache + logits + activations + row_state; }
};

// For B prompts of at most `max_prompt` real tokens (`total_prompt` in all),
// generating with `o` (new_tokens = 0: scoring, which returns B x L x V logits).
MemoryEstimate estimate_memory(const ModelConfig& c, int64_t batch, int64_t max_prompt,
                               int64_t total_prompt, int64_t padded_length,
                               const GenerationOptions& o, int64_t new_tokens);

// MemAvailable from /proc/meminfo in bytes (or a large figure where unknown).
int64_t available_memory();
// The same, from a reading under a second old while `need` is at most half of it.
int64_t recent_available_memory(int64_t need);

// Throws Error with the figures when the estimate exceeds the budget.
void check_memory(const MemoryEstimate& need, const GenerationOptions& o);

}  // namespace fastergpt
