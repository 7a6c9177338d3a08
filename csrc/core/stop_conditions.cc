#include "stop_conditions.h"

#include <algorithm>

#include "error.h"

namespace fastergpt {

size_t StopConditions::longest() const {
  size_t n = 0;
  for (const std::string& s : strings) n = std::max(n, s.size());
  return n;
}

void StopConditions::validate(int64_t vocab_size) const {
  FGPT_CHECK(static_cast<int64_t>(end_token_ids.size()) <= kMaxEndTokens, "end_token_ids: ",
             end_token_ids.size(), " ids, at most ", kMaxEndTokens, " are allowed");
  for (int64_t t : end_token_ids)
    FGPT_CHECK(t >= 0 && t < vocab_size, "end_token_ids: ", t,
               " is outside the vocabulary [0, ", vocab_size, ")");
  FGPT_CHECK(static_cast<int64_t>(strings.size()) <= kMaxStopStrings, "stop: ", strings.size(),
             " strings, at most ", kMaxStopStrings, " are allowed");
  for (size_t i = 0; i < strings.size(); ++i) {
    FGPT_CHECK(!strings[i].empty(), "stop: string ", i, " is empty");
    FGPT_CHECK(static_cast<int64_t>(strings[i].size()) <= kMaxStopStringBytes, "stop: string ",
               i, " is ", strings[i].size(), " bytes long, at most ", kMaxStopStringBytes,
               " are allowed");
  }
  if (strings.empty()) return;
  const VocabularyBytes& v = vocabulary;
  FGPT_CHECK(v.count > 0 && v.bytes != nullptr && v.offsets != nullptr,
             "stop: stop strings need the tokenizer's vocabulary (load the model from a "
             "directory with its tokenizer files, or give the tokenizer)");
  FGPT_CHECK(v.count <= vocab_size, "stop: the vocabulary has ", v.count,
             " tokens but the model only ", vocab_size);
  FGPT_CHECK(v.offsets[0] == 0, "stop: the vocabulary's offsets must start at 0");
  for (int64_t t = 0; t < v.count; ++t)
    FGPT_CHECK(v.offsets[t + 1] >= v.offsets[t], "stop: the vocabulary's offsets decrease at ",
               "token ", t);
}

void StopStringMatcher::reset(const StopConditions& stop) {
  tail_.clear();
  if (!stop.strings.empty()) tail_.reserve(stop.longest() + 64);
}

bool StopStringMatcher::push(const StopConditions& stop, int64_t token) {
  if (stop.strings.empty()) return false;
  const std::string_view bytes = stop.vocabulary.token(token);
  const size_t before = tail_.size();
  tail_.append(bytes.data(), bytes.size());
  bool hit = false;
  // Only an occurrence that ends inside the new bytes is new: the earlier ones were
  // seen by earlier pushes.
  for (const std::string& s : stop.strings) {
    const size_t from = before + 1 >= s.size() ? before + 1 - s.size() : 0;
    if (tail_.find(s, from) != std::string::npos) {
      hit = true;
      break;
    }
  }
  const size_t keep = stop.longest() - 1;  // a stop string's part that can still grow
  if (tail_.size() > keep) tail_.erase(0, tail_.size() - keep);
  return hit;
}

}  // namespace fastergpt
