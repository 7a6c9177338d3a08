// bpe_tokenize VOCAB_JSON MERGES_TXT < lines: each input line is a JSON string;
// for each, prints one line `{"ids": [...], "text": "..."}` with the C++ GPT-2
// tokenizer's ids and their decoding (special tokens kept), so tests can compare
// with the Python tokenizer on any text. Exit 2 on bad files or input.
#include <cstdio>
#include <iostream>
#include <string>

#include "gpt2_tokenizer.h"
#include "json_lite.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: bpe_tokenize VOCAB_JSON MERGES_TXT < json-string-lines\n");
    return 2;
  }
  try {
    const fastergpt_cpp::Gpt2Tokenizer tok(argv[1], argv[2]);
    std::string line;
    while (std::getline(std::cin, line)) {
      const fastergpt_cpp::JsonValue v = fastergpt_cpp::parse_json(line);
      if (v.kind != fastergpt_cpp::JsonValue::Kind::kString)
        throw std::runtime_error("each input line must be a JSON string");
      const auto ids = tok.encode(v.string);
      std::string out = "{\"ids\": [";
      for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
      out += "], \"text\": " + fastergpt_cpp::quote_json(tok.decode(ids, false)) + "}";
      std::printf("%s\n", out.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
