// GPT-2 byte-level BPE in C++, from vocab.json + merges.txt: the same ids as the
// `tokenizers` library's ByteLevel BPE (what fastergpt's Python tokenizer uses).
//
// encode: split out special tokens (<|...|> entries of the vocabulary) by name,
// pre-tokenize the rest with GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (implemented as a scanner, no regex engine), map each piece's bytes to
// GPT-2's printable byte alphabet, then merge pairs by rank.
// decode: ids -> tokens -> bytes -> UTF-8, optionally skipping special tokens.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace fastergpt_cpp {

struct UnsupportedTokenizer : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Gpt2Tokenizer {
 public:
  // Throws std::runtime_error naming the file on a missing or malformed input.
  Gpt2Tokenizer(const std::string& vocab_json, const std::string& merges_txt);
  // From a `tokenizers` tokenizer.json holding a byte-level BPE with GPT-2's
  // pre-tokenizer (GPT-2, GPT-J, CodeGen, GPT-NeoX, OPT); its special added
  // tokens are matched by name. Any other model or pre-tokenizer (LLaMA-3's and
  // Qwen2's Split patterns, SentencePiece) throws UnsupportedTokenizer.
  static Gpt2Tokenizer from_tokenizer_json(const std::string& path);

  std::vector<int64_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = true) const;

  // The id of a token by name (e.g. "<|endoftext|>"), or -1.
  int64_t token_to_id(const std::string& token) const;
  size_t vocab_size() const { return static_cast<size_t>(max_id_ + 1); }

 private:
  Gpt2Tokenizer() = default;
  // vocab: token -> id; merges: pairs in rank order; specials: tokens matched by name.
  void init(const std::vector<std::pair<std::string, double>>& vocab,
            const std::vector<std::pair<std::string, std::string>>& merges,
            const std::vector<std::string>& specials, const std::string& source);
  void encode_piece(const std::string& piece, std::vector<int64_t>& out) const;
  std::vector<std::string> bpe(const std::string& word) const;

  std::unordered_map<std::string, int64_t> token_to_id_;
  // By id, in maps: a file may name ids up to 2^24 with only a few entries, and
  // memory must follow the file's size, not its largest id.
  std::unordered_map<int64_t, std::string> id_to_token_;
  std::unordered_set<int64_t> is_special_;
  int64_t max_id_ = -1;
  std::vector<std::string> specials_;  // longest first, for matching in text
  std::map<std::pair<std::string, std::string>, int> merge_rank_;
  std::string byte_to_unicode_[256];
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte_;
  mutable std::unordered_map<std::string, std::vector<std::string>> cache_;
};

// Splits text into GPT-2 pre-tokenizer pieces (exposed for tests).
std::vector<std::string> gpt2_pretokenize(const std::string& text);

}  // namespace fastergpt_cpp
