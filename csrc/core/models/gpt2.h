// GPT-2: learned positions, pre-LayerNorm blocks, fused QKV with biases,
// GELU MLP, tied (or separate) LM head. The first model family; its one
// name/shape table (gpt2.cc) gives the weight spec and the binding.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "../model.h"

namespace fastergpt {
namespace gpt2 {

std::vector<WeightSpec> weight_spec(const ModelConfig& config, WeightFormat format);
ModelConfig infer_config(int64_t num_layers, int64_t num_heads, float layer_norm_epsilon,
                         const std::string& activation, bool tied_lm_head, WeightFormat format,
                         const std::vector<WeightView>& views);
std::unique_ptr<Model> make_model(const ModelConfig& config, WeightFormat format,
                                  const std::vector<WeightView>& views);

}  // namespace gpt2
}  // namespace fastergpt
