// Named, packed model weights and the table that says how they are passed in.
//
// Adapters receive the weights as a flat list (a Paddle Vec input, a Python
// list of arrays) in the order of `weight_spec()`; `bind_weights()` checks
// every shape against the spec and names the offending tensor on mismatch.
// The Python packer reads the same spec through the pybind11 module, so this
// file is the one table of engine weight names.
//
// Shapes (D hidden, F inner, V vocab, P positions; linear weights are [out, in]):
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "matrix.h"
#include "model_config.h"

namespace fastergpt {

struct LayerWeights {
  const float* ln1_gamma = nullptr;  // [D]
  const float* ln1_beta = nullptr;   // [D]
  Matrix qkv;                        // [3D, D]: rows q|k|v, heads contiguous in each
  const float* qkv_bias = nullptr;   // [3D]
  Matrix attn_out;                   // [D, D]
  const float* attn_out_bias = nullptr;  // [D]
  const float* ln2_gamma = nullptr;  // [D]
  const float* ln2_beta = nullptr;   // [D]
  Matrix fc;                         // [F, D]
  const float* fc_bias = nullptr;    // [F]
  Matrix proj;                       // [D, F]
  const float* proj_bias = nullptr;  // [D]
};

struct ModelWeights {
  const float* token_embedding = nullptr;     // [V, D]
  const float* position_embedding = nullptr;  // [P, D]
  std::vector<LayerWeights> layers;           // num_layers
  const float* lnf_gamma = nullptr;           // [D]
  const float* lnf_beta = nullptr;            // [D]
  Matrix lm_head;  // [V, D]; the token embedding itself when the head is tied
};

struct WeightSpec {
  std::string name;            // e.g. "layers.3.qkv.weight"
  std::vector<int64_t> shape;  // expected shape
};

// Every tensor the engine needs, in the order adapters pass them.
std::vector<WeightSpec> weight_spec(const ModelConfig& config);

// One tensor as an adapter hands it over (float32, row-major, contiguous).
struct WeightView {
  const float* data = nullptr;
  std::vector<int64_t> shape;
};

// Binds `views` (in weight_spec order) to named weights; throws Error naming
// the first missing or mis-shaped tensor. The views must outlive the result.
ModelWeights bind_weights(const ModelConfig& config, const std::vector<WeightView>& views);

// Reads D, F, V and P off the tensors so adapters need only the structural
// attributes (layers, heads, epsilon, activation, tying); validates the result.
ModelConfig infer_config(int64_t num_layers, int64_t num_heads, float layer_norm_epsilon,
                         const std::string& activation, bool tied_lm_head,
                         const std::vector<WeightView>& views);

}  // namespace fastergpt
