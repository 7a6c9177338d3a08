#include "generator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>

#include "error.h"
#include "kernels.h"
#include "kv_cache.h"
#include "logits_processor.h"
#include "philox.h"
#include "thread_pool.h"

namespace fastergpt {
namespace {

// Per-row decoding state.
struct RowState {
  int64_t prompt_row = 0;   // which input row it came from
  int64_t length = 0;       // tokens in its cache (= next position)
  int64_t generated = 0;
  bool finished = false;
  std::vector<int32_t> seen;        // distinct ids of prompt + output (repetition penalty)
  std::vector<uint8_t> seen_flag;   // [V], only when the penalty is on
  SamplerScratch scratch;
};

// Activations of the tokens being processed in one pass (M of them).
inline void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}

struct Activations {
  std::vector<float> x, h, qkv, attn, mlp, logits;
  void reserve(int64_t M, const ModelConfig& c) {
    grow(x, M * c.hidden_size);
    grow(h, M * c.hidden_size);
    grow(qkv, M * 3 * c.hidden_size);
    grow(attn, M * c.hidden_size);
    grow(mlp, M * c.inner_size);
    grow(logits, M * c.vocab_size);
  }
};

// Which cache row and slot each token of a pass belongs to.
struct TokenSlot {
  int64_t row;
  int64_t slot;  // position in the row's cache = its position id
};

// `new_tokens` positions must fit after each prompt (0 when only scoring).
void check_input(const ModelConfig& c, const GenerationInput& in, const GenerationOptions& o,
                 int64_t new_tokens, std::vector<int64_t>* real_lengths) {
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
    FGPT_CHECK((*real_lengths)[b] + new_tokens <= c.max_positions, "input_ids: prompt ",
               b, " has ", (*real_lengths)[b], " tokens; with max_new_tokens=", new_tokens,
               " it needs ", (*real_lengths)[b] + new_tokens,
               " positions but the model has ", c.max_positions);
  }
}

// Buffers kept between calls (they only grow), so a steady stream of
// requests allocates nothing after the first.
struct Workspace {
  KVCache cache;
  Activations act;
};

class Generator {
 public:
  Generator(const ModelConfig& c, const ModelWeights& w, const GenerationOptions& o,
            ThreadPool& pool, Workspace& ws)
      : c_(c), w_(w), o_(o), pool_(pool), cache_(ws.cache), act_(ws.act) {}

  GenerationResult run(const GenerationInput& in, const std::vector<int64_t>& real_lengths);
  std::vector<float> logits(const GenerationInput& in, const std::vector<int64_t>& real_lengths);

 private:
  void embed(const std::vector<int64_t>& tokens, const std::vector<TokenSlot>& slots);
  void forward(const std::vector<TokenSlot>& slots);
  void logits_for(const std::vector<int64_t>& token_rows);
  TokenChoice choose(RowState& row, int64_t row_index, float* logits);

  const ModelConfig& c_;
  const ModelWeights& w_;
  const GenerationOptions& o_;
  ThreadPool& pool_;
  KVCache& cache_;
  Activations& act_;
  std::vector<RowState> rows_;
};

void Generator::embed(const std::vector<int64_t>& tokens, const std::vector<TokenSlot>& slots) {
  const int64_t D = c_.hidden_size;
  for (size_t m = 0; m < tokens.size(); ++m) {
    float* x = act_.x.data() + m * D;
    dequantize_row(w_.token_embedding, tokens[m], x);
    const float* pe = w_.position_embedding + slots[m].slot * D;
    for (int64_t i = 0; i < D; ++i) x[i] += pe[i];
  }
}

// Runs every layer over the M tokens in act_.x; token m attends over cache
// slots [0, slots[m].slot] of its row, after its own K/V are written there.
void Generator::forward(const std::vector<TokenSlot>& slots) {
  const int64_t M = static_cast<int64_t>(slots.size());
  const int64_t D = c_.hidden_size, H = c_.num_heads, Dh = c_.head_size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
  for (int64_t l = 0; l < c_.num_layers; ++l) {
    const LayerWeights& lw = w_.layers[l];
    layer_norm(act_.x.data(), M, D, lw.ln1_gamma, lw.ln1_beta, c_.layer_norm_epsilon,
               act_.h.data(), pool_);
    linear(act_.h.data(), M, lw.qkv, lw.qkv_bias, Epilogue::kStore, act_.qkv.data(), pool_);
    for (int64_t m = 0; m < M; ++m) {
      const float* qkv = act_.qkv.data() + m * 3 * D;
      for (int64_t h = 0; h < H; ++h) {
        std::memcpy(cache_.key(l, slots[m].row, h, slots[m].slot), qkv + D + h * Dh,
                    Dh * sizeof(float));
        std::memcpy(cache_.value(l, slots[m].row, h, slots[m].slot), qkv + 2 * D + h * Dh,
                    Dh * sizeof(float));
      }
    }
    // Enough (token, head) pairs per thread to outweigh the hand-off.
    const int64_t attn_grain = std::max<int64_t>(1, 16384 / (Dh * (slots[0].slot + 1)));
    pool_.parallel_for(M * H, attn_grain, [&](int64_t t0, int64_t t1) {
      thread_local std::vector<float> scores;
      if (static_cast<int64_t>(scores.size()) < cache_.max_length()) scores.resize(cache_.max_length());
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t m = t / H, h = t % H;
        const TokenSlot& s = slots[m];
        attend(act_.qkv.data() + m * 3 * D + h * Dh, cache_.key(l, s.row, h, 0),
               cache_.value(l, s.row, h, 0), s.slot + 1, Dh, scale,
               act_.attn.data() + m * D + h * Dh, scores.data());
      }
    });
    linear(act_.attn.data(), M, lw.attn_out, lw.attn_out_bias, Epilogue::kAccumulate,
           act_.x.data(), pool_);
    layer_norm(act_.x.data(), M, D, lw.ln2_gamma, lw.ln2_beta, c_.layer_norm_epsilon,
               act_.h.data(), pool_);
    linear(act_.h.data(), M, lw.fc, lw.fc_bias, gelu_epilogue(c_.activation), act_.mlp.data(),
           pool_);
    linear(act_.mlp.data(), M, lw.proj, lw.proj_bias, Epilogue::kAccumulate, act_.x.data(),
           pool_);
  }
}

// Final LayerNorm and LM head for the listed token rows of act_.x, into
// act_.logits [n, V] (the context pass needs logits of each prompt's last token only).
void Generator::logits_for(const std::vector<int64_t>& token_rows) {
  const int64_t D = c_.hidden_size, n = static_cast<int64_t>(token_rows.size());
  for (int64_t i = 0; i < n; ++i)
    if (token_rows[i] != i)
      std::memcpy(act_.x.data() + i * D, act_.x.data() + token_rows[i] * D, D * sizeof(float));
  layer_norm(act_.x.data(), n, D, w_.lnf_gamma, w_.lnf_beta, c_.layer_norm_epsilon,
             act_.h.data(), pool_);
  linear(act_.h.data(), n, w_.lm_head, nullptr, Epilogue::kStore, act_.logits.data(), pool_);
}

TokenChoice Generator::choose(RowState& row, int64_t row_index, float* logits) {
  apply_repetition_penalty(logits, row.seen, o_.repetition_penalty);
  if (o_.eos_token_id >= 0 && row.generated < o_.min_length) logits[o_.eos_token_id] = -INFINITY;
  if (o_.strategy == DecodeStrategy::kGreedy) return choose_greedy(logits, c_.vocab_size);
  const double u = philox_uniform(o_.seed, static_cast<uint64_t>(row_index),
                                  static_cast<uint64_t>(row.generated));
  return choose_sampled(logits, c_.vocab_size, o_.top_k, o_.top_p, o_.temperature, u,
                        row.scratch);
}

GenerationResult Generator::run(const GenerationInput& in,
                                const std::vector<int64_t>& real_lengths) {
  const int64_t R = o_.num_return_sequences, rows = in.batch * R, V = c_.vocab_size;
  const int64_t max_prompt = *std::max_element(real_lengths.begin(), real_lengths.end());
  cache_.allocate(c_, rows, max_prompt + o_.max_new_tokens);
  const bool penalty = o_.repetition_penalty != 1.0f;

  // Context pass: each prompt once, into the cache row of its first copy; the
  // other num_return_sequences copies get its keys/values and logits after.
  std::vector<int64_t> tokens;
  std::vector<TokenSlot> slots;
  std::vector<int64_t> last_token;  // index in the pass of each prompt's last token
  for (int64_t b = 0; b < in.batch; ++b) {
    const int64_t n = real_lengths[b];
    const int64_t* ids = in.input_ids + b * in.length + (in.length - n);
    for (int64_t j = 0; j < n; ++j) {
      tokens.push_back(ids[j]);
      slots.push_back({b * R, j});
    }
    last_token.push_back(static_cast<int64_t>(tokens.size()) - 1);
  }
  act_.reserve(std::max<int64_t>(static_cast<int64_t>(tokens.size()), rows), c_);
  embed(tokens, slots);
  forward(slots);
  logits_for(last_token);
  for (int64_t r = rows - 1; r >= 0; --r)  // backwards: row r reads prompt r / R <= r
    if (r / R != r)
      std::copy(act_.logits.begin() + (r / R) * V, act_.logits.begin() + (r / R + 1) * V,
                act_.logits.begin() + r * V);
  rows_.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    RowState& row = rows_[r];
    row = RowState();
    row.prompt_row = r / R;
    row.length = real_lengths[row.prompt_row];
    if (r % R != 0) cache_.copy_prefix(r - r % R, r, row.length);
    if (penalty) {
      row.seen_flag.assign(V, 0);
      const int64_t* ids = in.input_ids + row.prompt_row * in.length + (in.length - row.length);
      for (int64_t j = 0; j < row.length; ++j)
        if (!row.seen_flag[ids[j]]) {
          row.seen_flag[ids[j]] = 1;
          row.seen.push_back(static_cast<int32_t>(ids[j]));
        }
    }
  }

  GenerationResult res;
  res.rows = rows;
  const int64_t pad = o_.pad_token_id >= 0 ? o_.pad_token_id : std::max<int64_t>(o_.eos_token_id, 0);
  // Everything the loop needs is sized here: decoding steps allocate nothing.
  std::vector<std::vector<int64_t>> out_ids(rows);
  std::vector<std::vector<float>> out_lp(rows);
  for (int64_t r = 0; r < rows; ++r) {
    out_ids[r].reserve(o_.max_new_tokens);
    out_lp[r].reserve(o_.max_new_tokens);
  }
  std::vector<int64_t> active(rows), still, identity(rows);  // active: rows still generating
  for (int64_t r = 0; r < rows; ++r) active[r] = identity[r] = r;
  still.reserve(rows);
  tokens.reserve(rows);
  slots.reserve(rows);

  std::vector<TokenChoice> chosen(rows);
  for (int64_t step = 0; step < o_.max_new_tokens; ++step) {
    const int64_t n_active = static_cast<int64_t>(active.size());
    const int64_t choose_grain = std::max<int64_t>(1, 65536 / V);
    pool_.parallel_for(n_active, choose_grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        chosen[i] = choose(rows_[active[i]], active[i], act_.logits.data() + i * V);
    });
    res.steps = step + 1;
    still.clear();
    tokens.clear();
    slots.clear();
    for (int64_t i = 0; i < n_active; ++i) {
      const int64_t r = active[i];
      RowState& row = rows_[r];
      const TokenChoice ch = chosen[i];
      out_ids[r].push_back(ch.token);
      out_lp[r].push_back(ch.logprob);
      row.generated += 1;
      if (o_.eos_token_id >= 0 && ch.token == o_.eos_token_id) {
        row.finished = true;
        continue;
      }
      if (penalty && !row.seen_flag[ch.token]) {
        row.seen_flag[ch.token] = 1;
        row.seen.push_back(static_cast<int32_t>(ch.token));
      }
      still.push_back(r);
      tokens.push_back(ch.token);
      slots.push_back({r, row.length});
      row.length += 1;
    }
    active.swap(still);
    if (active.empty() || step + 1 == o_.max_new_tokens) break;
    embed(tokens, slots);
    forward(slots);
    identity.resize(active.size());  // shrinks only: logits for rows 0..n_active-1 of the pass
    logits_for(identity);
  }

  const int64_t T = res.steps;
  res.ids.assign(rows * T, pad);
  res.lengths.resize(rows);
  if (o_.return_logprobs) res.logprobs.assign(rows * T, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    res.lengths[r] = static_cast<int64_t>(out_ids[r].size());
    std::copy(out_ids[r].begin(), out_ids[r].end(), res.ids.begin() + r * T);
    if (o_.return_logprobs)
      std::copy(out_lp[r].begin(), out_lp[r].end(), res.logprobs.begin() + r * T);
  }
  return res;
}

// One context pass with the LM head applied at every real token.
std::vector<float> Generator::logits(const GenerationInput& in,
                                     const std::vector<int64_t>& real_lengths) {
  const int64_t B = in.batch, L = in.length, V = c_.vocab_size;
  const int64_t max_prompt = *std::max_element(real_lengths.begin(), real_lengths.end());
  cache_.allocate(c_, B, max_prompt);
  std::vector<int64_t> tokens, where;  // where: flat [B, L] position of each packed token
  std::vector<TokenSlot> slots;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = real_lengths[b];
    for (int64_t j = 0; j < n; ++j) {
      tokens.push_back(in.input_ids[b * L + (L - n) + j]);
      slots.push_back({b, j});
      where.push_back(b * L + (L - n) + j);
    }
  }
  const int64_t M = static_cast<int64_t>(tokens.size());
  act_.reserve(M, c_);
  embed(tokens, slots);
  forward(slots);
  std::vector<int64_t> all(M);
  for (int64_t i = 0; i < M; ++i) all[i] = i;
  logits_for(all);
  std::vector<float> out(B * L * V, 0.0f);
  for (int64_t i = 0; i < M; ++i)
    std::copy(act_.logits.begin() + i * V, act_.logits.begin() + (i + 1) * V,
              out.begin() + where[i] * V);
  return out;
}

}  // namespace

void validate_request(const ModelConfig& config, const GenerationInput& input,
                      const GenerationOptions& options) {
  config.validate();
  std::vector<int64_t> real_lengths;
  check_input(config, input, options, options.max_new_tokens, &real_lengths);
}

std::vector<float> compute_logits(const ModelConfig& config, const ModelWeights& weights,
                                  const GenerationInput& input, int64_t num_threads) {
  config.validate();
  GenerationOptions options;
  options.num_threads = num_threads;
  std::vector<int64_t> real_lengths;
  check_input(config, input, options, 0, &real_lengths);
  std::lock_guard<std::mutex> lock(pool_mutex());
  ThreadPool& pool = shared_pool(static_cast<int>(num_threads));
  static Workspace workspace;  // guarded by pool_mutex()
  Generator gen(config, weights, options, pool, workspace);
  return gen.logits(input, real_lengths);
}

GenerationResult generate(const ModelConfig& config, const ModelWeights& weights,
                          const GenerationInput& input, const GenerationOptions& options) {
  config.validate();
  std::vector<int64_t> real_lengths;
  check_input(config, input, options, options.max_new_tokens, &real_lengths);
  std::lock_guard<std::mutex> lock(pool_mutex());
  ThreadPool& pool = shared_pool(static_cast<int>(options.num_threads));
  static Workspace workspace;  // guarded by pool_mutex()
  Generator gen(config, weights, options, pool, workspace);
  return gen.run(input, real_lengths);
}

}  // namespace fastergpt
