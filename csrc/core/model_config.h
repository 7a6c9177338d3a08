// The architecture of a decoder as data: everything that fixes the shapes of
// the weights and the arithmetic of a layer, for every family the engine runs
// (GPT-2, OPT, GPT-J, CodeGen, GPT-NeoX, LLaMA, Mistral, Qwen2). One decoder
// code path (models/decoder.cc) reads it; a family is a set of values here,
// filled by its Python file (fastergpt/models/<family>.py) from the
// checkpoint's config. Generation settings live elsewhere (generation_options.h)
// because they change per call.
//
// FGPT_ARCHITECTURE is the one declaration of a field: the struct, the
// "name=value;..." string the Paddle op takes as an attribute (and an export
// records), the pybind dict and Python's list all derive from it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "matrix.h"

namespace fastergpt {

enum class Norm : int64_t { kLayerNorm, kRmsNorm };
enum class Positions : int64_t { kLearned, kRotary };
enum class RopeScaling : int64_t { kNone, kLinear, kLlama3 };
enum class Activation : int64_t { kGeluTanh, kGeluErf, kRelu, kSilu };
enum class Residual : int64_t {
  kSequential,        // x += attn(ln1(x)); x += mlp(ln2(x))        (GPT-2, LLaMA, OPT pre-norm)
  kParallel,          // h = ln1(x); x += attn(h) + mlp(h)          (GPT-J, CodeGen)
  kParallelTwoNorms,  // x += attn(ln1(x)) + mlp(ln2(x))            (GPT-NeoX use_parallel_residual)
  kPostNorm,          // x = ln1(x + attn(x)); x = ln2(x + mlp(x))  (OPT do_layer_norm_before=False)
};

// Names of a choice field's values, in enum order; ends with nullptr.
constexpr const char* kNormNames[] = {"layer_norm", "rms_norm", nullptr};
constexpr const char* kPositionNames[] = {"learned", "rotary", nullptr};
constexpr const char* kRopeScalingNames[] = {"none", "linear", "llama3", nullptr};
constexpr const char* kActivationNames[] = {"gelu_tanh", "gelu_erf", "relu", "silu", nullptr};
// The storage of the vocabulary matrices (token table, LM head): kAuto (0) is the weight
// format's own choice (its row's `vocabulary` in kWeightFormats); value i + 1 is the
// format kWeightFormats[i], named as that row names it (checked below).
enum class VocabularyFormat : int64_t { kAuto };
constexpr const char* kVocabularyFormatNames[] = {"auto", "float32", "float16", "int8", "int4",
                                                  "bfloat16", nullptr};
constexpr const char* kResidualNames[] = {"sequential", "parallel", "parallel_two_norms",
                                          "post_norm", nullptr};

// X(name, C++ type, default, choices (nullptr unless an enum), meaning)
#define FGPT_ARCHITECTURE(X)                                                                      \
  X(num_layers, int64_t, 0, nullptr, "decoder blocks")                                           \
  X(num_heads, int64_t, 0, nullptr, "query heads H")                                             \
  X(num_kv_heads, int64_t, 0, nullptr, "key/value heads (H: multi-head; < H: grouped; 1: MQA)")  \
  X(head_size, int64_t, 0, nullptr, "Dh")                                                        \
  X(hidden_size, int64_t, 0, nullptr, "D, the residual stream")                                  \
  X(embed_size, int64_t, 0, nullptr, "E, the token embedding; != D: OPT's project_in/out")       \
  X(inner_size, int64_t, 0, nullptr, "F, the MLP width")                                         \
  X(vocab_size, int64_t, 0, nullptr, "V")                                                        \
  X(max_positions, int64_t, 0, nullptr, "P, positions a sequence may use")                       \
  X(norm, Norm, 0, kNormNames, "LayerNorm (with bias) or RMSNorm (weight only)")                 \
  X(norm_epsilon, float, 1e-5, nullptr, "epsilon of every norm")                                 \
  X(positions, Positions, 0, kPositionNames, "a learned table [P, D] or rotary embeddings")      \
  X(rotary_dim, int64_t, 0, nullptr, "rotated dims of each head (<= Dh; partial rotary)")        \
  X(rotary_base, float, 10000, nullptr, "theta")                                                 \
  X(rotary_interleaved, bool, 0, nullptr, "pairs (2i, 2i+1) as GPT-J/CodeGen; else halves")      \
  X(rope_scaling, RopeScaling, 0, kRopeScalingNames, "frequency scaling")                        \
  X(rope_factor, float, 1, nullptr, "linear / llama3 factor")                                    \
  X(rope_low_freq_factor, float, 1, nullptr, "llama3")                                           \
  X(rope_high_freq_factor, float, 4, nullptr, "llama3")                                          \
  X(rope_original_max_positions, int64_t, 8192, nullptr, "llama3")                               \
  X(activation, Activation, 0, kActivationNames, "MLP activation")                               \
  X(gated_mlp, bool, 0, nullptr, "act(gate(x)) * up(x), the fc matrix holds gate|up")            \
  X(residual, Residual, 0, kResidualNames, "where the norms and residual adds sit")              \
  X(qkv_bias, bool, 1, nullptr, "q/k/v projections have biases")                                \
  X(out_bias, bool, 1, nullptr, "the attention output projection has a bias")                   \
  X(mlp_bias, bool, 1, nullptr, "the MLP projections have biases")                               \
  X(tied_lm_head, bool, 1, nullptr, "the LM head reuses the token embedding")                    \
  X(lm_head_bias, bool, 0, nullptr, "the LM head has a bias (GPT-J, CodeGen)")                   \
  X(sliding_window, int64_t, 0, nullptr, "attention window (Mistral); 0 = none; longer sequences are refused") \
  X(vocabulary_format, VocabularyFormat, 0, kVocabularyFormatNames,                              \
    "weight format of the token table and LM head; auto: the weight format's own")               \
  X(act_order, bool, 0, nullptr, "per-group (int4) layer matrices take their input columns in "  \
    "a stored order (act-order GPTQ): an int32 [K] tensor <matrix>.columns follows each one's "  \
    "scales; no effect on other formats")

namespace detail {
constexpr bool same_name(const char* a, const char* b) {
  return *a == *b && (*a == '\0' || same_name(a + 1, b + 1));
}
constexpr bool vocabulary_names_follow_formats() {
  for (int i = 0; i < kNumWeightFormats; ++i)
    if (!kVocabularyFormatNames[i + 1] ||
        !same_name(kVocabularyFormatNames[i + 1], kWeightFormats[i].name) ||
        static_cast<int>(kWeightFormats[i].format) != i)
      return false;
  return kVocabularyFormatNames[kNumWeightFormats + 1] == nullptr;
}
}  // namespace detail
static_assert(detail::vocabulary_names_follow_formats(),
              "kVocabularyFormatNames must be \"auto\" then kWeightFormats' names, in order");

struct ModelConfig {
#define FGPT_ARCH_FIELD(name, type, def, choices, help) type name = static_cast<type>(def);
  FGPT_ARCHITECTURE(FGPT_ARCH_FIELD)
#undef FGPT_ARCH_FIELD

  int64_t kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
  int64_t head_dim() const { return head_size > 0 ? head_size : hidden_size / num_heads; }
  int64_t embed_dim() const { return embed_size > 0 ? embed_size : hidden_size; }
  int64_t rotary_dims() const { return rotary_dim > 0 ? rotary_dim : head_dim(); }
  int64_t q_size() const { return num_heads * head_dim(); }
  int64_t kv_size() const { return kv_heads() * head_dim(); }
  int64_t qkv_size() const { return q_size() + 2 * kv_size(); }
  // The format the vocabulary matrices are stored in when the layers use `layers`.
  WeightFormat vocabulary(WeightFormat layers) const {
    return vocabulary_format == VocabularyFormat::kAuto
               ? format_info(layers).vocabulary
               : static_cast<WeightFormat>(static_cast<int64_t>(vocabulary_format) - 1);
  }
  // The token table's format when the layers use `layers`: the vocabulary format's own
  // token_table (an int4 vocabulary keeps its table in int8).
  WeightFormat token_table(WeightFormat layers) const {
    return format_info(vocabulary(layers)).token_table;
  }
  // Whether the LM head is a matrix of its own: untied, or tied to a table kept in
  // another format.
  bool separate_lm_head(WeightFormat layers) const {
    return !tied_lm_head || token_table(layers) != vocabulary(layers);
  }
  // Throws Error naming the first inconsistent field.
  void validate() const;
};

// One row of FGPT_ARCHITECTURE at run time.
struct ArchitectureField {
  const char* name;
  const char* const* choices;  // enum value names, or nullptr
  const char* help;
  void (*set)(ModelConfig&, double);
  double (*get)(const ModelConfig&);
};
const std::vector<ArchitectureField>& architecture_table();

// "name=value;..." <-> ModelConfig (choices by name). Unknown names and bad
// values throw Error naming them; fields not given keep their defaults, and the
// parsed config must pass ModelConfig::validate.
ModelConfig parse_architecture(const std::string& text);
std::string format_architecture(const ModelConfig& c);
ModelConfig architecture_from_map(const std::map<std::string, std::string>& fields);

}  // namespace fastergpt
