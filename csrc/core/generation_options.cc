#include "generation_options.h"

#include <cmath>
#include <iomanip>
#include <sstream>

#include "error.h"
#include "table_value.h"

namespace fastergpt {
namespace {

std::vector<SettingInfo> build_table() {
  std::vector<SettingInfo> t;
#define FGPT_SETTING_ROW(name_, type, kind_, def, lo, lo_incl, hi, choices_, help_)            \
  t.push_back(SettingInfo{#name_, SettingKind::kind_, static_cast<double>(def),                 \
                          static_cast<double>(lo), lo_incl, static_cast<double>(hi), choices_,  \
                          help_,                                                                \
                          [](GenerationOptions& o, double v) { o.name_ = from_double<type>(v); }, \
                          [](const GenerationOptions& o) { return to_double(o.name_); }});
  FGPT_SETTINGS(FGPT_SETTING_ROW)
#undef FGPT_SETTING_ROW
  return t;
}

// Values as a person reads them: integers in full (up to 2^63), others to 10 digits.
std::string number(double v) {
  std::ostringstream os;
  if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9.2e18)
    os << static_cast<int64_t>(v);
  else
    os << std::setprecision(10) << v;
  return os.str();
}

std::string known_names() {
  std::string s;
  for (const SettingInfo& r : setting_table()) s += (s.empty() ? "" : ", ") + std::string(r.name);
  return s;
}

}  // namespace

const std::vector<SettingInfo>& setting_table() {
  static const std::vector<SettingInfo> table = build_table();
  return table;
}

const SettingInfo& setting_info(const std::string& name) {
  for (const SettingInfo& r : setting_table())
    if (name == r.name) return r;
  fail("unknown generation setting '", name, "' (known: ", known_names(), ")");
}

std::string setting_layout() {
  std::string s;
  for (const SettingInfo& r : setting_table()) s += (s.empty() ? "" : ",") + std::string(r.name);
  return s;
}

std::vector<std::string> split_layout(const std::string& layout) {
  std::vector<std::string> names;
  std::stringstream ss(layout);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) names.push_back(item);
  return names;
}

int64_t parse_choice(const SettingInfo& s, const std::string& name) {
  FGPT_CHECK(s.choices != nullptr, s.name, ": not a choice setting");
  std::string names;
  for (const ChoiceName* c = s.choices; c->name; ++c) {
    if (name == c->name) return c->value;
    names += (names.empty() ? "'" : ", '") + std::string(c->name) + "'";
  }
  fail(s.name, ": expected one of ", names, ", got '", name, "'");
}

void set_setting(GenerationOptions& o, const std::string& name, double v) {
  const SettingInfo& s = setting_info(name);
  const bool low_ok = s.min_inclusive ? v >= s.min : v > s.min;  // false for NaN
  if (!low_ok || !(v <= s.max)) {
    const std::string lower = std::string(s.min_inclusive ? ">= " : "> ") + number(s.min);
    if (s.max == 1.0)  // a probability
      fail(name, " must be in ", s.min_inclusive ? "[" : "(", number(s.min), ", 1], got ",
           number(v));
    if (s.max == kMaxFloat) fail(name, " must be ", lower, " and finite, got ", number(v));
    fail(name, " must be ", low_ok ? "<= " + number(s.max) : lower, ", got ", number(v));
  }
  if (s.kind != SettingKind::Float)
    FGPT_CHECK(std::floor(v) == v, name, " must be an integer, got ", number(v));
  s.set(o, v);
}

GenerationOptions options_from_values(const std::vector<std::string>& names, const double* values,
                                      int64_t count) {
  FGPT_CHECK(static_cast<int64_t>(names.size()) == count, "settings: expected ", names.size(),
             " values (", names.size() ? names.front() : "", "...), got ", count);
  GenerationOptions o;
  for (int64_t i = 0; i < count; ++i) set_setting(o, names[i], values[i]);
  return o;
}

GenerationOptions options_from_map(const std::map<std::string, double>& values) {
  GenerationOptions o;
  for (const auto& kv : values) set_setting(o, kv.first, kv.second);
  return o;
}

void GenerationOptions::validate(int64_t vocab_size) const {
  // Re-check every range: options may also be filled field by field in C++.
  for (const SettingInfo& s : setting_table()) {
    GenerationOptions scratch;
    set_setting(scratch, s.name, s.get(*this));
  }
  if (decode_strategy == DecodeStrategy::kSampling)
    FGPT_CHECK(temperature > 0.0f, "temperature must be > 0 for sampling, got ", temperature);
  if (decode_strategy == DecodeStrategy::kBeamSearch) {
    FGPT_CHECK(num_return_sequences <= num_beams, "num_return_sequences (", num_return_sequences,
               ") must be <= num_beams (", num_beams, ") for beam search");
    // Settings beam search would silently ignore are refused (transformers warns and
    // ignores them): the help of every sampling-only row says "sampling: ".
    const std::string sampling = "sampling: ";
    for (const SettingInfo& s : setting_table())
      FGPT_CHECK(std::string(s.help).rfind(sampling, 0) != 0 || s.get(*this) == s.default_value,
                 s.name, " is a sampling setting that beam search does not use; leave it at its "
                 "default (", s.default_value, ") or use decode_strategy='sampling'");
  } else {
    FGPT_CHECK(num_beams == 1, "num_beams is ", num_beams, " but decode_strategy is not "
               "beam_search; set decode_strategy='beam_search' (or num_beams=1)");
  }
  FGPT_CHECK(eos_token_id < vocab_size, "eos_token_id ", eos_token_id,
             " is outside the vocabulary of size ", vocab_size);
  FGPT_CHECK(pad_token_id < vocab_size, "pad_token_id ", pad_token_id,
             " is outside the vocabulary of size ", vocab_size);
  stop.validate(vocab_size);
  FGPT_CHECK(prompt_lookup_num_tokens == 0 ||
                 decode_strategy == DecodeStrategy::kGreedy ||
                 (decode_strategy == DecodeStrategy::kBeamSearch && num_beams == 1),
             "prompt_lookup_num_tokens is for greedy search (its drafts are checked against "
             "the argmax); use decode_strategy='greedy_search' or leave it at 0");
  // transformers' beam search stops only when every beam met a stop string; a
  // finished hypothesis per string is not what a caller means, so it is refused.
  FGPT_CHECK(decode_strategy != DecodeStrategy::kBeamSearch || num_beams == 1 ||
                 stop.strings.empty(),
             "stop strings are not supported with beam search (it ranks whole sequences at "
             "the end); use end_token_ids, or greedy search or sampling");
}

}  // namespace fastergpt
