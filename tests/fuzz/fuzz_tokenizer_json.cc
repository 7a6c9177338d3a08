// libFuzzer target: building a tokenizer from an arbitrary tokenizer.json. It must
// load or throw std::runtime_error (UnsupportedTokenizer included); nothing else.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "gpt2_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  const std::string path = std::string(dir) + "/fuzz_tokenizer.json";
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = fastergpt_cpp::Gpt2Tokenizer::from_tokenizer_json(path);
    tok.encode("hello world <|endoftext|> caf\xc3\xa9");
  } catch (const std::runtime_error&) {
  }
  return 0;
}
