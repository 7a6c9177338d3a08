#include "gpt2_tokenizer.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <stdexcept>

#include "json_lite.h"
#include "unicode_tables.h"

namespace fastergpt_cpp {
namespace {

bool in_ranges(const CodeRange* r, size_t n, uint32_t cp) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (cp < r[mid].first) hi = mid;
    else if (cp > r[mid].last) lo = mid + 1;
    else return true;
  }
  return false;
}

bool is_letter(uint32_t cp) {
  return in_ranges(kLetterRanges, sizeof(kLetterRanges) / sizeof(CodeRange), cp);
}
bool is_number(uint32_t cp) {
  return in_ranges(kNumberRanges, sizeof(kNumberRanges) / sizeof(CodeRange), cp);
}
// Unicode White_Space, as the regex crate's \s.
bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Decodes UTF-8 into code points with the byte offset of each; invalid bytes
// become U+FFFD one byte at a time (the bytes themselves are still encoded).
struct CodePoints {
  std::vector<uint32_t> cp;
  std::vector<size_t> offset;  // size cp.size() + 1
};

CodePoints decode_utf8(const std::string& s) {
  CodePoints out;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    uint32_t cp = 0xFFFD;
    size_t len = 1;
    if (c < 0x80) {
      cp = c;
    } else if ((c >> 5) == 0x6 && i + 1 < s.size()) {
      cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
      len = 2;
    } else if ((c >> 4) == 0xE && i + 2 < s.size()) {
      cp = ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
      len = 3;
    } else if ((c >> 3) == 0x1E && i + 3 < s.size()) {
      cp = ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) |
           (s[i + 3] & 0x3F);
      len = 4;
    }
    out.cp.push_back(cp);
    out.offset.push_back(i);
    i += len;
  }
  out.offset.push_back(s.size());
  return out;
}

// Replaces each ill-formed UTF-8 sequence (a maximal subpart, as Unicode
// recommends and as Rust's from_utf8_lossy and Python's errors="replace" do)
// with U+FFFD, so decoded text is valid UTF-8 like the Python tokenizer's.
std::string sanitize_utf8(const std::string& s) {
  std::string out;
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    const unsigned char b = byte(i);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    int need = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) need = 2, lo = 0xA0;
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
    else if (b == 0xED) need = 2, hi = 0x9F;
    else if (b == 0xF0) need = 3, lo = 0x90;
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) need = 3, hi = 0x8F;
    size_t j = i + 1;
    bool ok = need > 0;
    for (int k = 0; ok && k < need; ++k, ++j) {
      const unsigned char lo_k = k == 0 ? lo : 0x80, hi_k = k == 0 ? hi : 0xBF;
      if (j >= s.size() || byte(j) < lo_k || byte(j) > hi_k) ok = false;
      if (!ok) break;
    }
    if (ok) {
      out.append(s, i, j - i);
    } else {
      append_utf8(out, 0xFFFD);
      if (need == 0) j = i + 1;
    }
    i = j;
  }
  return out;
}

}  // namespace

std::vector<std::string> gpt2_pretokenize(const std::string& text) {
  const CodePoints u = decode_utf8(text);
  const size_t n = u.cp.size();
  std::vector<std::string> pieces;
  auto emit = [&](size_t a, size_t b) {
    pieces.push_back(text.substr(u.offset[a], u.offset[b] - u.offset[a]));
  };
  auto other = [&](uint32_t cp) { return !is_space(cp) && !is_letter(cp) && !is_number(cp); };
  size_t i = 0;
  while (i < n) {
    const uint32_t c = u.cp[i];
    // 's|'t|'re|'ve|'m|'ll|'d
    if (c == '\'' && i + 1 < n) {
      const uint32_t a = u.cp[i + 1], b = i + 2 < n ? u.cp[i + 2] : 0;
      size_t len = 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') len = 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) len = 3;
      if (len) {
        emit(i, i + len);
        i += len;
        continue;
      }
    }
    // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' : an optional single space, then a run.
    const size_t start = i;
    const size_t body = (c == ' ' && i + 1 < n) ? i + 1 : i;
    bool (*classes[])(uint32_t) = {is_letter, is_number};
    bool matched = false;
    for (auto cls : classes) {
      if (cls(u.cp[body])) {
        size_t j = body;
        while (j < n && cls(u.cp[j])) ++j;
        emit(start, j);
        i = j;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (other(u.cp[body])) {
      size_t j = body;
      while (j < n && other(u.cp[j])) ++j;
      emit(start, j);
      i = j;
      continue;
    }
    // '\s+(?!\S)' then '\s+': a whitespace run leaves its last character to the
    // next piece when a non-space follows, so " word" keeps its space.
    size_t j = i;
    while (j < n && is_space(u.cp[j])) ++j;
    if (j < n && j - i > 1) j -= 1;
    emit(i, j);
    i = j;
  }
  return pieces;
}

Gpt2Tokenizer::Gpt2Tokenizer(const std::string& vocab_json, const std::string& merges_txt) {
  const JsonValue vocab = read_json_file(vocab_json);
  if (!vocab.is_object()) throw std::runtime_error(vocab_json + ": expected a JSON object");
  std::vector<std::pair<std::string, double>> entries;
  std::vector<std::string> specials;
  for (const auto& kv : vocab.object) {
    if (kv.second.kind != JsonValue::Kind::kNumber)
      throw std::runtime_error(vocab_json + ": id of '" + kv.first +
                               "' is not an integer in [0, 2^24)");
    entries.emplace_back(kv.first, kv.second.number);
    const std::string& t = kv.first;  // GPT-2 names its special tokens <|...|>
    if (t.size() >= 4 && t.compare(0, 2, "<|") == 0 && t.compare(t.size() - 2, 2, "|>") == 0)
      specials.push_back(t);
  }
  std::ifstream f(merges_txt);
  if (!f) throw std::runtime_error("cannot open " + merges_txt);
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos)
      throw std::runtime_error(merges_txt + ": malformed merge line '" + line + "'");
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  init(entries, merges, specials, vocab_json);
}

// Whether a tokenizer.json pre-tokenizer is GPT-2's: ByteLevel with its regex,
// alone or as the only step of a Sequence.
static bool is_gpt2_pretokenizer(const JsonValue& p, std::string* name) {
  if (!p.is_object() || !p.has("type")) {
    *name = "none";
    return false;
  }
  *name = p.at("type").string;
  if (*name == "Sequence" && p.has("pretokenizers") && p.at("pretokenizers").array.size() == 1)
    return is_gpt2_pretokenizer(p.at("pretokenizers").array[0], name);
  if (*name != "ByteLevel") return false;
  return !p.has("use_regex") || p.at("use_regex").kind != JsonValue::Kind::kBool ||
         p.at("use_regex").boolean;
}

Gpt2Tokenizer Gpt2Tokenizer::from_tokenizer_json(const std::string& path) {
  const JsonValue t = read_json_file(path);
  if (!t.is_object() || !t.has("model") || !t.at("model").is_object())
    throw std::runtime_error(path + ": expected a tokenizers JSON object with a model");
  const JsonValue& model = t.at("model");
  const std::string type = model.has("type") ? model.at("type").string : "?";
  if (type != "BPE")
    throw UnsupportedTokenizer(path + ": a " + type + " model (gpt_infer reads byte-level BPE)");
  std::string pre;
  if (!t.has("pre_tokenizer") || !is_gpt2_pretokenizer(t.at("pre_tokenizer"), &pre))
    throw UnsupportedTokenizer(path + ": pre-tokenizer '" + pre + "' is not GPT-2's ByteLevel");
  std::vector<std::pair<std::string, double>> entries;
  if (!model.has("vocab") || !model.at("vocab").is_object())
    throw std::runtime_error(path + ": model.vocab is missing");
  for (const auto& kv : model.at("vocab").object) {
    if (kv.second.kind != JsonValue::Kind::kNumber)
      throw std::runtime_error(path + ": id of '" + kv.first + "' is not an integer in [0, 2^24)");
    entries.emplace_back(kv.first, kv.second.number);
  }
  std::vector<std::pair<std::string, std::string>> merges;
  if (model.has("merges"))
    for (const JsonValue& m : model.at("merges").array) {
      if (m.kind == JsonValue::Kind::kString) {  // "a b"
        const size_t sp = m.string.find(' ');
        if (sp == std::string::npos)
          throw std::runtime_error(path + ": malformed merge '" + m.string + "'");
        merges.emplace_back(m.string.substr(0, sp), m.string.substr(sp + 1));
      } else if (m.kind == JsonValue::Kind::kArray && m.array.size() == 2) {  // ["a", "b"]
        merges.emplace_back(m.array[0].string, m.array[1].string);
      } else {
        throw std::runtime_error(path + ": malformed merge entry");
      }
    }
  std::vector<std::string> specials;
  if (t.has("added_tokens"))
    for (const JsonValue& a : t.at("added_tokens").array) {
      if (!a.is_object() || !a.has("content") || !a.has("id")) continue;
      if (a.at("content").kind != JsonValue::Kind::kString || a.at("content").string.empty())
        throw std::runtime_error(path + ": an added token's content must be a non-empty string");
      entries.emplace_back(a.at("content").string, a.at("id").number);
      if (a.has("special") && a.at("special").boolean) specials.push_back(a.at("content").string);
    }
  Gpt2Tokenizer tok;
  tok.init(entries, merges, specials, path);
  return tok;
}

void Gpt2Tokenizer::init(const std::vector<std::pair<std::string, double>>& vocab,
                         const std::vector<std::pair<std::string, std::string>>& merges,
                         const std::vector<std::string>& specials, const std::string& source) {
  // GPT-2's byte alphabet: printable Latin-1 bytes map to themselves, the rest
  // to code points from 256 up, so every byte is a visible character.
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const uint32_t cp = printable ? b : next++;
    append_utf8(byte_to_unicode_[b], cp);
    unicode_to_byte_[cp] = static_cast<uint8_t>(b);
  }
  int64_t max_id = -1;
  for (const auto& kv : vocab) {
    const double id = kv.second;
    if (!(id >= 0 && id < (1 << 24)) || id != static_cast<double>(static_cast<int64_t>(id)))
      throw std::runtime_error(source + ": id of '" + kv.first + "' is not an integer in [0, 2^24)");
    max_id = std::max<int64_t>(max_id, static_cast<int64_t>(id));
  }
  max_id_ = max_id;
  id_to_token_.reserve(vocab.size());
  for (const auto& kv : vocab) {
    const int64_t id = static_cast<int64_t>(kv.second);
    token_to_id_[kv.first] = id;
    id_to_token_[id] = kv.first;
  }
  for (const std::string& t : specials) {
    // An empty special token would match at every position of every text.
    if (t.empty()) throw std::runtime_error(source + ": a special token is empty");
    is_special_.insert(token_to_id_.at(t));
    specials_.push_back(t);
  }
  std::sort(specials_.begin(), specials_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  int rank = 0;
  for (const auto& m : merges) merge_rank_[m] = rank++;
}

int64_t Gpt2Tokenizer::token_to_id(const std::string& token) const {
  auto it = token_to_id_.find(token);
  return it == token_to_id_.end() ? -1 : it->second;
}

std::vector<std::string> Gpt2Tokenizer::bpe(const std::string& word) const {
  auto hit = cache_.find(word);
  if (hit != cache_.end()) return hit->second;
  // Start from single characters of the mapped word (each 1-2 UTF-8 bytes).
  std::vector<std::string> parts;
  const CodePoints u = decode_utf8(word);
  for (size_t k = 0; k < u.cp.size(); ++k)
    parts.push_back(word.substr(u.offset[k], u.offset[k + 1] - u.offset[k]));
  while (parts.size() > 1) {
    int best = INT_MAX;
    size_t at = 0;
    for (size_t k = 0; k + 1 < parts.size(); ++k) {
      auto it = merge_rank_.find({parts[k], parts[k + 1]});
      if (it != merge_rank_.end() && it->second < best) {
        best = it->second;
        at = k;
      }
    }
    if (best == INT_MAX) break;
    // Merge every occurrence of the best pair, left to right.
    const std::string a = parts[at], b = parts[at + 1];
    std::vector<std::string> merged;
    for (size_t k = 0; k < parts.size(); ++k) {
      if (k + 1 < parts.size() && parts[k] == a && parts[k + 1] == b) {
        merged.push_back(a + b);
        ++k;
      } else {
        merged.push_back(parts[k]);
      }
    }
    parts.swap(merged);
  }
  cache_[word] = parts;
  return parts;
}

void Gpt2Tokenizer::encode_piece(const std::string& piece, std::vector<int64_t>& out) const {
  std::string mapped;
  for (unsigned char b : piece) mapped += byte_to_unicode_[b];
  for (const std::string& tok : bpe(mapped)) {
    auto it = token_to_id_.find(tok);
    if (it == token_to_id_.end())
      throw std::runtime_error("token '" + tok + "' is not in the vocabulary (vocab.json and "
                               "merges.txt do not belong together?)");
    out.push_back(it->second);
  }
}

std::vector<int64_t> Gpt2Tokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    // The next special token, if any; plain text before it is pre-tokenized.
    size_t found = std::string::npos;
    const std::string* which = nullptr;
    for (const std::string& s : specials_) {
      const size_t at = text.find(s, pos);
      if (at != std::string::npos && (found == std::string::npos || at < found)) {
        found = at;
        which = &s;
      }
    }
    const size_t end = found == std::string::npos ? text.size() : found;
    for (const std::string& piece : gpt2_pretokenize(text.substr(pos, end - pos)))
      encode_piece(piece, ids);
    if (which == nullptr) break;
    ids.push_back(token_to_id_.at(*which));
    pos = found + which->size();
  }
  return ids;
}

std::string Gpt2Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  std::string bytes;
  for (int64_t id : ids) {
    if (id < 0 || id > max_id_)
      throw std::runtime_error("decode: id " + std::to_string(id) + " is outside the vocabulary");
    const auto entry = id_to_token_.find(id);
    if (entry == id_to_token_.end()) continue;  // an unused id inside the range: no text
    if (is_special_.count(id)) {
      if (!skip_special_tokens) bytes += entry->second;
      continue;
    }
    const CodePoints u = decode_utf8(entry->second);
    for (uint32_t cp : u.cp) {
      auto it = unicode_to_byte_.find(cp);
      if (it != unicode_to_byte_.end()) bytes.push_back(static_cast<char>(it->second));
    }
  }
  return sanitize_utf8(bytes);
}

}  // namespace fastergpt_cpp
