#include "model_config.h"

#include "error.h"

namespace fastergpt {

Activation parse_activation(const std::string& name) {
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast" ||
      name == "gelu_tanh")
    return Activation::kGeluTanh;
  if (name == "gelu" || name == "gelu_erf") return Activation::kGeluErf;
  fail("activation: unsupported activation '", name,
       "' (expected 'gelu_new' for the tanh approximation or 'gelu' for exact erf)");
}

void ModelConfig::validate() const {
  FGPT_CHECK(num_layers >= 1, "num_layers must be >= 1, got ", num_layers);
  FGPT_CHECK(num_heads >= 1, "num_heads must be >= 1, got ", num_heads);
  FGPT_CHECK(hidden_size >= 1 && hidden_size % num_heads == 0,
             "hidden_size (", hidden_size, ") must be a positive multiple of num_heads (",
             num_heads, ")");
  FGPT_CHECK(inner_size >= 1, "inner_size must be >= 1, got ", inner_size);
  FGPT_CHECK(vocab_size >= 1, "vocab_size must be >= 1, got ", vocab_size);
  FGPT_CHECK(max_positions >= 1, "max_positions must be >= 1, got ", max_positions);
  FGPT_CHECK(layer_norm_epsilon > 0.0f, "layer_norm_epsilon must be > 0, got ",
             layer_norm_epsilon);
}

}  // namespace fastergpt
