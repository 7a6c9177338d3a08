#include "generator.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>

#include "error.h"
#include "kv_cache.h"
#include "memory_estimate.h"
#include "beam_search.h"
#include "prompt_lookup.h"
#include "philox.h"

namespace fastergpt {
namespace {

// The prompt pass runs over at most this many tokens at a time, so its
// activations stay bounded whatever the batch; results do not change (a row's
// tokens go in order, and the kernels' results do not depend on M).
constexpr int64_t kPrefillChunk = 512;

// `new_tokens` positions must fit after each prompt (0 when only scoring).
void check_input(const ModelConfig& c, const GenerationInput& in, const GenerationOptions& o,
                 int64_t new_tokens, std::vector<int64_t>* real_lengths, bool check_budget = true) {
  FGPT_CHECK(in.batch >= 1, "input_ids: the batch is empty (shape [", in.batch, ", ",
             in.length, "])");
  FGPT_CHECK(in.length >= 1, "input_ids: prompts must have at least one token (shape [",
             in.batch, ", ", in.length, "])");
  FGPT_CHECK(in.input_ids != nullptr, "input_ids: no data");
  o.validate(c.vocab_size);
  real_lengths->assign(in.batch, in.length);
  for (int64_t b = 0; b < in.batch; ++b) {
    int64_t first_real = in.length;
    if (in.attention_mask) {
      const int64_t* m = in.attention_mask + b * in.length;
      for (int64_t j = 0; j < in.length; ++j) {
        FGPT_CHECK(m[j] == 0 || m[j] == 1, "attention_mask: values must be 0 or 1, row ", b,
                   " has ", m[j], " at column ", j);
        if (m[j] == 1 && first_real == in.length) first_real = j;
        FGPT_CHECK(!(m[j] == 0 && first_real < in.length), "attention_mask: row ", b,
                   " is not left-padded (a 0 follows a 1 at column ", j, ")");
      }
      FGPT_CHECK(first_real < in.length, "attention_mask: row ", b, " has no real token");
      (*real_lengths)[b] = in.length - first_real;
    } else {
      first_real = 0;
    }
    for (int64_t j = first_real; j < in.length; ++j) {
      const int64_t id = in.input_ids[b * in.length + j];
      FGPT_CHECK(id >= 0 && id < c.vocab_size, "input_ids: id ", id, " at [", b, ", ", j,
                 "] is outside the vocabulary [0, ", c.vocab_size, ")");
    }
    // new_tokens is bounded by the settings table (<= 2^30): no overflow here.
    FGPT_CHECK((*real_lengths)[b] + new_tokens <= c.max_positions, "input_ids: prompt ",
               b, " has ", (*real_lengths)[b], " tokens; with max_new_tokens=", new_tokens,
               " it needs ", (*real_lengths)[b] + new_tokens,
               " positions but the model has ", c.max_positions);
    FGPT_CHECK(c.sliding_window == 0 || (*real_lengths)[b] + new_tokens <= c.sliding_window,
               "input_ids: prompt ", b, " with max_new_tokens=", new_tokens, " needs ",
               (*real_lengths)[b] + new_tokens, " positions, beyond the model's sliding window "
               "of ", c.sliding_window, " (sliding-window attention is not supported)");
  }
  if (!check_budget) return;  // (join: the batch's memory is reserved already)
  // Only now, with every size known and bounded, the memory it will take.
  int64_t max_prompt = 0, total_prompt = 0;
  for (int64_t n : *real_lengths) {
    max_prompt = std::max(max_prompt, n);
    total_prompt += n;
  }
  check_memory(estimate_memory(c, in.batch, max_prompt, total_prompt, in.length, o, new_tokens), o);
}

// A row keeps its prompt + output when something reads it: the n-gram ban, or
// prompt lookup's drafts.
bool keeps_history(const GenerationOptions& o) {
  return o.no_repeat_ngram_size > 0 || o.prompt_lookup_num_tokens > 0;
}

// The real tokens of prompt b, packed, at cache row `row`.
void pack_prompt(const GenerationInput& in, int64_t b, int64_t n, int64_t row,
                 std::vector<int64_t>& tokens, std::vector<TokenSlot>& slots) {
  const int64_t* ids = in.input_ids + b * in.length + (in.length - n);
  for (int64_t j = 0; j < n; ++j) {
    tokens.push_back(ids[j]);
    slots.push_back({row, j});
  }
}

}  // namespace

namespace {
// The shards of a tensor-parallel model run every step together: nothing that one of
// them could decide alone (a clock) may end a row.
void check_lockstep(const Model& model, const GenerationOptions& o) {
  FGPT_CHECK(!model.collective() || o.max_time == 0.0, "max_time: a tensor-parallel shard ",
             "cannot stop on its own clock (the other shards would wait for it); use ",
             "max_new_tokens");
}
}  // namespace

std::vector<int64_t> Generator::check(const GenerationInput& in) const {
  check_lockstep(model_, o_);
  std::vector<int64_t> real_lengths;
  check_input(c_, in, o_, o_.max_new_tokens, &real_lengths);
  return real_lengths;
}

void Generator::prefill(BatchState& s, const GenerationInput& in,
                        const std::vector<int64_t>& real_lengths) {
  const int64_t R = o_.num_return_sequences, rows = in.batch * R;
  s = BatchState();
  prompt_pass(in, real_lengths, R, s.tokens, s.slots);
  s.rows.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    s.rows[r].prompt_row = r / R;
    s.rows[r].length = real_lengths[r / R];
  }
}

void Generator::prefill_beams(const GenerationInput& in, const std::vector<int64_t>& real_lengths) {
  std::vector<int64_t> tokens;
  std::vector<TokenSlot> slots;
  prompt_pass(in, real_lengths, o_.num_beams, tokens, slots);
}

void Generator::prompt_pass(const GenerationInput& in, const std::vector<int64_t>& real_lengths,
                            int64_t rows_per_prompt, std::vector<int64_t>& tokens,
                            std::vector<TokenSlot>& slots) {
  const int64_t B = in.batch, rows = B * rows_per_prompt;
  const int64_t max_prompt = *std::max_element(real_lengths.begin(), real_lengths.end());
  ctx_.kv_cache().allocate(c_, rows, max_prompt + o_.max_new_tokens, o_.kv_cache_dtype);
  std::vector<int64_t> last_token(B);  // index in the pass of each prompt's last token
  for (int64_t b = 0; b < B; ++b) {
    pack_prompt(in, b, real_lengths[b], b * rows_per_prompt, tokens, slots);
    last_token[b] = static_cast<int64_t>(tokens.size()) - 1;
  }
  ctx_.activations().reserve_logits(rows, c_);  // the steps put every row's logits side by side
  forward_prompts(tokens, slots, last_token, 0);
}

void Generator::forward_prompts(const std::vector<int64_t>& tokens,
                                const std::vector<TokenSlot>& slots,
                                const std::vector<int64_t>& last_token, int64_t first_logits_row) {
  const int64_t B = static_cast<int64_t>(last_token.size()), D = c_.hidden_size;
  // Chunk by chunk, keeping the hidden state of each prompt's last token.
  Activations& a = ctx_.activations();
  const Backend& device = ctx_.backend();
  const int64_t row_bytes = D * static_cast<int64_t>(sizeof(float));
  DeviceArray<float> last_hidden(&device);
  last_hidden.grow(B * D);
  const int64_t total = static_cast<int64_t>(tokens.size());
  std::vector<int64_t> keep, owner;  // a chunk's last tokens, and their prompts
  for (int64_t start = 0; start < total; start += kPrefillChunk) {
    const int64_t M = std::min(kPrefillChunk, total - start);
    keep.clear();
    owner.clear();
    for (int64_t b = 0; b < B; ++b)
      if (last_token[b] >= start && last_token[b] < start + M) {
        keep.push_back(last_token[b] - start);  // (prompts go in order: keep rises)
        owner.push_back(b);
      }
    // The other tokens are wanted for their K/V alone.
    model_.forward(ctx_, tokens.data() + start, slots.data() + start, M, &keep);
    for (size_t i = 0; i < keep.size(); ++i)
      device.copy(last_hidden.data() + owner[i] * D, a.x.data() + i * D, row_bytes,
                  CopyKind::kDeviceToDevice);
  }
  a.reserve(B, c_);
  device.copy(a.x.data(), last_hidden.data(), B * row_bytes, CopyKind::kDeviceToDevice);
  model_.logits(ctx_, B);  // into logits rows 0..B-1
  if (first_logits_row > 0)
    std::copy_backward(a.logits.begin(), a.logits.begin() + B * c_.vocab_size,
                       a.logits.begin() + (first_logits_row + B) * c_.vocab_size);
}

void Generator::expand(BatchState& s, const GenerationInput& in) {
  const int64_t R = o_.num_return_sequences, V = c_.vocab_size;
  const int64_t rows = static_cast<int64_t>(s.rows.size());
  std::vector<float>& logits = ctx_.activations().logits;
  for (int64_t r = rows - 1; r >= 0; --r)  // backwards: row r reads prompt r / R <= r
    if (r / R != r)
      std::copy(logits.begin() + (r / R) * V, logits.begin() + (r / R + 1) * V,
                logits.begin() + r * V);
  for (int64_t r = 0; r < rows; ++r) {
    RowState& row = s.rows[r];
    if (r % R != 0) ctx_.kv_cache().copy_prefix(r - r % R, r, row.length);
    start_row(row, in.input_ids + row.prompt_row * in.length + (in.length - row.length), o_);
  }
  s.active.resize(rows);
  for (int64_t r = 0; r < rows; ++r) s.active[r] = r;
  for (auto* v : {&s.tokens, &s.still, &s.order}) {
    v->clear();
    v->reserve(rows);
  }
  s.slots.clear();
  s.slots.reserve(rows);
  s.chosen.resize(rows);
}

TokenChoice Generator::choose(RowState& row, int64_t row_index, float* logits) const {
  const GenerationOptions& o = options_of(row);
  const int64_t generated = static_cast<int64_t>(row.ids.size());
  apply_repetition_penalty(logits, row.seen, o.repetition_penalty);
  ban_repeated_ngrams(logits, row.history.data(), static_cast<int64_t>(row.history.size()),
                      o.no_repeat_ngram_size);
  if (generated < o.min_length) mask_end_tokens(logits, o);
  // beam_search with num_beams = 1 is greedy search, as in transformers.
  if (o.decode_strategy != DecodeStrategy::kSampling) return choose_greedy(logits, c_.vocab_size);
  const int64_t stream_row = row.rng_row >= 0 ? row.rng_row : row_index;
  const double u = philox_uniform(o.seed, static_cast<uint64_t>(stream_row),
                                  static_cast<uint64_t>(generated));
  return choose_sampled(logits, c_.vocab_size, o, u, row.scratch);
}

bool Generator::record(RowState& row, const TokenChoice& ch) const {
  const GenerationOptions& o = options_of(row);
  row.ids.push_back(ch.token);
  row.logprobs.push_back(ch.logprob);
  if (keeps_history(o)) row.history.push_back(ch.token);
  if (o.stop.is_end(ch.token, o.eos_token_id) || row.stop_matcher.push(o.stop, ch.token) ||
      (row.options && static_cast<int64_t>(row.ids.size()) == o.max_new_tokens)) {
    row.finished = true;  // (a joined row counts its own max_new_tokens)
    return false;
  }
  if (o.repetition_penalty != 1.0f && !row.seen_flag[ch.token]) {
    row.seen_flag[ch.token] = 1;
    row.seen.push_back(static_cast<int32_t>(ch.token));
  }
  return true;
}

bool Generator::step(BatchState& s) { return choose_tokens(s) && forward(s); }

bool Generator::choose_tokens(BatchState& s) {
  const int64_t V = c_.vocab_size, n_active = static_cast<int64_t>(s.active.size());
  float* logits = ctx_.activations().logits.data();
  const int64_t choose_grain = ctx_.pool().even_grain(n_active, 65536 / V);
  ctx_.pool().parallel_for(n_active, choose_grain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      s.chosen[i] = choose(s.rows[s.active[i]], s.active[i], logits + i * V);
  });
  s.steps += 1;
  s.still.clear();
  s.tokens.clear();
  s.slots.clear();
  for (int64_t i = 0; i < n_active; ++i) {
    const int64_t r = s.active[i];
    RowState& row = s.rows[r];
    if (!record(row, s.chosen[i])) continue;
    s.still.push_back(r);
    s.tokens.push_back(s.chosen[i].token);
    s.slots.push_back({r, row.length});
    row.length += 1;
  }
  s.active.swap(s.still);
  if ((s.active.empty() && s.pending.empty()) || s.steps == o_.max_new_tokens) return false;
  s.forward_due = true;
  return true;
}

bool Generator::forward(BatchState& s) {
  s.forward_due = false;
  const int64_t M = static_cast<int64_t>(s.active.size());
  s.order.resize(M);  // logits for rows 0..M-1 of the pass, in place
  for (int64_t i = 0; i < M; ++i) s.order[i] = i;
  // Sequences that joined since the last step ride along: their prompt tokens go
  // into this same pass (the weights are read once for both), as far as a chunk
  // allows; their next-token logits follow the running rows'.
  size_t taken = 0;
  for (const PendingJoin& p : s.pending) {
    const int64_t n = static_cast<int64_t>(p.tokens.size());
    if (static_cast<int64_t>(s.tokens.size()) + n > kPrefillChunk) break;
    for (int64_t j = 0; j < n; ++j) {
      s.tokens.push_back(p.tokens[j]);
      s.slots.push_back({p.row, j});
    }
    s.order.push_back(static_cast<int64_t>(s.tokens.size()) - 1);
    ++taken;
  }
  const int64_t pass = static_cast<int64_t>(s.tokens.size());
  if (pass > 0) {  // (none when every chosen row was finished before its pass)
    if (pass > M) ctx_.activations().reserve(pass, c_);
    // The running rows and each joining prompt's last token (s.order rises); the
    // prompts' other tokens are wanted for their K/V alone.
    model_.forward(ctx_, s.tokens.data(), s.slots.data(), pass, &s.order);
    model_.logits(ctx_, static_cast<int64_t>(s.order.size()));
  }
  for (size_t k = 0; k < taken; ++k) s.active.push_back(s.pending[k].row);
  s.pending.erase(s.pending.begin(), s.pending.begin() + taken);
  // A prompt too long to ride along runs on its own, in chunks, now.
  if (taken == 0 && !s.pending.empty()) run_pending(s);
  return true;
}

void Generator::start_row(RowState& row, const int64_t* prompt, const GenerationOptions& o) const {
  row.ids.reserve(o.max_new_tokens);
  row.logprobs.reserve(o.max_new_tokens);
  row.stop_matcher.reset(o.stop);
  if (keeps_history(o)) {
    row.history.reserve(row.length + o.max_new_tokens);
    row.history.assign(prompt, prompt + row.length);
  }
  if (o.repetition_penalty != 1.0f) {
    row.seen_flag.assign(c_.vocab_size, 0);
    for (int64_t j = 0; j < row.length; ++j)
      if (!row.seen_flag[prompt[j]]) {
        row.seen_flag[prompt[j]] = 1;
        row.seen.push_back(static_cast<int32_t>(prompt[j]));
      }
  }
}

void Generator::join(BatchState& s, const std::vector<JoinRequest>& joins) {
  // Every check before any change: a bad request leaves the batch as it was.
  for (size_t k = 0; k < joins.size(); ++k) {
    const JoinRequest& j = joins[k];
    FGPT_CHECK(j.row >= 0 && j.row < static_cast<int64_t>(s.rows.size()), "join: row ", j.row,
               " is outside the batch of ", s.rows.size(), " rows");
    FGPT_CHECK(std::find(s.active.begin(), s.active.end(), j.row) == s.active.end() &&
                   std::none_of(s.pending.begin(), s.pending.end(),
                                [&](const PendingJoin& p) { return p.row == j.row; }),
               "join: row ", j.row, " is still running");
    for (size_t e = 0; e < k; ++e)
      FGPT_CHECK(joins[e].row != j.row, "join: row ", j.row, " is given twice");
    const GenerationOptions& o = *j.options;
    check_lockstep(model_, o);
    FGPT_CHECK(o.num_return_sequences == 1, "join: num_return_sequences must be 1 (join each ",
               "copy with its own rng_row), got ", o.num_return_sequences);
    FGPT_CHECK(j.rng_row >= 0, "join: rng_row must be >= 0, got ", j.rng_row);
    FGPT_CHECK(o.kv_cache_dtype == ctx_.kv_cache().dtype(), "join: kv_cache_dtype must be the ",
               "batch's (", kv_dtype_name(ctx_.kv_cache().dtype()), "), got ",
               kv_dtype_name(o.kv_cache_dtype));
    FGPT_CHECK(o.matmul_precision == ctx_.matmul_precision(), "join: matmul_precision must be ",
               "the batch's (", matmul_precision_name(ctx_.matmul_precision()), "), got ",
               matmul_precision_name(o.matmul_precision));
    GenerationInput one{j.prompt, nullptr, 1, j.length};
    std::vector<int64_t> real_lengths;
    check_input(c_, one, o, o.max_new_tokens, &real_lengths, false);
    FGPT_CHECK(j.length + o.max_new_tokens <= ctx_.kv_cache().max_length(), "input_ids: a prompt of ",
               j.length, " tokens with max_new_tokens=", o.max_new_tokens, " does not fit the batch's ",
               ctx_.kv_cache().max_length(), " positions per row");
  }
  for (const JoinRequest& j : joins) {
    RowState& row = s.rows[j.row];
    row = RowState();
    row.prompt_row = -1;
    row.length = j.length;
    row.options = j.options;
    row.rng_row = j.rng_row;
    row.deadline = Deadline::after(j.options->max_time);
    start_row(row, j.prompt, *j.options);
    s.pending.push_back({j.row, std::vector<int64_t>(j.prompt, j.prompt + j.length)});
  }
  // With rows running, the prompts go into the next step's pass (step()); with none,
  // they run now, so the next step has logits to choose from.
  if (s.active.empty()) run_pending(s);
}

void Generator::run_pending(BatchState& s) {
  if (s.pending.empty()) return;
  std::vector<int64_t> tokens, last_token;
  std::vector<TokenSlot> slots;
  for (const PendingJoin& p : s.pending) {
    for (int64_t t = 0; t < static_cast<int64_t>(p.tokens.size()); ++t) {
      tokens.push_back(p.tokens[t]);
      slots.push_back({p.row, t});
    }
    last_token.push_back(static_cast<int64_t>(tokens.size()) - 1);
  }
  // One prompt pass for all of them (the weights read once); it overwrites act.logits,
  // so the running rows' logits are kept aside and the new ones go after them.
  const int64_t V = c_.vocab_size, n_active = static_cast<int64_t>(s.active.size());
  const int64_t B = static_cast<int64_t>(s.pending.size());
  std::vector<float>& logits = ctx_.activations().logits;
  s.saved_logits.assign(logits.begin(), logits.begin() + n_active * V);
  ctx_.activations().reserve_logits(n_active + B, c_);
  forward_prompts(tokens, slots, last_token, n_active);
  std::copy(s.saved_logits.begin(), s.saved_logits.end(), logits.begin());
  for (const PendingJoin& p : s.pending) s.active.push_back(p.row);
  s.pending.clear();
}

void Generator::finish_row(BatchState& s, int64_t r) const {
  FGPT_CHECK(r >= 0 && r < static_cast<int64_t>(s.rows.size()), "finish_row: row ", r,
             " is outside the batch of ", s.rows.size(), " rows");
  s.rows[r].finished = true;
  for (auto p = s.pending.begin(); p != s.pending.end(); ++p)
    if (p->row == r) {  // it never started
      s.pending.erase(p);
      return;
    }
  const auto it = std::find(s.active.begin(), s.active.end(), r);
  if (it == s.active.end()) return;
  const int64_t i = it - s.active.begin(), n = static_cast<int64_t>(s.active.size());
  if (s.forward_due) {
    // Its chosen token has not been through the model yet: it leaves that pass too.
    FGPT_CHECK(s.tokens.size() == s.active.size(), "finish_row: the pending pass holds ",
               s.tokens.size(), " tokens for ", s.active.size(), " rows");
    s.tokens.erase(s.tokens.begin() + i);
    s.slots.erase(s.slots.begin() + i);
    // With no row left, no pass is due: a sequence that joins now runs its prompt at
    // once (join()), and becomes the first of the next choice.
    if (n == 1) s.forward_due = false;
  } else {
    // Row i of act.logits belongs to active[i]: close the gap it leaves.
    const int64_t V = c_.vocab_size;
    float* logits = ctx_.activations().logits.data();
    std::copy(logits + (i + 1) * V, logits + n * V, logits + i * V);
  }
  s.active.erase(it);
}

GenerationResult Generator::collect(const BatchState& s) const {
  GenerationResult res;
  const int64_t rows = static_cast<int64_t>(s.rows.size()), T = s.steps;
  res.rows = rows;
  res.steps = T;
  const int64_t pad =
      o_.pad_token_id >= 0 ? o_.pad_token_id : std::max<int64_t>(o_.eos_token_id, 0);
  res.ids.assign(rows * T, pad);
  res.lengths.resize(rows);
  res.scores.resize(rows);
  if (o_.return_logprobs) res.logprobs.assign(rows * T, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const RowState& row = s.rows[r];
    res.lengths[r] = static_cast<int64_t>(row.ids.size());
    res.scores[r] = std::accumulate(row.logprobs.begin(), row.logprobs.end(), 0.0f);
    std::copy(row.ids.begin(), row.ids.end(), res.ids.begin() + r * T);
    if (o_.return_logprobs)
      std::copy(row.logprobs.begin(), row.logprobs.end(), res.logprobs.begin() + r * T);
  }
  return res;
}

GenerationResult Generator::run(const GenerationInput& in) {
  const std::vector<int64_t> real_lengths = check(in);
  const Deadline deadline = Deadline::after(o_.max_time);
  if (o_.decode_strategy == DecodeStrategy::kBeamSearch && o_.num_beams > 1)
    return BeamSearch(model_, o_, ctx_, *this).run(in, real_lengths, deadline);
  if (o_.prompt_lookup_num_tokens > 0)
    return PromptLookup(model_, o_, ctx_, *this).run(in, real_lengths, deadline);
  BatchState s;
  prefill(s, in, real_lengths);
  expand(s, in);
  while (step(s) && !deadline.passed()) {
  }
  return collect(s);
}

std::vector<float> Generator::score(const GenerationInput& in) {
  std::vector<int64_t> real_lengths;
  check_input(c_, in, o_, 0, &real_lengths);
  const int64_t B = in.batch, L = in.length, V = c_.vocab_size;
  const int64_t max_prompt = *std::max_element(real_lengths.begin(), real_lengths.end());
  ctx_.kv_cache().allocate(c_, B, max_prompt, o_.kv_cache_dtype);
  std::vector<int64_t> tokens, where;  // where: flat [B, L] position of each packed token
  std::vector<TokenSlot> slots;
  for (int64_t b = 0; b < B; ++b) {
    pack_prompt(in, b, real_lengths[b], b, tokens, slots);
    for (int64_t j = 0; j < real_lengths[b]; ++j) where.push_back(b * L + (L - real_lengths[b]) + j);
  }
  const int64_t total = static_cast<int64_t>(tokens.size());
  const std::vector<float>& logits = ctx_.activations().logits;
  std::vector<float> out(B * L * V, 0.0f);
  for (int64_t start = 0; start < total; start += kPrefillChunk) {  // bounded memory, as prefill
    const int64_t M = std::min(kPrefillChunk, total - start);
    model_.forward(ctx_, tokens.data() + start, slots.data() + start, M);
    model_.logits(ctx_, M);
    for (int64_t i = 0; i < M; ++i)
      std::copy(logits.begin() + i * V, logits.begin() + (i + 1) * V,
                out.begin() + where[start + i] * V);
  }
  return out;
}

void validate_request(const ModelConfig& config, const GenerationInput& input,
                      const GenerationOptions& options) {
  config.validate();
  std::vector<int64_t> real_lengths;
  check_input(config, input, options, options.max_new_tokens, &real_lengths);
}

GenerationResult generate(const Model& model, const GenerationInput& input,
                          const GenerationOptions& options) {
  validate_request(model.config(), input, options);
  std::unique_lock<std::mutex> lock;
  Context& ctx = shared_context(model.backend(), static_cast<int>(options.num_threads), &lock);
  GenerationResult result = Generator(model, options, ctx).run(input);
  ctx.trim();
  return result;
}

std::vector<float> compute_logits(const Model& model, const GenerationInput& input,
                                  const GenerationOptions& options) {
  std::unique_lock<std::mutex> lock;
  Context& ctx = shared_context(model.backend(), static_cast<int>(options.num_threads), &lock);
  std::vector<float> logits = Generator(model, options, ctx).score(input);
  ctx.trim();
  return logits;
}

}  // namespace fastergpt
