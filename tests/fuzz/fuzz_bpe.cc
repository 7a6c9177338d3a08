// libFuzzer target: gpt_infer's byte-level BPE on arbitrary bytes with a small
// fixed vocabulary: encode must not crash on anything (invalid UTF-8 included),
// and for valid UTF-8 text decoding what it encoded gives the input back byte
// for byte.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include "gpt2_tokenizer.h"

namespace {
const fastergpt_cpp::Gpt2Tokenizer& tokenizer() {
  static const fastergpt_cpp::Gpt2Tokenizer* tok = [] {
    // Every byte of GPT-2's alphabet, a few merges and a special token.
    std::string vocab = "{";
    int next = 256, id = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const unsigned cp = printable ? b : next++;
      char buf[16];
      std::snprintf(buf, sizeof buf, "\"\\u%04x\"", cp);
      vocab += std::string(id ? "," : "") + buf + ":" + std::to_string(id++);
    }
    vocab += ",\"\\u0120t\":" + std::to_string(id++) + ",\"he\":" + std::to_string(id++) +
             ",\"<|endoftext|>\":" + std::to_string(id++) + "}";
    const char* dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
    const std::string v = std::string(dir) + "/fuzz_bpe_vocab.json";
    const std::string m = std::string(dir) + "/fuzz_bpe_merges.txt";
    std::ofstream(v) << vocab;
    std::ofstream(m) << "#version: 0.2\n\xC4\xA0 t\nh e\n";
    return new fastergpt_cpp::Gpt2Tokenizer(v, m);
  }();
  return *tok;
}
// Well-formed UTF-8 (shortest forms, no surrogates, <= U+10FFFF).
bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0 || i + n >= s.size() + (n == 0)) return false;
    uint32_t cp = n == 0 ? c : c & (0x3F >> n);
    for (int k = 1; k <= n; ++k) {
      const unsigned char d = s[i + k];
      if ((d & 0xC0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto ids = tokenizer().encode(text);
  if (valid_utf8(text) && tokenizer().decode(ids, /*skip_special_tokens=*/false) != text)
    std::abort();
  return 0;
}
