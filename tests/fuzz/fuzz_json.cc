// libFuzzer target: the JSON reader gpt_infer uses for config.json, vocab.json and
// tokenizer.json. Any input must parse or throw std::runtime_error; nothing else.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "json_lite.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    fastergpt_cpp::parse_json(std::string(reinterpret_cast<const char*>(data), size));
  } catch (const std::runtime_error&) {
  }
  return 0;
}
