// Generation a step at a time, for callers that act on tokens as they are made
// (stream them, stop on a string, cancel): the same Generator pieces as the
// one-shot generate(), so the tokens are the same.
//
// GenerationStream owns its Context (threads, KV cache, workspace), so a stream
// that lives across a caller's pauses (a Python generator between yields) does
// not hold the process-wide context that generate() calls share.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "context.h"
#include "generation_options.h"
#include "generator.h"
#include "model.h"

namespace fastergpt {

// One step's output: for each of the B*R rows, the token it chose in this step,
// or -1 when it had finished before; `logprobs` likewise (0 for -1).
struct StepTokens {
  std::vector<int64_t> tokens;
  std::vector<float> logprobs;
};

class GenerationStream {
 public:
  // Checks the request (throws Error naming the argument, as generate()) and
  // runs the prompt pass. Beam search is refused: it ranks whole sequences only
  // at the end. `input` is read here only. Runs on a context of its own, or on
  // `ctx` (which the caller holds for the stream's life).
  GenerationStream(const Model& model, const GenerationInput& input,
                   const GenerationOptions& options, Context* ctx = nullptr);

  // A batch that sequences join and leave between steps (continuous batching): up to
  // `capacity` rows of up to `max_positions` positions each, its KV cache reserved
  // here, once (checked against the memory budget of `options`, whose num_threads
  // and max_memory_mb it takes). Starts empty; see join() and release().
  GenerationStream(const Model& model, int64_t capacity, int64_t max_positions,
                   const GenerationOptions& options);

  // A new sequence joins before the next step: its prompt pass runs now, then it is
  // decoded with its own `options` (Philox row `rng_row` for sampling, so its tokens
  // are what generate() gives that prompt as row rng_row). Returns its row; throws
  // Error naming the problem (bad prompt or settings, no free row).
  int64_t join(const std::vector<int64_t>& prompt, const GenerationOptions& options,
               int64_t rng_row = 0);
  // Several at once, in one prompt pass; all or none join (a bad one throws first).
  std::vector<int64_t> join(const std::vector<std::vector<int64_t>>& prompts,
                            const std::vector<GenerationOptions>& options,
                            const std::vector<int64_t>& rng_rows);
  // A finished row's slot is free again (its tokens are gone).
  void release(int64_t row);
  int64_t running() const {
    return static_cast<int64_t>(state_.active.size() + state_.pending.size());
  }
  int64_t free_rows() const { return static_cast<int64_t>(free_.size()); }

  // The next step's tokens into *out; false when nothing ran: every row ended (or,
  // for one call's batch, max_new_tokens was reached), with nothing written. A
  // continuous batch continues once a sequence joins.
  bool next(StepTokens* out);
  // Ends row `row` before the next step (see Generator::finish_row).
  void finish(int64_t row) { gen_.finish_row(state_, row); }
  // Everything generated so far, as generate() returns it.
  GenerationResult result() const { return gen_.collect(state_); }

 private:
  GenerationOptions options_;
  std::unique_ptr<Context> own_ctx_;  // unless the caller lent one
  Context& ctx_;
  Generator gen_;
  BatchState state_;
  std::vector<size_t> emitted_;  // tokens of each row handed out so far
  bool more_ = true;
  bool continuous_ = false;
  Deadline deadline_;  // one call's max_time
  std::vector<std::unique_ptr<GenerationOptions>> row_options_;  // per row, when continuous
  std::vector<int64_t> free_;
};

// generate() with `on_step` called after every step (on the process-wide context);
// returning false from it stops the generation there (the result holds the steps
// run so far).
GenerationResult generate(const Model& model, const GenerationInput& input,
                          const GenerationOptions& options,
                          const std::function<bool(const StepTokens&)>& on_step);

}  // namespace fastergpt
