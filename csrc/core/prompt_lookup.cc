#include "prompt_lookup.h"

#include <algorithm>

namespace fastergpt {

std::vector<int64_t> lookup_draft(const std::vector<int64_t>& sequence, int64_t max_ngram,
                                  int64_t max_tokens) {
  const int64_t len = static_cast<int64_t>(sequence.size());
  if (max_tokens <= 0) return {};
  for (int64_t n = std::min(max_ngram, len - 1); n >= 1; --n) {
    const int64_t* tail = sequence.data() + len - n;
    // Every earlier window, the latest first: a sequence that repeats itself repeats
    // what it did last (transformers takes the first; the output is the same either way).
    for (int64_t i = len - n - 1; i >= 0; --i) {
      if (!std::equal(tail, tail + n, sequence.data() + i)) continue;
      const int64_t start = i + n;  // < len: the window ends before the tail does
      // How far back the match goes on agreeing (at least n): a copy backed by a long
      // context is likely to go on, one backed by a token or two less so; the draft is
      // at most one token longer than that context.
      int64_t agree = n;
      while (agree < i + n && agree <= max_tokens &&
             sequence[i + n - 1 - agree] == sequence[len - 1 - agree])
        ++agree;
      const int64_t end = std::min({start + max_tokens, start + agree + 1, len});
      return {sequence.begin() + start, sequence.begin() + end};
    }
  }
  return {};
}

GenerationResult PromptLookup::run(const GenerationInput& in,
                                   const std::vector<int64_t>& real_lengths,
                                   const Deadline& deadline) {
  const int64_t V = c_.vocab_size, K = o_.prompt_lookup_num_tokens;
  BatchState s;
  gen_.prefill(s, in, real_lengths);
  gen_.expand(s, in);
  const int64_t rows = static_cast<int64_t>(s.rows.size());
  // Drafts are looked up in each row's history (its prompt's real tokens, then its
  // output), which start_row() and record() keep when prompt lookup is on.
  // The first token of every row, from the prompt pass's logits.
  float* logits = ctx_.activations().logits.data();
  std::vector<int64_t> active;
  for (int64_t r = 0; r < rows; ++r) {
    RowState& row = s.rows[r];
    const TokenChoice ch = gen_.choose(row, r, logits + r * V);
    if (gen_.record(row, ch) && o_.max_new_tokens > 1) active.push_back(r);
  }
  s.steps = 1;
  int64_t drafted = 0, accepted = 0;
  std::vector<int64_t> tokens, first;   // the pass; where each active row's tokens start
  std::vector<TokenSlot> slots;
  std::vector<std::vector<int64_t>> drafts(rows);
  // Each row's draft length adapts: up to K after a draft accepted whole (a copy that
  // held so far tends to go on), -1 (down to 1) after a miss. A position whose draft is
  // rejected costs compute for nothing; one that is accepted saves a pass. A row starts
  // at 1, a probe: its first copy is as likely a miss as a hit. (Replayed on the greedy
  // output of bench_prompt_lookup's 12 prompts and of 32 other docstrings, up to K cut
  // the modelled time per token by 0.7-1.3% against transformers' +2.)
  std::vector<int64_t> budget(rows, 1);
  std::vector<int64_t> still;
  while (!active.empty() && !deadline.passed()) {
    // Each row's newest token, then its draft, at the positions after its cache.
    tokens.clear();
    slots.clear();
    first.clear();
    for (int64_t r : active) {
      RowState& row = s.rows[r];
      const int64_t room = o_.max_new_tokens - static_cast<int64_t>(row.ids.size());
      drafts[r] = lookup_draft(row.history, o_.max_matching_ngram_size,
                               std::min(budget[r], room - 1));
      first.push_back(static_cast<int64_t>(tokens.size()));
      tokens.push_back(row.ids.back());
      slots.push_back({r, row.length});
      for (size_t j = 0; j < drafts[r].size(); ++j) {
        tokens.push_back(drafts[r][j]);
        slots.push_back({r, row.length + 1 + static_cast<int64_t>(j)});
      }
      drafted += static_cast<int64_t>(drafts[r].size());
    }
    const int64_t pass = static_cast<int64_t>(tokens.size());
    ctx_.activations().reserve(pass, c_);
    ctx_.activations().reserve_logits(pass, c_);
    model_.forward(ctx_, tokens.data(), slots.data(), pass);
    model_.logits(ctx_, pass);  // every position: each may be the row's next
    logits = ctx_.activations().logits.data();
    // Per row, in order: choose at each position with the state the tokens before it
    // left; go on while the choice is the draft's next token.
    const int64_t n_active = static_cast<int64_t>(active.size());
    std::vector<int64_t> taken(n_active, 0);
    ctx_.pool().parallel_for(n_active, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t r = active[i];
        RowState& row = s.rows[r];
        const std::vector<int64_t>& draft = drafts[r];
        int64_t m = 0;  // drafts accepted
        for (int64_t j = 0; j <= static_cast<int64_t>(draft.size()); ++j) {
          const TokenChoice ch = gen_.choose(row, r, logits + (first[i] + j) * V);
          const bool goes_on = gen_.record(row, ch) &&
                               static_cast<int64_t>(row.ids.size()) < o_.max_new_tokens;
          if (!goes_on) row.finished = true;
          if (!goes_on || j == static_cast<int64_t>(draft.size()) || ch.token != draft[j]) break;
          ++m;  // the draft's token is the greedy one: its cache entry is already right
        }
        row.length += 1 + m;  // the newest token and the accepted drafts are in the cache
        taken[i] = m;
      }
    });
    still.clear();
    for (int64_t i = 0; i < n_active; ++i) {
      const int64_t r = active[i], n = static_cast<int64_t>(drafts[r].size());
      if (n > 0) budget[r] = taken[i] == n ? K : std::max<int64_t>(1, budget[r] - 1);
      accepted += taken[i];
      if (!s.rows[active[i]].finished) still.push_back(active[i]);
    }
    active.swap(still);
  }
  // One column per token (steps counts passes here, not tokens).
  int64_t longest = 0;
  for (const RowState& row : s.rows) longest = std::max<int64_t>(longest, row.ids.size());
  s.steps = longest;
  GenerationResult result = gen_.collect(s);
  result.drafted_tokens = drafted;
  result.accepted_tokens = accepted;
  return result;
}

}  // namespace fastergpt
