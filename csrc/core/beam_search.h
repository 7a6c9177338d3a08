// Beam search, step for step as transformers' generate(num_beams=N) runs it
// (GenerationMixin._beam_search), so that tokens and scores agree with it:
//
//  - each running beam's next-token scores are log_softmax(logits), then the
//    processors on those log-probabilities (repetition penalty, no-repeat
//    n-grams, min_length), plus the beam's running score;
//  - the best 2N continuations over all beams of a prompt are kept; the best N
//    of them that do not end (end token, or the last allowed step) run on;
//  - those among the best N that end become finished hypotheses, scored
//    sum(logprobs) / generated_length^length_penalty; a prompt keeps its N
//    best;
//  - a prompt stops when early_stopping = true and N hypotheses finished, or
//    when its best running beam cannot beat its worst finished hypothesis:
//    at the current length (false), or at max_new_tokens when
//    length_penalty > 0 (never). All stop at max_new_tokens.
//
// The prompt pass runs once per prompt; the N beams of a prompt share history
// through the KV cache's source rows (kv_cache.h): reordering beams copies a
// table of row indices per beam, never keys or values. A prompt that stopped
// leaves the batch, so its rows cost nothing in later steps.
//
// Results: the best num_return_sequences hypotheses of each prompt, best
// first; logprobs[t] is the processed log-probability of token t; scores are
// transformers' sequences_scores.
#pragma once

#include <cstdint>
#include <vector>

#include "context.h"
#include "generation_options.h"
#include "generator.h"
#include "model.h"

namespace fastergpt {

// One continuation of a beam.
struct BeamCandidate {
  float score;    // the beam's running score + this token's log-probability
  float logprob;  // this token's processed log-probability
  int32_t beam;
  int32_t token;
};

class BeamSearch {
 public:
  BeamSearch(const Model& model, const GenerationOptions& options, Context& ctx, Generator& gen)
      : model_(model), c_(model.config()), o_(options), ctx_(ctx), gen_(gen) {}

  // Stops at `deadline` too (max_time), as transformers does: every prompt then
  // finishes its best running beams as they are.
  GenerationResult run(const GenerationInput& in, const std::vector<int64_t>& real_lengths,
                       const Deadline& deadline = Deadline());

 private:
  struct Sequence {
    std::vector<int64_t> tokens;  // generated
    std::vector<float> logprobs;  // processed log-probability of each
    float score = 0.0f;           // running: sum of logprobs; finished: length-penalised
  };
  struct Group {  // one prompt
    std::vector<int64_t> prompt;  // its real tokens
    int64_t length = 0;           // its real length: the position of generated token 0
    std::vector<Sequence> beams;  // running, best first
    std::vector<Sequence> finished;  // best first, at most num_beams
    bool improvable = true;       // transformers' is_early_stop_heuristic_unsatisfied
    bool done = false;
  };
  using Candidate = BeamCandidate;

  // Processed log-probabilities of one beam's next token (in place), then its
  // best k continuations into out[0..k), best first.
  void top_continuations(const Group& g, const Sequence& beam, int64_t step, float* logits,
                         int32_t beam_index, int64_t k, Candidate* out) const;
  // One prompt's step over its candidates (best first): finished hypotheses,
  // the next running beams (their cache histories included), the stop test.
  void advance(Group& g, int64_t group_index, int64_t step, const std::vector<Candidate>& best);

  const Model& model_;
  const ModelConfig& c_;
  const GenerationOptions& o_;
  Context& ctx_;
  Generator& gen_;
  std::vector<int32_t> history_;  // scratch: a prompt's source tables before reordering
  bool time_up_ = false;           // max_time ran out: this step is the last
};

}  // namespace fastergpt
