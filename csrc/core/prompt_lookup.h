// Prompt-lookup decoding: greedy search that drafts several tokens per step by copying
// what followed an earlier occurrence of the sequence's last n-gram (in the prompt or
// the output), and checks the drafts in the same model pass that computes the next
// token. Each position's token is still chosen by Generator::choose from that
// position's logits, with the row's state after the tokens before it, so the output
// is greedy search's, token for token; a draft only decides how many positions one
// pass computes. Accepted drafts cost no pass of their own: when the output copies
// the input (summaries, edits, extraction), several tokens come per pass.
// transformers' prompt_lookup_num_tokens / max_matching_ngram_size, same lookup.
#pragma once

#include <cstdint>
#include <vector>

#include "context.h"
#include "generation_options.h"
#include "generator.h"
#include "model.h"

namespace fastergpt {

// The draft for `sequence` (prompt + output): the tokens after the latest earlier
// occurrence of its last n-gram, n from max_ngram down to 1, at most `max_tokens` and at
// most one more than the tokens before that occurrence that agree with the sequence's
// end (the n-gram and as far back as the two go on matching); empty when no n-gram
// recurs.
std::vector<int64_t> lookup_draft(const std::vector<int64_t>& sequence, int64_t max_ngram,
                                  int64_t max_tokens);

class PromptLookup {
 public:
  PromptLookup(const Model& model, const GenerationOptions& options, Context& ctx, Generator& gen)
      : model_(model), c_(model.config()), o_(options), ctx_(ctx), gen_(gen) {}

  GenerationResult run(const GenerationInput& in, const std::vector<int64_t>& real_lengths,
                       const Deadline& deadline = Deadline());

 private:
  const Model& model_;
  const ModelConfig& c_;
  const GenerationOptions& o_;
  Context& ctx_;
  Generator& gen_;
};

}  // namespace fastergpt
