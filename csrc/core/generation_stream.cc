#include "generation_stream.h"

#include <mutex>

#include "error.h"
#include "kernels.h"

namespace fastergpt {
namespace {

void check_streamable(const GenerationOptions& o) {
  FGPT_CHECK(!(o.decode_strategy == DecodeStrategy::kBeamSearch && o.num_beams > 1),
             "streaming does not support beam search (it ranks whole sequences only at the "
             "end); use generate");
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
                                   const GenerationOptions& options)
    : options_((check_streamable(options), options)),
      ctx_(cpu_backend(), static_cast<int>(options.num_threads)),
      gen_(model, options_, ctx_) {
  validate_request(model.config(), input, options_);
  const std::vector<int64_t> real_lengths = gen_.check(input);
  gen_.prefill(state_, input, real_lengths);
  gen_.expand(state_, input);
  emitted_.assign(state_.rows.size(), 0);
}

bool GenerationStream::next(StepTokens* out) {
  if (state_.active.empty()) more_ = false;  // every row was finished by the caller
  if (!more_) return false;
  more_ = gen_.step(state_);
  take_new(state_, emitted_, out);
  return true;
}

GenerationResult generate(const Model& model, const GenerationInput& input,
                          const GenerationOptions& options,
                          const std::function<bool(const StepTokens&)>& on_step) {
  check_streamable(options);
  validate_request(model.config(), input, options);
  std::unique_lock<std::mutex> lock;
  Context& ctx = cpu_context(static_cast<int>(options.num_threads), &lock);
  Generator gen(model, options, ctx);
  const std::vector<int64_t> real_lengths = gen.check(input);
  BatchState s;
  gen.prefill(s, input, real_lengths);
  gen.expand(s, input);
  std::vector<size_t> emitted(s.rows.size(), 0);
  StepTokens step;
  for (bool more = true; more;) {
    more = gen.step(s);
    take_new(s, emitted, &step);
    if (!on_step(step)) break;
  }
  GenerationResult result = gen.collect(s);
  ctx.trim();
  return result;
}

}  // namespace fastergpt
