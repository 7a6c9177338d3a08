// The structural description of a GPT-2-family decoder: everything that fixes
// the shapes of the weights and the arithmetic of a layer. Generation settings
// live elsewhere (generation_options.h) because they change per call.
#pragma once

#include <cstdint>
#include <string>

namespace fastergpt {

enum class Activation {
  kGeluTanh,  // GPT-2's "gelu_new": 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))
  kGeluErf,   // exact "gelu": 0.5x(1+erf(x/sqrt(2)))
};

// Parses "gelu_new" / "gelu" (and HF aliases); throws Error naming the value.
Activation parse_activation(const std::string& name);

struct ModelConfig {
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t hidden_size = 0;        // D
  int64_t inner_size = 0;         // F, the MLP width (4*D for GPT-2)
  int64_t vocab_size = 0;         // V
  int64_t max_positions = 0;      // P, rows of the position table
  float layer_norm_epsilon = 1e-5f;
  Activation activation = Activation::kGeluTanh;
  bool tied_lm_head = true;       // the LM head reuses the token embedding

  int64_t head_size() const { return hidden_size / num_heads; }
  // Throws Error naming the first inconsistent field.
  void validate() const;
};

}  // namespace fastergpt
