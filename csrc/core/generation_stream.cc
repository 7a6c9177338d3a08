#include "generation_stream.h"

#include <algorithm>
#include <mutex>

#include "memory_estimate.h"

#include "error.h"
#include "kernels.h"

namespace fastergpt {
namespace {

void check_streamable(const GenerationOptions& o) {
  FGPT_CHECK(!(o.decode_strategy == DecodeStrategy::kBeamSearch && o.num_beams > 1),
             "streaming does not support beam search (it ranks whole sequences only at the "
             "end); use generate");
  FGPT_CHECK(o.prompt_lookup_num_tokens == 0,
             "streaming does not support prompt_lookup_num_tokens (a stream decodes one token "
             "per step); use generate");
}

// The tokens each row chose since `emitted`, one step's worth.
void take_new(const BatchState& s, std::vector<size_t>& emitted, StepTokens* out) {
  const size_t rows = s.rows.size();
  out->tokens.assign(rows, -1);
  out->logprobs.assign(rows, 0.0f);
  for (size_t r = 0; r < rows; ++r) {
    const RowState& row = s.rows[r];
    if (row.ids.size() > emitted[r]) {
      out->tokens[r] = row.ids[emitted[r]];
      out->logprobs[r] = row.logprobs[emitted[r]];
      ++emitted[r];
    }
  }
}

}  // namespace

GenerationStream::GenerationStream(const Model& model, const GenerationInput& input,
                                   const GenerationOptions& options, Context* ctx)
    : options_((check_streamable(options), options)),
      own_ctx_(ctx ? nullptr
                   : std::make_unique<Context>(model.backend(), static_cast<int>(options.num_threads))),
      ctx_(ctx ? *ctx : *own_ctx_),
      gen_(model, options_, ctx_) {
  deadline_ = Deadline::after(options_.max_time);  // from the call, prompt pass included
  const std::vector<int64_t> real_lengths = gen_.check(input);
  gen_.prefill(state_, input, real_lengths);
  gen_.expand(state_, input);
  emitted_.assign(state_.rows.size(), 0);
}

GenerationStream::GenerationStream(const Model& model, int64_t capacity, int64_t max_positions,
                                   const GenerationOptions& options)
    : options_(options),
      own_ctx_(std::make_unique<Context>(model.backend(), static_cast<int>(options.num_threads))),
      ctx_(*own_ctx_), gen_(model, options_, ctx_), continuous_(true) {
  const ModelConfig& c = model.config();
  FGPT_CHECK(capacity >= 1 && capacity <= kMaxReturnSequences, "capacity must be in [1, ",
             kMaxReturnSequences, "], got ", capacity);
  FGPT_CHECK(max_positions >= 2 && max_positions <= c.max_positions, "max_positions must be in "
             "[2, ", c.max_positions, "] (the model's position table), got ", max_positions);
  options.validate(c.vocab_size);
  // The whole batch's memory, once: capacity rows of max_positions positions.
  GenerationOptions sizing = options;
  sizing.num_return_sequences = 1;
  sizing.decode_strategy = DecodeStrategy::kSampling;  // the sampler's scratch too
  check_memory(estimate_memory(c, capacity, 1, capacity, 1, sizing, max_positions - 1), sizing);
  options_.max_new_tokens = static_cast<int64_t>(kMaxTokens);  // each row counts its own
  ctx_.kv_cache().allocate(c, capacity, max_positions, options.kv_cache_dtype);
  ctx_.activations().reserve_logits(capacity, c);
  state_.rows.resize(capacity);
  for (RowState& row : state_.rows) row.finished = true;
  state_.chosen.resize(capacity);
  for (auto* v : {&state_.tokens, &state_.still, &state_.order}) v->reserve(capacity);
  state_.slots.reserve(capacity);
  state_.active.reserve(capacity);
  row_options_.resize(capacity);
  emitted_.assign(capacity, 0);
  for (int64_t r = capacity - 1; r >= 0; --r) free_.push_back(r);
}

int64_t GenerationStream::join(const std::vector<int64_t>& prompt, const GenerationOptions& options,
                               int64_t rng_row) {
  return join(std::vector<std::vector<int64_t>>{prompt}, {options}, {rng_row}).front();
}

std::vector<int64_t> GenerationStream::join(const std::vector<std::vector<int64_t>>& prompts,
                                            const std::vector<GenerationOptions>& options,
                                            const std::vector<int64_t>& rng_rows) {
  FGPT_CHECK(continuous_, "join: this stream runs one call's batch; build it with a capacity");
  FGPT_CHECK(options.size() == prompts.size() && rng_rows.size() == prompts.size(),
             "join: ", prompts.size(), " prompts but ", options.size(), " settings and ",
             rng_rows.size(), " rng rows");
  FGPT_CHECK(prompts.size() <= free_.size(), "join: all ", state_.rows.size(), " rows are running");
  std::vector<std::unique_ptr<GenerationOptions>> owned;
  std::vector<JoinRequest> joins;
  for (size_t k = 0; k < prompts.size(); ++k) {
    check_streamable(options[k]);  // (the settings and the prompt: Generator::join)
    owned.push_back(std::make_unique<GenerationOptions>(options[k]));
    joins.push_back({free_[free_.size() - 1 - k], prompts[k].data(),
                     static_cast<int64_t>(prompts[k].size()), owned.back().get(), rng_rows[k]});
  }
  gen_.join(state_, joins);  // checks everything before it changes anything
  std::vector<int64_t> rows;
  for (size_t k = 0; k < joins.size(); ++k) {
    const int64_t r = joins[k].row;
    row_options_[r] = std::move(owned[k]);
    emitted_[r] = 0;
    rows.push_back(r);
  }
  free_.resize(free_.size() - joins.size());
  return rows;
}

void GenerationStream::release(int64_t row) {
  FGPT_CHECK(continuous_, "release: this stream runs one call's batch");
  FGPT_CHECK(row >= 0 && row < static_cast<int64_t>(state_.rows.size()), "release: row ", row,
             " is outside the batch");
  FGPT_CHECK(std::find(free_.begin(), free_.end(), row) == free_.end(), "release: row ", row,
             " is already free");
  gen_.finish_row(state_, row);
  state_.rows[row] = RowState();
  state_.rows[row].finished = true;
  row_options_[row].reset();
  free_.push_back(row);
}

bool GenerationStream::next(StepTokens* out) {
  if (!more_ && !continuous_) return false;
  // The model pass of the last step's tokens runs now, at the start of this step, so
  // that each step hands out its tokens as soon as they are chosen: a joined sequence's
  // first token comes at the end of the step that ran its prompt.
  if (state_.forward_due) gen_.forward(state_);
  // Prompts that had no pass to ride in (the running rows' logits were already fresh)
  // run now: a sequence that joins before a step gets its first token from that step.
  if (!state_.pending.empty()) gen_.run_pending(state_);
  if (state_.active.empty()) {
    if (!continuous_) more_ = false;  // every row was finished by the caller
    return false;
  }
  more_ = gen_.choose_tokens(state_) && !deadline_.passed();
  take_new(state_, emitted_, out);
  if (continuous_)  // a joined row's own max_time
    for (int64_t i = static_cast<int64_t>(state_.active.size()) - 1; i >= 0; --i)
      if (state_.rows[state_.active[i]].deadline.passed()) gen_.finish_row(state_, state_.active[i]);
  return true;
}

GenerationResult generate(const Model& model, const GenerationInput& input,
                          const GenerationOptions& options,
                          const std::function<bool(const StepTokens&)>& on_step) {
  check_streamable(options);
  validate_request(model.config(), input, options);  // before taking the shared context
  std::unique_lock<std::mutex> lock;
  Context& ctx = shared_context(model.backend(), static_cast<int>(options.num_threads), &lock);
  GenerationResult result;
  {
    GenerationStream stream(model, input, options, &ctx);
    StepTokens step;
    while (stream.next(&step))
      if (!on_step(step)) break;
    result = stream.result();
  }
  ctx.trim();
  return result;
}

}  // namespace fastergpt
