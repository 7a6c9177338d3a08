// StopStringMatcher against a brute-force reference: for random token sequences over a
// small vocabulary of byte strings and random stop strings, the first token at which
// the matcher reports a stop is the first token whose text (all bytes so far)
// contains a stop string. Also the end-token set and the argument checks.
#include <random>
#include <string>
#include <vector>

#include "../../csrc/core/error.h"
#include "../../csrc/core/stop_conditions.h"
#include "check.h"

using namespace fastergpt;

namespace {

struct Vocabulary {
  std::vector<uint8_t> bytes;
  std::vector<int64_t> offsets{0};
  explicit Vocabulary(const std::vector<std::string>& tokens) {
    for (const std::string& t : tokens) {
      bytes.insert(bytes.end(), t.begin(), t.end());
      offsets.push_back(static_cast<int64_t>(bytes.size()));
    }
    if (bytes.empty()) bytes.push_back(0);
  }
  VocabularyBytes view() const {
    return {bytes.data(), offsets.data(), static_cast<int64_t>(offsets.size()) - 1};
  }
};

// The first token after which the text contains any stop string; -1 if none.
int64_t reference_stop(const std::vector<std::string>& tokens, const std::vector<int64_t>& seq,
                       const std::vector<std::string>& stops) {
  std::string text;
  for (size_t i = 0; i < seq.size(); ++i) {
    text += tokens[seq[i]];
    for (const std::string& s : stops)
      if (text.find(s) != std::string::npos) return static_cast<int64_t>(i);
  }
  return -1;
}

void test_matches_brute_force() {
  // Tokens of 0 to 3 letters of a 3-letter alphabet: stops span tokens often, sit
  // inside one token, and empty tokens (special tokens) spell nothing.
  std::mt19937 rng(5);
  const std::string alphabet = "ab ";
  std::vector<std::string> tokens;
  for (int i = 0; i < 40; ++i) {
    std::string t;
    for (int n = static_cast<int>(rng() % 4); n > 0; --n) t += alphabet[rng() % 3];
    tokens.push_back(t);
  }
  const Vocabulary vocab(tokens);
  for (int trial = 0; trial < 3000; ++trial) {
    StopConditions stop;
    stop.vocabulary = vocab.view();
    for (int n = 1 + static_cast<int>(rng() % 3); n > 0; --n) {
      std::string s;
      for (int k = 1 + static_cast<int>(rng() % 6); k > 0; --k) s += alphabet[rng() % 3];
      stop.strings.push_back(s);
    }
    stop.validate(static_cast<int64_t>(tokens.size()));
    std::vector<int64_t> seq(1 + rng() % 30);
    for (int64_t& t : seq) t = static_cast<int64_t>(rng() % tokens.size());
    StopStringMatcher m;
    m.reset(stop);
    int64_t got = -1;
    for (size_t i = 0; i < seq.size() && got < 0; ++i)
      if (m.push(stop, seq[i])) got = static_cast<int64_t>(i);
    CHECK(got == reference_stop(tokens, seq, stop.strings));
  }
}

void test_end_tokens_and_checks() {
  StopConditions stop;
  stop.end_token_ids = {4, 9};
  CHECK(stop.is_end(4, -1) && stop.is_end(9, 2) && stop.is_end(2, 2));
  CHECK(!stop.is_end(3, -1) && !stop.is_end(-1, -1));
  stop.validate(10);
  stop.end_token_ids = {10};
  CHECK_THROWS(stop.validate(10));
  stop.end_token_ids = {};
  stop.strings = {"x"};
  CHECK_THROWS(stop.validate(10));  // no vocabulary
  stop.strings = {""};
  CHECK_THROWS(stop.validate(10));
  const Vocabulary vocab({"a", "b"});
  stop.vocabulary = vocab.view();
  stop.strings = {"ab"};
  stop.validate(10);
  CHECK_THROWS(stop.validate(1));  // a vocabulary larger than the model's
  // Ids beyond the vocabulary spell nothing.
  StopStringMatcher m;
  m.reset(stop);
  CHECK(!m.push(stop, 0) && !m.push(stop, 7) && m.push(stop, 1));
}

}  // namespace

int main() {
  test_matches_brute_force();
  test_end_tokens_and_checks();
  TEST_MAIN_END();
}
