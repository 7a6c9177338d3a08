// Generation as steps over an explicit batch state: prefill (the prompt pass),
// expand (one row per return sequence), step (choose a token for every active
// row, then run those tokens through the model), collect (pack the result).
// The one-shot generate() is a loop over these pieces; a caller that wants to
// act between steps (stream tokens, let rows join or leave) drives them itself.
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

#include <chrono>
#include <cstdint>
#include <vector>

#include "context.h"
#include "generation_options.h"
#include "logits_processor.h"
#include "model.h"

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
  // [rows] beam search: each sequence's score, sum(logprobs) / length^length_penalty
  // (transformers' sequences_scores); the other strategies: sum(logprobs).
  std::vector<float> scores;
  // Prompt lookup: tokens drafted, and how many of them greedy search confirmed.
  int64_t drafted_tokens = 0;
  int64_t accepted_tokens = 0;
};

// max_time: the moment a call (or a joined row) must stop, checked after each step
// as transformers' MaxTimeCriteria does.
struct Deadline {
  bool on = false;
  std::chrono::steady_clock::time_point at;
  static Deadline after(double seconds) {
    Deadline d;
    d.on = seconds > 0;
    if (d.on)
      d.at = std::chrono::steady_clock::now() +
             std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                 std::chrono::duration<double>(seconds));
    return d;
  }
  bool passed() const { return on && std::chrono::steady_clock::now() >= at; }
};

// A joined sequence waiting for its prompt pass.
struct PendingJoin {
  int64_t row;
  std::vector<int64_t> tokens;
};

// A sequence joining a running batch (Generator::join).
struct JoinRequest {
  int64_t row;                       // a free cache row
  const int64_t* prompt;             // its token ids
  int64_t length;
  const GenerationOptions* options;  // outlives the row
  int64_t rng_row;                   // Philox row for sampling
};

// One sequence being generated.
struct RowState {
  int64_t prompt_row = 0;   // which input row it came from
  int64_t length = 0;       // tokens in its cache (= next position)
  bool finished = false;
  std::vector<int64_t> ids;         // generated tokens
  std::vector<float> logprobs;      // their log-probabilities
  std::vector<int32_t> seen;        // distinct ids of prompt + output (repetition penalty)
  std::vector<uint8_t> seen_flag;   // [V], only when the penalty is on
  std::vector<int64_t> history;     // prompt + output, for no_repeat_ngram_size / prompt lookup
  StopStringMatcher stop_matcher;   // the text's tail, only for stop strings
  SamplerScratch scratch;
  // A request that joined a running batch (GenerationStream::join): its own settings,
  // and the row index its random stream is drawn with (so its tokens do not depend
  // on the slot it got). Null / -1 for the rows of one generate() call.
  const GenerationOptions* options = nullptr;
  int64_t rng_row = -1;
  Deadline deadline;  // a joined row's max_time, from its join
};

// Everything that changes between steps. `active[i]` is the row whose next-token
// logits are row i of the context's act.logits.
struct BatchState {
  std::vector<RowState> rows;
  std::vector<int64_t> active;
  int64_t steps = 0;
  // Reserved once per call so that steps allocate nothing.
  std::vector<int64_t> tokens, still, order;
  std::vector<TokenSlot> slots;
  std::vector<TokenChoice> chosen;
  std::vector<float> saved_logits;  // join(): the running rows' logits during a prompt pass
  // Joined sequences whose prompt pass has not run yet: it runs inside the next step's
  // pass (or at once when nothing is running), and then they are active.
  std::vector<PendingJoin> pending;
  // choose_tokens() ran and its tokens (s.tokens / s.slots, in s.active's order) await
  // forward(); act.logits then belongs to no row.
  bool forward_due = false;
};

class Generator {
 public:
  Generator(const Model& model, const GenerationOptions& options, Context& ctx)
      : model_(model), c_(model.config()), o_(options), ctx_(ctx) {
    ctx_.set_matmul_precision(o_.matmul_precision);
  }

  // Checks the request (throws Error naming the argument) and returns each
  // prompt's real length.
  std::vector<int64_t> check(const GenerationInput& in) const;
  // The prompt pass: each prompt once, into the cache row of its first copy;
  // leaves the logits of each prompt's last token in act.logits.
  void prefill(BatchState& s, const GenerationInput& in, const std::vector<int64_t>& real_lengths);
  // One row per return sequence: copies of each prompt's cache, logits and penalty state.
  void expand(BatchState& s, const GenerationInput& in);
  // Chooses the next token of every active row; runs the rows still going
  // through the model. Returns false when no row is left or max_new_tokens is reached.
  // step() = choose_tokens() + forward(); a stream calls them apart, so that the tokens
  // it hands out come before the model pass that follows them (see GenerationStream).
  bool step(BatchState& s);
  // The choice half: false when nothing is left to run; else s.forward_due is set.
  bool choose_tokens(BatchState& s);
  // The model pass over the chosen tokens, and the prompts of the sequences that joined.
  bool forward(BatchState& s);
  GenerationResult collect(const BatchState& s) const;
  const ModelConfig& model_config() const { return c_; }
  // Ends row r now (a caller's stop condition: a stop string, a cancelled request):
  // it leaves the batch before the next step; what it generated stays.
  void finish_row(BatchState& s, int64_t r) const;
  // New sequences join the running batch, each in a free cache row of a cache sized
  // for it, decoded with its own options (which must outlive it) and random row.
  // Everything is checked first (throws Error; the batch is then unchanged). Their
  // prompts ride in the next step's pass, or run now when nothing is running.
  void join(BatchState& s, const std::vector<JoinRequest>& joins);
  // The pending prompt passes now, together (when a step cannot carry them).
  void run_pending(BatchState& s);
  // The prompt pass for beam search: each prompt once, into the first of its
  // num_beams cache rows, which then read it through the cache's source rows.
  void prefill_beams(const GenerationInput& in, const std::vector<int64_t>& real_lengths);

  // The whole generation: the pieces above in a loop.
  GenerationResult run(const GenerationInput& in);
  // Next-token logits at every real position, float32 [B, L, V], zeros under padding.
  std::vector<float> score(const GenerationInput& in);

 private:
  friend class PromptLookup;  // a decoding loop of its own over choose() and record()
  TokenChoice choose(RowState& row, int64_t row_index, float* logits) const;
  // A chosen token into its row: output, penalty and n-gram state, end conditions.
  // Returns false when the row ended with it.
  bool record(RowState& row, const TokenChoice& ch) const;
  // Runs every prompt once into cache row b * rows_per_prompt (the cache holds
  // B * rows_per_prompt rows) and leaves each prompt's next-token logits in
  // rows 0..B-1 of act.logits. tokens/slots: scratch for the packed prompts.
  void prompt_pass(const GenerationInput& in, const std::vector<int64_t>& real_lengths,
                   int64_t rows_per_prompt, std::vector<int64_t>& tokens,
                   std::vector<TokenSlot>& slots);
  // The model over packed prompt tokens (in chunks); the next-token logits of the
  // tokens at `last_token` go to logits rows first_logits_row, first_logits_row + 1, ...
  // (rows before it are kept only if the pass's own logits fit before them: callers
  // save them, see join()).
  void forward_prompts(const std::vector<int64_t>& tokens, const std::vector<TokenSlot>& slots,
                       const std::vector<int64_t>& last_token, int64_t first_logits_row);
  // A row's penalty and n-gram state from its prompt (row.length tokens), and room
  // for its output: what expand() and join() both need.
  void start_row(RowState& row, const int64_t* prompt, const GenerationOptions& o) const;
  // The settings a row runs with: its own (a joined request's) or the call's.
  const GenerationOptions& options_of(const RowState& row) const {
    return row.options ? *row.options : o_;
  }

  const Model& model_;
  const ModelConfig& c_;
  const GenerationOptions& o_;
  Context& ctx_;
};

// One-shot entry points on the process-wide CPU context.
// Throw Error (naming the argument) on bad input, before any work is done.
GenerationResult generate(const Model& model, const GenerationInput& input,
                          const GenerationOptions& options);
// Next-token logits [B, L, V] of every position; of `options`, only num_threads and
// matmul_precision matter.
std::vector<float> compute_logits(const Model& model, const GenerationInput& input,
                                  const GenerationOptions& options = GenerationOptions());

// Only the argument checks of generate(), for front ends whose host framework
// would lose the engine's message (the Paddle Inference predictor does).
void validate_request(const ModelConfig& config, const GenerationInput& input,
                      const GenerationOptions& options);

}  // namespace fastergpt
