// Per-call generation settings: the ONE table every front end derives from.
//
// FGPT_SETTINGS below is the single declaration of a setting (name, C++ type,
// kind, default, allowed range, meaning). From it come the GenerationOptions
// fields, the run-time table `setting_table()` (what the pybind module hands
// to Python, what gpt_infer turns into flags), the parsing of a settings
// vector (what the Paddle op reads from its one `settings` input) and the
// range checks. Adding a setting = one row here + its use in the decoder
// (usually logits_processor.cc) + tests; nothing else names it.
//
// Every setting is a runtime input of the Paddle operator (and so of an
// exported graph): nothing here is frozen at export. Values cross adapters as
// float64, so integer settings are bounded by 2^53 (every bound below is).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "stop_conditions.h"

namespace fastergpt {

enum class DecodeStrategy : int64_t { kGreedy = 0, kSampling = 1, kBeamSearch = 2 };
// transformers' early_stopping: kFalse stops when the best running beam cannot
// beat the worst finished one at its current length, kTrue as soon as num_beams
// sequences finished, kNever when it cannot at the longest length allowed.
enum class EarlyStopping : int64_t { kFalse = 0, kTrue = 1, kNever = 2 };
// How the KV cache stores keys and values (kv_cache.h); attention's arithmetic is
// float32 either way.
enum class KVDtype : int64_t { kFloat32 = 0, kFloat16 = 1 };
// What the float32 / float16 weight formats multiply in: float32 FMA, or bfloat16 pairs
// summed in float32 (AVX-512 BF16's vdpbf16ps; a backend without it refuses the setting).
enum class MatmulPrecision : int64_t { kFloat32 = 0, kBFloat16 = 1 };

// The names a Choice setting accepts: canonical names first (their values
// 0, 1, ...), then aliases; ends with {nullptr}.
struct ChoiceName {
  const char* name;
  int64_t value;
};
constexpr ChoiceName kDecodeStrategies[] = {
    {"greedy_search", 0}, {"sampling", 1}, {"beam_search", 2}, {"greedy", 0} /* alias */,
    {nullptr, 0}};
constexpr ChoiceName kEarlyStopping[] = {
    {"false", 0}, {"true", 1}, {"never", 2}, {"False", 0}, {"True", 1}, {nullptr, 0}};
constexpr ChoiceName kKVDtypes[] = {{"float32", 0}, {"float16", 1}, {nullptr, 0}};
inline const char* kv_dtype_name(KVDtype d) { return kKVDtypes[static_cast<int>(d)].name; }
inline int64_t kv_element_bytes(KVDtype d) { return d == KVDtype::kFloat16 ? 2 : 4; }
constexpr ChoiceName kMatmulPrecisions[] = {{"float32", 0}, {"bfloat16", 1}, {nullptr, 0}};
inline const char* matmul_precision_name(MatmulPrecision p) {
  return kMatmulPrecisions[static_cast<int>(p)].name;
}

constexpr double kMaxTokens = 1 << 30;  // far above any position table, far below overflow
constexpr double kMaxId = (1LL << 31) - 1;
constexpr double kMaxSeed = 9007199254740991.0;  // 2^53 - 1: exact in float64
constexpr double kMaxReturnSequences = 1 << 16;
constexpr double kMaxThreads = 1024;
constexpr double kMaxFloat = 3.4e38;
constexpr double kMaxDraftTokens = 64;  // drafted tokens per step (prompt lookup)
constexpr double kMaxBeams = 256;  // each beam is a KV-cache row; the top-k merge is O(beams^2)

// X(name, C++ type, kind, default, min, min_inclusive, max, choices, help)
//   kind: Int (integral values), Float, Choice (an index into `choices`, a
//   ChoiceName list; nullptr for the other kinds).
//   The range check is min <(=) value <= max; checks that need the model
//   (ids inside the vocabulary) or other settings live in validate().
//   help: a setting only one strategy reads says so first ("sampling: ",
//   "beam search: "); validate() and the front ends derive from that prefix
//   which settings beam search refuses and which model defaults it drops.
#define FGPT_SETTINGS(X)                                                                          \
  X(max_new_tokens, int64_t, Int, 20, 1, true, kMaxTokens, nullptr,                               \
    "new tokens to generate at most; prompt + new tokens must fit the position table")            \
  X(min_length, int64_t, Int, 0, 0, true, kMaxTokens, nullptr,                                    \
    "the end token is masked until a row generated this many tokens")                             \
  X(decode_strategy, DecodeStrategy, Choice, 0, 0, true, 2, kDecodeStrategies,                    \
    "greedy_search (argmax), sampling or beam_search")                                            \
  X(top_k, int64_t, Int, 0, 0, true, kMaxId, nullptr,                                             \
    "sampling: keep the k most likely tokens; 0 = off")                                           \
  X(top_p, float, Float, 1.0, 0, false, 1, nullptr,                                               \
    "sampling: nucleus mass in (0, 1]; 1 = off")                                                  \
  X(temperature, float, Float, 1.0, 0, true, kMaxFloat, nullptr,                                  \
    "sampling: logits are divided by it (> 0); greedy ignores it")                                \
  X(repetition_penalty, float, Float, 1.0, 0, false, kMaxFloat, nullptr,                          \
    "> 0; HF rule: logit<0 ? logit*p : logit/p, once per id seen in prompt or output")            \
  X(eos_token_id, int64_t, Int, -1, -1, true, kMaxId, nullptr,                                    \
    "the end token; -1: never stop early")                                                        \
  X(pad_token_id, int64_t, Int, -1, -1, true, kMaxId, nullptr,                                    \
    "emitted by finished rows; -1: the end token (or 0)")                                         \
  X(num_return_sequences, int64_t, Int, 1, 1, true, kMaxReturnSequences, nullptr,                 \
    "rows generated per prompt")                                                                  \
  X(seed, uint64_t, Int, 0, 0, true, kMaxSeed, nullptr,                                           \
    "RNG seed: expanded row r draws from Philox(seed, r)")                                        \
  X(num_threads, int64_t, Int, 0, 0, true, kMaxThreads, nullptr,                                  \
    "engine threads; 0 = all cores")                                                              \
  X(typical_p, float, Float, 1.0, 0, false, 1, nullptr,                                           \
    "sampling: locally typical mass in (0, 1]; 1 = off")                                          \
  X(min_p, float, Float, 0.0, 0, true, 1, nullptr,                                                \
    "sampling: drop tokens below min_p x the top token's probability; 0 = off")                   \
  X(max_memory_mb, int64_t, Int, 0, 0, true, kMaxTokens, nullptr,                                 \
    "memory a request may allocate, checked before it does; 0 = what the machine has available")  \
  X(num_beams, int64_t, Int, 1, 1, true, kMaxBeams, nullptr,                                      \
    "beam search: beams kept per prompt (1 = greedy search, as transformers)")                    \
  X(length_penalty, float, Float, 1.0, -kMaxFloat, true, kMaxFloat, nullptr,                      \
    "beam search: a finished beam scores sum(logprobs) / length^length_penalty")                  \
  X(early_stopping, EarlyStopping, Choice, 0, 0, true, 2, kEarlyStopping,                         \
    "beam search: false, true or never, with transformers' meaning")                              \
  X(no_repeat_ngram_size, int64_t, Int, 0, 0, true, kMaxTokens, nullptr,                          \
    "an n-gram of this size never appears twice in prompt + output; 0 = off")                    \
  X(max_time, double, Float, 0.0, 0, true, kMaxFloat, nullptr,                                    \
    "seconds a call may run; checked after each step (at least one token); 0 = no limit")        \
  X(prompt_lookup_num_tokens, int64_t, Int, 0, 0, true, kMaxDraftTokens, nullptr,                 \
    "greedy search: draft up to this many tokens per step from an n-gram already in the prompt "  \
    "or output, verified in one pass (the output is greedy's); 0 = off")                          \
  X(max_matching_ngram_size, int64_t, Int, 2, 1, true, kMaxDraftTokens, nullptr,                  \
    "greedy search: the longest n-gram prompt lookup matches (it tries shorter ones after)")    \
  X(kv_cache_dtype, KVDtype, Choice, 0, 0, true, 1, kKVDtypes,                                    \
    "float32, or float16: keys and values rounded to half precision as they are stored (half "    \
    "the cache's memory and attention's reads; the products stay float32)")                       \
  X(matmul_precision, MatmulPrecision, Choice, 0, 0, true, 1, kMatmulPrecisions,                  \
    "float32, or bfloat16: float32/float16 weights and the activations they multiply rounded to " \
    "bfloat16, products summed in float32 (CPUs with AVX-512 BF16; int8/int4 weights unchanged)")

struct GenerationOptions {
#define FGPT_SETTING_FIELD(name, type, kind, def, lo, lo_incl, hi, choices, help) \
  type name = static_cast<type>(def);
  FGPT_SETTINGS(FGPT_SETTING_FIELD)
#undef FGPT_SETTING_FIELD
  // Not a setting of the exported graph: the op always returns log-probs.
  bool return_logprobs = false;
  // Not numbers, so not rows of the table: more end tokens and stop strings (the op
  // and an export take them as inputs of their own).
  StopConditions stop;

  // Throws Error naming the first invalid field (range, ids inside the vocabulary).
  void validate(int64_t vocab_size) const;
};

enum class SettingKind { Int, Float, Choice };

// One row of FGPT_SETTINGS at run time.
struct SettingInfo {
  const char* name;
  SettingKind kind;
  double default_value;
  double min;
  bool min_inclusive;
  double max;
  const ChoiceName* choices;  // Choice kind only
  const char* help;
  void (*set)(GenerationOptions&, double);
  double (*get)(const GenerationOptions&);
};

// Every setting, in declaration order (the order of a settings vector).
const std::vector<SettingInfo>& setting_table();
// The row named `name`; throws Error listing the known names.
const SettingInfo& setting_info(const std::string& name);
// "name1,name2,..." of setting_table(): how a Paddle graph records its vector's layout.
std::string setting_layout();
std::vector<std::string> split_layout(const std::string& layout);

// Checks one value against its row (finite, integral for Int/Choice, in range)
// and stores it; throws Error naming the setting. No cast happens before the
// range check, so huge values cannot overflow.
void set_setting(GenerationOptions& o, const std::string& name, double value);

// Options from values[i] for names[i]; settings not named keep their defaults.
GenerationOptions options_from_values(const std::vector<std::string>& names,
                                      const double* values, int64_t count);
GenerationOptions options_from_map(const std::map<std::string, double>& values);

// A Choice setting's value from one of its names; throws Error listing them.
int64_t parse_choice(const SettingInfo& setting, const std::string& name);

}  // namespace fastergpt
