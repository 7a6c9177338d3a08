// Named, packed model weights and the table that says how they are passed in.
//
// Adapters receive the weights as a flat list (a Paddle Vec input, a Python
// list of arrays) in the order of `weight_spec()`; `bind_weights()` checks
// every dtype and shape against the spec and names the offending tensor on a
// mismatch. The Python packer reads the same spec through the pybind11 module,
// so this file is the one table of engine weight names.
//
// The matrices (token embedding, which is also the tied LM head, and every
// linear weight) are in the model's weight format; a format with row scales
// (int8) puts a "<matrix>.scale" [rows] float32 tensor right after each
// matrix. Everything else (position table, LayerNorms, biases) is float32.
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
  WeightFormat format = WeightFormat::kF32;
  Matrix token_embedding;                     // [V, D]
  const float* position_embedding = nullptr;  // [P, D]
  std::vector<LayerWeights> layers;           // num_layers
  const float* lnf_gamma = nullptr;           // [D]
  const float* lnf_beta = nullptr;            // [D]
  Matrix lm_head;  // [V, D]; the token embedding itself when the head is tied
};

struct WeightSpec {
  std::string name;            // e.g. "layers.3.qkv.weight"
  std::vector<int64_t> shape;  // expected shape
  WeightFormat dtype;          // expected element type
};

// Every tensor the engine needs, in the order adapters pass them.
std::vector<WeightSpec> weight_spec(const ModelConfig& config, WeightFormat format);

// One tensor as an adapter hands it over (row-major, contiguous).
struct WeightView {
  const void* data = nullptr;
  std::vector<int64_t> shape;
  WeightFormat dtype = WeightFormat::kF32;
};

// Binds `views` (in weight_spec order) to named weights; throws Error naming
// the first missing or mis-shaped tensor. The views must outlive the result.
ModelWeights bind_weights(const ModelConfig& config, WeightFormat format,
                          const std::vector<WeightView>& views);

// Reads D, F, V and P off the tensors so adapters need only the structural
// attributes (layers, heads, epsilon, activation, tying, format); validates.
ModelConfig infer_config(int64_t num_layers, int64_t num_heads, float layer_norm_epsilon,
                         const std::string& activation, bool tied_lm_head, WeightFormat format,
                         const std::vector<WeightView>& views);

}  // namespace fastergpt
