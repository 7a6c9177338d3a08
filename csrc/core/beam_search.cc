#include "beam_search.h"

#include <algorithm>
#include <cmath>

#include "error.h"
#include "kernels.h"
#include "kv_cache.h"
#include "logits_processor.h"

namespace fastergpt {
namespace {

// What transformers' length penalty divides by.
float penalised(float score, int64_t length, float length_penalty) {
  return static_cast<float>(score / std::pow(static_cast<double>(length), length_penalty));
}

// Best first; on equal scores the earlier beam, then the lower token (a fixed order).
bool better(const BeamCandidate& a, const BeamCandidate& b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.beam != b.beam) return a.beam < b.beam;
  return a.token < b.token;
}

}  // namespace

void BeamSearch::top_continuations(const Group& g, const Sequence& beam, int64_t step,
                                   float* x, int32_t beam_index, int64_t k,
                                   Candidate* out) const {
  const int64_t V = c_.vocab_size;
  // log_softmax, as transformers takes it before the processors.
  float top = x[0];
  for (int64_t v = 1; v < V; ++v) top = x[v] > top ? x[v] : top;
  FGPT_CHECK(std::isfinite(top), "the model's logits are not finite (NaN or Inf); the weights "
             "or the activations overflowed");
  // (x - max) - log(sum(exp(x - max))), rounded as torch's log_softmax rounds it.
  const float log_sum = static_cast<float>(std::log(sum_exp(x, V, top)));
  for (int64_t v = 0; v < V; ++v) x[v] = (x[v] - top) - log_sum;
  // The processors, on log-probabilities, over the prompt's real tokens + this beam's.
  thread_local std::vector<int64_t> history;
  history.assign(g.prompt.begin(), g.prompt.end());
  history.insert(history.end(), beam.tokens.begin(), beam.tokens.end());
  if (o_.repetition_penalty != 1.0f) {
    thread_local std::vector<uint8_t> seen;
    thread_local std::vector<int32_t> distinct;
    seen.assign(V, 0);
    distinct.clear();
    for (int64_t id : history)
      if (!seen[id]) {
        seen[id] = 1;
        distinct.push_back(static_cast<int32_t>(id));
      }
    apply_repetition_penalty(x, distinct, o_.repetition_penalty);
  }
  ban_repeated_ngrams(x, history.data(), static_cast<int64_t>(history.size()),
                      o_.no_repeat_ngram_size);
  if (step < o_.min_length) mask_end_tokens(x, o_);
  // The k best, kept sorted in out[0..n).
  int64_t n = 0;
  for (int64_t v = 0; v < V; ++v) {
    const Candidate c{beam.score + x[v], x[v], beam_index, static_cast<int32_t>(v)};
    if (n == k && !better(c, out[k - 1])) continue;
    int64_t at = n < k ? n++ : k - 1;
    while (at > 0 && better(c, out[at - 1])) {
      out[at] = out[at - 1];
      --at;
    }
    out[at] = c;
  }
}

void BeamSearch::advance(Group& g, int64_t group_index, int64_t step,
                         const std::vector<Candidate>& best) {
  const int64_t N = o_.num_beams, generated = step + 1;
  // At max_new_tokens, or when max_time ran out (transformers' MaxTimeCriteria makes
  // every candidate of that step end), the best N candidates finish as they are.
  const bool last = generated == o_.max_new_tokens || time_up_;
  auto ends = [&](const Candidate& c) {
    return last || o_.stop.is_end(c.token, o_.eos_token_id);
  };
  // Finished hypotheses: only candidates among the best N count (the rest are
  // there so that N beams can run on).
  for (int64_t i = 0; i < static_cast<int64_t>(best.size()) && i < N; ++i) {
    if (!ends(best[i])) continue;
    const Sequence& parent = g.beams[best[i].beam];
    Sequence hyp;
    hyp.tokens = parent.tokens;
    hyp.tokens.push_back(best[i].token);
    hyp.logprobs = parent.logprobs;
    hyp.logprobs.push_back(best[i].logprob);
    hyp.score = penalised(best[i].score, generated, o_.length_penalty);
    // Kept best first (a newcomer goes after equal scores), at most N.
    auto at = std::upper_bound(g.finished.begin(), g.finished.end(), hyp.score,
                               [](float s, const Sequence& h) { return s > h.score; });
    if (at - g.finished.begin() < N) g.finished.insert(at, std::move(hyp));
    if (static_cast<int64_t>(g.finished.size()) > N) g.finished.pop_back();
  }
  if (last) {
    g.done = true;
    return;
  }
  // The next running beams: the best N candidates that do not end.
  KVCache& cache = ctx_.kv_cache();
  const int64_t position = g.length + step;  // where this step's tokens go
  const int64_t first_row = group_index * N;
  history_.resize(static_cast<size_t>(g.beams.size() * (position + 1)));
  for (size_t j = 0; j < g.beams.size(); ++j)
    std::copy(cache.sources(first_row + j), cache.sources(first_row + j) + position,
              history_.begin() + j * (position + 1));
  std::vector<Sequence> next;
  next.reserve(N);
  for (const Candidate& c : best) {
    if (static_cast<int64_t>(next.size()) == N) break;
    if (ends(c)) continue;
    const int64_t j = static_cast<int64_t>(next.size());
    Sequence beam = g.beams[c.beam];
    beam.tokens.push_back(c.token);
    beam.logprobs.push_back(c.logprob);
    beam.score = c.score;
    next.push_back(std::move(beam));
    // Beam j's history is its parent's; its new token is written to its own row.
    int32_t* src = cache.sources(first_row + j);
    std::copy(history_.begin() + c.beam * (position + 1),
              history_.begin() + c.beam * (position + 1) + position, src);
    src[position] = static_cast<int32_t>(first_row + j);
  }
  FGPT_CHECK(static_cast<int64_t>(next.size()) == N, "beam search: fewer than num_beams (", N,
             ") continuations that do not end; the vocabulary (", c_.vocab_size,
             ") is too small for this many beams");
  g.beams.swap(next);
  // Can a running beam still beat the worst finished hypothesis?
  if (static_cast<int64_t>(g.finished.size()) == N) {
    const bool never = o_.early_stopping == EarlyStopping::kNever && o_.length_penalty > 0.0f;
    const int64_t best_length = never ? o_.max_new_tokens : generated;
    const float best_possible = penalised(g.beams[0].score, best_length, o_.length_penalty);
    g.improvable = g.improvable && best_possible > g.finished.back().score;
  }
  g.done = !g.improvable || (o_.early_stopping == EarlyStopping::kTrue &&
                             static_cast<int64_t>(g.finished.size()) == N);
}

GenerationResult BeamSearch::run(const GenerationInput& in,
                                 const std::vector<int64_t>& real_lengths, const Deadline& deadline) {
  const int64_t B = in.batch, N = o_.num_beams, R = o_.num_return_sequences, V = c_.vocab_size;
  // Candidates kept per group, as transformers: max(2, 1 + end tokens) * N, so that N
  // beams run on even when the best ones all end.
  const int64_t end_tokens =
      (o_.eos_token_id >= 0 ? 1 : 0) + static_cast<int64_t>(o_.stop.end_token_ids.size());
  const int64_t K = std::min<int64_t>(std::max<int64_t>(2, 1 + end_tokens) * N, V);
  gen_.prefill_beams(in, real_lengths);
  KVCache& cache = ctx_.kv_cache();
  cache.enable_sources();
  std::vector<Group> groups(B);
  for (int64_t b = 0; b < B; ++b) {
    Group& g = groups[b];
    g.length = real_lengths[b];
    const int64_t* ids = in.input_ids + b * in.length + (in.length - g.length);
    g.prompt.assign(ids, ids + g.length);
    g.beams.resize(1);  // one beam until the first step: the others would repeat it
    g.beams[0].tokens.reserve(o_.max_new_tokens);
    g.beams[0].logprobs.reserve(o_.max_new_tokens);
    for (int64_t j = 1; j < N; ++j)  // every beam reads the prompt from the first row
      std::fill(cache.sources(b * N + j), cache.sources(b * N + j) + g.length,
                static_cast<int32_t>(b * N));
  }
  std::vector<int64_t> live(B);  // the groups whose beams own rows of act.logits, in order
  for (int64_t b = 0; b < B; ++b) live[b] = b;
  std::vector<Candidate> candidates;
  std::vector<std::vector<Candidate>> best(B);
  std::vector<int64_t> tokens;
  std::vector<TokenSlot> slots;
  for (int64_t step = 0;; ++step) {
    // Each live beam's best K continuations, in parallel over beams.
    std::vector<std::pair<int64_t, int64_t>> rows;  // (group, beam) of each logits row
    for (int64_t b : live)
      for (int64_t j = 0; j < static_cast<int64_t>(groups[b].beams.size()); ++j)
        rows.emplace_back(b, j);
    const int64_t M = static_cast<int64_t>(rows.size());
    candidates.resize(M * K);
    float* logits = ctx_.activations().logits.data();
    ctx_.pool().parallel_for(M, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const Group& g = groups[rows[i].first];
        top_continuations(g, g.beams[rows[i].second], step, logits + i * V,
                          static_cast<int32_t>(rows[i].second), K, candidates.data() + i * K);
      }
    });
    // Per prompt: its best K over all its beams, then the step.
    time_up_ = deadline.passed();
    for (int64_t i = 0; i < M;) {
      const int64_t b = rows[i].first;
      int64_t end = i;
      while (end < M && rows[end].first == b) ++end;
      std::vector<Candidate>& mine = best[b];
      mine.assign(candidates.begin() + i * K, candidates.begin() + end * K);
      const int64_t keep = std::min<int64_t>(K, static_cast<int64_t>(mine.size()));
      std::partial_sort(mine.begin(), mine.begin() + keep, mine.end(), better);
      mine.resize(keep);
      advance(groups[b], b, step, mine);
      i = end;
    }
    std::vector<int64_t> still;
    for (int64_t b : live)
      if (!groups[b].done) still.push_back(b);
    live.swap(still);
    if (live.empty()) break;
    // The live beams' new tokens through the model; their logits come back in this order.
    tokens.clear();
    slots.clear();
    for (int64_t b : live)
      for (int64_t j = 0; j < N; ++j) {
        tokens.push_back(groups[b].beams[j].tokens.back());
        slots.push_back({b * N + j, groups[b].length + step});
      }
    const int64_t Mn = static_cast<int64_t>(tokens.size());
    model_.forward(ctx_, tokens.data(), slots.data(), Mn);
    model_.logits(ctx_, Mn);
  }
  // The best R hypotheses of each prompt.
  for (const Group& g : groups)
    FGPT_CHECK(static_cast<int64_t>(g.finished.size()) >= R, "beam search finished only ",
               g.finished.size(), " sequences, fewer than num_return_sequences (", R, ")");
  GenerationResult res;
  res.rows = B * R;
  int64_t T = 0;
  for (const Group& g : groups)
    for (int64_t r = 0; r < R; ++r) T = std::max<int64_t>(T, g.finished[r].tokens.size());
  res.steps = T;
  const int64_t pad =
      o_.pad_token_id >= 0 ? o_.pad_token_id : std::max<int64_t>(o_.eos_token_id, 0);
  res.ids.assign(res.rows * T, pad);
  res.lengths.resize(res.rows);
  res.scores.resize(res.rows);
  if (o_.return_logprobs) res.logprobs.assign(res.rows * T, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t r = 0; r < R; ++r) {
      const Sequence& h = groups[b].finished[r];
      const int64_t row = b * R + r;
      res.lengths[row] = static_cast<int64_t>(h.tokens.size());
      res.scores[row] = h.score;
      std::copy(h.tokens.begin(), h.tokens.end(), res.ids.begin() + row * T);
      if (o_.return_logprobs)
        std::copy(h.logprobs.begin(), h.logprobs.end(), res.logprobs.begin() + row * T);
    }
  return res;
}

}  // namespace fastergpt
