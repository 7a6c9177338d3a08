// lookup_draft against a brute-force reading of its contract: for random sequences over
// small alphabets, the draft is what followed the LATEST earlier occurrence (with a
// continuation) of the longest tail n-gram (n <= max_ngram) that recurs, cut to
// max_tokens and to one more than the length over which the occurrence and the tail agree
// going back; empty when no tail n-gram recurs.
#include <random>
#include <vector>

#include "../../csrc/core/prompt_lookup.h"
#include "check.h"

using namespace fastergpt;

namespace {

std::vector<int64_t> reference(const std::vector<int64_t>& s, int64_t max_ngram, int64_t max_tokens) {
  const int64_t len = static_cast<int64_t>(s.size());
  if (max_tokens <= 0) return {};
  for (int64_t n = max_ngram; n >= 1; --n) {
    if (n >= len) continue;
    int64_t best = -1;
    for (int64_t i = 0; i + n < len; ++i) {  // windows s[i, i+n) with something after them
      bool same = true;
      for (int64_t k = 0; k < n; ++k) same = same && s[i + k] == s[len - n + k];
      if (same) best = i;  // the latest wins
    }
    if (best >= 0) {
      int64_t agree = 0;  // s[best + n - 1 - k] == s[len - 1 - k] for k < agree
      while (best + n - 1 - agree >= 0 && s[best + n - 1 - agree] == s[len - 1 - agree]) ++agree;
      std::vector<int64_t> d;
      for (int64_t j = best + n; j < len && static_cast<int64_t>(d.size()) < max_tokens &&
                                 static_cast<int64_t>(d.size()) < agree + 1;
           ++j)
        d.push_back(s[j]);
      return d;
    }
  }
  return {};
}

void test_matches_reference() {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 5000; ++trial) {
    const int alphabet = 2 + static_cast<int>(rng() % 5);
    std::vector<int64_t> s(rng() % 40);
    for (int64_t& t : s) t = static_cast<int64_t>(rng() % alphabet);
    const int64_t max_ngram = 1 + static_cast<int64_t>(rng() % 4);
    const int64_t max_tokens = static_cast<int64_t>(rng() % 6);
    CHECK(lookup_draft(s, max_ngram, max_tokens) == reference(s, max_ngram, max_tokens));
  }
}

void test_examples() {
  // "a b c a b" -> the tail "a b" occurred at 0, followed by "c a b".
  CHECK((lookup_draft({1, 2, 3, 1, 2}, 2, 10) == std::vector<int64_t>{3, 1, 2}));
  CHECK((lookup_draft({1, 2, 3, 1, 2}, 2, 1) == std::vector<int64_t>{3}));
  CHECK(lookup_draft({1, 2, 3, 4}, 2, 5).empty());  // nothing recurs
  CHECK(lookup_draft({7}, 3, 5).empty());
  CHECK(lookup_draft({}, 3, 5).empty());
  // A repeating tail: the latest occurrence with a continuation, "5" at 2 -> "5 5".
  CHECK((lookup_draft({4, 5, 5, 5}, 1, 4) == std::vector<int64_t>{5}));
  // A match backed by one token of context drafts at most two: "9 1 2 3 4 ... 8 1" matches
  // the "1" at 1, preceded by 9 against 8: "2 3", not "2 3 4".
  CHECK((lookup_draft({9, 1, 2, 3, 4, 8, 1}, 1, 3) == std::vector<int64_t>{2, 3}));
  // Backed by "7 1": three.
  CHECK((lookup_draft({7, 1, 2, 3, 4, 7, 1}, 1, 3) == std::vector<int64_t>{2, 3, 4}));
}

}  // namespace

int main() {
  test_matches_reference();
  test_examples();
  TEST_MAIN_END();
}
