// A small JSON reader for the two files the C++ demo needs (vocab.json and an
// exported directory's config.json). Parses the whole grammar (objects,
// arrays, strings with \u escapes and surrogate pairs, numbers, literals);
// throws std::runtime_error with the byte offset on malformed input.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fastergpt_cpp {

struct JsonValue {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = Kind::kNull;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<JsonValue> array;
  std::map<std::string, JsonValue> object;

  bool is_object() const { return kind == Kind::kObject; }
  // Member lookup; throws naming the key when it is absent.
  const JsonValue& at(const std::string& key) const;
  bool has(const std::string& key) const { return object.count(key) != 0; }
};

JsonValue parse_json(const std::string& text);
JsonValue read_json_file(const std::string& path);

// `s` as a JSON string literal (UTF-8 passes through; control characters escaped).
std::string quote_json(const std::string& s);

// Appends the UTF-8 encoding of code point cp.
void append_utf8(std::string& out, uint32_t cp);

}  // namespace fastergpt_cpp
