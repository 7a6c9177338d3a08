// The stop conditions that are not numbers of the settings table: end tokens besides
// eos_token_id (models with several, such as a chat model whose turns end on their
// own token), and stop strings.
//
// A stop string is matched on the bytes the generated tokens spell (the tokenizer's
// vocabulary as bytes, `VocabularyBytes`), across token boundaries, after every
// token: a row ends at the token that completes the first occurrence of any stop
// string. Its ids keep that token, as transformers' `stop_strings` does; front ends
// that decode cut the text before the stop string, which is not returned.
// For UTF-8 stop strings, matching bytes is matching the decoded text: UTF-8 is
// self-synchronising, so a valid character sequence cannot match mid-character.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fastergpt {

// A tokenizer's vocabulary as bytes, a view (the caller owns the memory): token t
// spells bytes[offsets[t] .. offsets[t + 1]). Special tokens spell nothing (they are
// not part of the decoded text); ids from `count` on spell nothing either.
struct VocabularyBytes {
  const uint8_t* bytes = nullptr;
  const int64_t* offsets = nullptr;  // [count + 1]: 0, then non-decreasing
  int64_t count = 0;

  std::string_view token(int64_t id) const {
    if (id < 0 || id >= count) return {};
    return {reinterpret_cast<const char*>(bytes) + offsets[id],
            static_cast<size_t>(offsets[id + 1] - offsets[id])};
  }
};

constexpr int64_t kMaxStopStrings = 256;
constexpr int64_t kMaxStopStringBytes = 4096;
constexpr int64_t kMaxEndTokens = 1024;

struct StopConditions {
  std::vector<int64_t> end_token_ids;  // besides eos_token_id
  std::vector<std::string> strings;    // UTF-8 bytes
  VocabularyBytes vocabulary;          // needed when `strings` is not empty

  // Does `token` end a row (eos_token_id, -1 for none, or one of end_token_ids)?
  bool is_end(int64_t token, int64_t eos_token_id) const {
    if (token == eos_token_id && eos_token_id >= 0) return true;
    for (int64_t t : end_token_ids)
      if (t == token) return true;
    return false;
  }
  // The longest stop string's length in bytes (0 when none).
  size_t longest() const;
  // Throws Error naming the problem: ids outside [0, vocab_size), empty or over-long
  // strings, strings without a vocabulary, a malformed vocabulary.
  void validate(int64_t vocab_size) const;
};

// One row's view of the text it generated: the last bytes its tokens spelled, enough
// to find a stop string that spans tokens. push() allocates nothing once the buffer
// has grown to the longest stop string plus the longest token seen.
class StopStringMatcher {
 public:
  void reset(const StopConditions& stop);
  // Adds `token`'s bytes; true when a stop string now ends inside them.
  bool push(const StopConditions& stop, int64_t token);

 private:
  std::string tail_;
};

}  // namespace fastergpt
