// The model interface the generator runs: a model binds its packed weights by
// name and runs its layers over the tokens of one pass. The generator never
// names a family: every family is the one decoder (models/decoder.cc) over its
// architecture (model_config.h).
//
// Adapters hand the weights over as a flat list in `weight_spec()` order (a
// Paddle Vec input, a Python list of arrays); `make_model()` checks every
// dtype and shape against the spec, naming the offending tensor on a mismatch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "collective.h"
#include "context.h"
#include "matrix.h"
#include "model_config.h"

namespace fastergpt {

// One tensor the engine takes: spec entries, in the order adapters pass them.
struct WeightSpec {
  std::string name;            // e.g. "layers.3.qkv.weight" (= "layers." + layer + "." + key)
  std::string key;             // the name within its layer, e.g. "qkv.weight"; global: = name
  int64_t layer;               // -1 for tensors outside the layers
  std::vector<int64_t> shape;  // expected shape; -1: any size (a group count, see matrix.h)
  ElementType dtype;           // expected element type
  bool matrix;                 // stored in the model's weight format (else float32)
  std::vector<int64_t> matrix_shape = {};  // a matrix's [rows, cols] (shape is its storage's)
  WeightFormat format = WeightFormat::kF32;  // a matrix's format (the model's, or its vocabulary one)
};

// One tensor as an adapter hands it over (row-major, contiguous, host memory).
struct WeightView {
  const void* data = nullptr;
  std::vector<int64_t> shape;
  ElementType dtype = ElementType::kF32;
};

class Model {
 public:
  virtual ~Model() = default;
  const ModelConfig& config() const { return config_; }

  // Embeds the M tokens at their slots and runs every layer: each token's K/V
  // go into the context's cache at its slot, its hidden state ends in act.x.
  // With `keep` (indices into the pass, rising strictly), only those tokens' hidden
  // states are wanted: the last layer stores every token's K/V, then finishes just the
  // kept tokens, whose states end in act.x rows 0..keep->size()-1. A prompt's tokens
  // before its last are wanted for their K/V alone, and that layer's attention output,
  // MLP and norms are then one row's work instead of the prompt's.
  virtual void forward(Context& ctx, const int64_t* tokens, const TokenSlot* slots, int64_t M,
                       const std::vector<int64_t>* keep = nullptr) const = 0;
  // Final norm and LM head for act.x rows 0..n-1 into act.logits [n, V].
  virtual void logits(Context& ctx, int64_t n) const = 0;

  // Tensor parallelism: this model is one shard (its config counts the shard's heads
  // and MLP width) and sums its sublayers' outputs over `collective`'s processes.
  // Null (the default): the whole model in this process.
  // The collective reduces host memory: a shard runs on the CPU.
  void set_collective(std::shared_ptr<Collective> collective);
  Collective* collective() const { return collective_.get(); }

  // The device the weights were bound to: its kernels run the model, and the
  // generator takes that device's context.
  const Backend& backend() const { return *backend_; }

 protected:
  Model(const ModelConfig& c, const Backend& backend) : config_(c), backend_(&backend) {}
  ModelConfig config_;
  const Backend* backend_;
  std::shared_ptr<Collective> collective_;
};

// Every tensor the engine needs for `config` in weight format `format`.
std::vector<WeightSpec> weight_spec(const ModelConfig& config, WeightFormat format);

// The model over `views` on `backend`'s device; throws Error naming the first
// missing or mis-shaped tensor, or a weight format the device has no kernels for.
// On the CPU the model reads `views` in place (they must outlive it); a device
// with memory of its own copies them once.
std::unique_ptr<Model> make_model(const ModelConfig& config, WeightFormat format,
                                  const std::vector<WeightView>& views,
                                  const Backend& backend = cpu_backend());

// Helpers for model files: "[a, b]", and a spec's matrix entry (+ its scales).
std::string shape_str(const std::vector<int64_t>& shape);
// column_order: a per-group format's matrix is followed by its "<m>.columns" (matrix.h).
void add_matrix(std::vector<WeightSpec>& spec, int64_t layer, const std::string& key,
                int64_t rows, int64_t cols, WeightFormat format, bool column_order = false);
void add_vector(std::vector<WeightSpec>& spec, int64_t layer, const std::string& key,
                std::vector<int64_t> shape);

// Views checked against a spec (count, dtype, shape), then found by name.
class BoundWeights {
 public:
  BoundWeights(const std::vector<WeightSpec>& spec, const std::vector<WeightView>& views);
  const float* f32(const std::string& name) const;
  // With its scales when the format has them, and its column order where the spec has one.
  Matrix matrix(const std::string& name) const;

 private:
  const WeightView& view(const std::string& name) const;
  const int32_t* column_order(const std::string& name, int64_t cols) const;
  std::map<std::string, const WeightView*> by_name_;
  std::map<std::string, std::pair<std::vector<int64_t>, WeightFormat>> matrices_;  // [rows, cols]
};

// "layers.0.qkv.weight" -> "layers.0.qkv.scale": the scale tensor of a matrix.
std::string scale_name(const std::string& matrix);
// "layers.0.qkv.weight" -> "layers.0.qkv.columns": an act-order matrix's column order.
std::string columns_name(const std::string& matrix);

}  // namespace fastergpt
