#include "gpt2.h"

#include <cmath>
#include <cstring>

#include "../error.h"

namespace fastergpt {
namespace gpt2 {
namespace {

// Named weights of one block (D hidden, F inner; linear weights are [out, in]).
struct LayerWeights {
  const float* ln1_gamma;     // [D]
  const float* ln1_beta;      // [D]
  Matrix qkv;                 // [3D, D]: rows q|k|v, heads contiguous in each
  const float* qkv_bias;      // [3D]
  Matrix attn_out;            // [D, D]
  const float* attn_out_bias; // [D]
  const float* ln2_gamma;     // [D]
  const float* ln2_beta;      // [D]
  Matrix fc;                  // [F, D]
  const float* fc_bias;       // [F]
  Matrix proj;                // [D, F]
  const float* proj_bias;     // [D]
};

// THE table of a block's tensors: spec order, names, shapes and where each
// binds. Python's checkpoint mapping (fastergpt/models/gpt2.py) uses the keys.
enum Dim { k1, kD, k3D, kF };
struct LayerTensor {
  const char* key;
  Dim rows, cols;                       // cols = k1: a vector of `rows` floats
  const float* LayerWeights::*vector;   // float32 vectors
  Matrix LayerWeights::*matrix;         // matrices in the weight format
};
const LayerTensor kLayerTensors[] = {
    {"ln1.gamma", kD, k1, &LayerWeights::ln1_gamma, nullptr},
    {"ln1.beta", kD, k1, &LayerWeights::ln1_beta, nullptr},
    {"qkv.weight", k3D, kD, nullptr, &LayerWeights::qkv},
    {"qkv.bias", k3D, k1, &LayerWeights::qkv_bias, nullptr},
    {"attn_out.weight", kD, kD, nullptr, &LayerWeights::attn_out},
    {"attn_out.bias", kD, k1, &LayerWeights::attn_out_bias, nullptr},
    {"ln2.gamma", kD, k1, &LayerWeights::ln2_gamma, nullptr},
    {"ln2.beta", kD, k1, &LayerWeights::ln2_beta, nullptr},
    {"fc.weight", kF, kD, nullptr, &LayerWeights::fc},
    {"fc.bias", kF, k1, &LayerWeights::fc_bias, nullptr},
    {"proj.weight", kD, kF, nullptr, &LayerWeights::proj},
    {"proj.bias", kD, k1, &LayerWeights::proj_bias, nullptr},
};

int64_t size_of(Dim d, const ModelConfig& c) {
  switch (d) {
    case k1: return 1;
    case kD: return c.hidden_size;
    case k3D: return 3 * c.hidden_size;
    case kF: return c.inner_size;
  }
  return 0;
}

class Gpt2 final : public Model {
 public:
  Gpt2(const ModelConfig& c, WeightFormat format, const std::vector<WeightView>& views)
      : Model(c) {
    const BoundWeights w(gpt2::weight_spec(c, format), format, views);
    token_embedding_ = w.matrix("token_embedding");
    position_embedding_ = w.f32("position_embedding");
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "layers." + std::to_string(l) + ".";
      LayerWeights lw{};
      for (const LayerTensor& t : kLayerTensors) {
        if (t.matrix) lw.*t.matrix = w.matrix(p + t.key);
        else lw.*t.vector = w.f32(p + t.key);
      }
      layers_.push_back(lw);
    }
    lnf_gamma_ = w.f32("final_ln.gamma");
    lnf_beta_ = w.f32("final_ln.beta");
    lm_head_ = c.tied_lm_head ? token_embedding_ : w.matrix("lm_head.weight");
  }

  void forward(Context& ctx, const int64_t* tokens, const TokenSlot* slots,
               int64_t M) const override {
    const ModelConfig& c = config_;
    const Backend& k = ctx.backend();
    Activations& a = ctx.activations();
    a.reserve(M, c);
    const int64_t D = c.hidden_size;
    k.embed(ctx, token_embedding_, position_embedding_, tokens, slots, M, a.x.data());
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const LayerWeights& lw = layers_[l];
      k.layer_norm(ctx, a.x.data(), M, D, lw.ln1_gamma, lw.ln1_beta, c.layer_norm_epsilon,
                   a.h.data());
      k.linear(ctx, a.h.data(), M, lw.qkv, lw.qkv_bias, Epilogue::kStore, a.qkv.data());
      k.attention(ctx, ctx.kv_cache(), l, a.qkv.data(), slots, M, a.attn.data());
      k.linear(ctx, a.attn.data(), M, lw.attn_out, lw.attn_out_bias, Epilogue::kAccumulate,
               a.x.data());
      k.layer_norm(ctx, a.x.data(), M, D, lw.ln2_gamma, lw.ln2_beta, c.layer_norm_epsilon,
                   a.h.data());
      k.linear(ctx, a.h.data(), M, lw.fc, lw.fc_bias, gelu_epilogue(c.activation), a.mlp.data());
      k.linear(ctx, a.mlp.data(), M, lw.proj, lw.proj_bias, Epilogue::kAccumulate, a.x.data());
    }
  }

  void logits(Context& ctx, const int64_t* token_rows, int64_t n) const override {
    const ModelConfig& c = config_;
    const Backend& k = ctx.backend();
    Activations& a = ctx.activations();
    const int64_t D = c.hidden_size;
    for (int64_t i = 0; i < n; ++i)
      if (token_rows[i] != i)
        std::memcpy(a.x.data() + i * D, a.x.data() + token_rows[i] * D, D * sizeof(float));
    k.layer_norm(ctx, a.x.data(), n, D, lnf_gamma_, lnf_beta_, c.layer_norm_epsilon, a.h.data());
    k.linear(ctx, a.h.data(), n, lm_head_, nullptr, Epilogue::kStore, a.logits.data());
  }

 private:
  Matrix token_embedding_;              // [V, D]
  const float* position_embedding_;     // [P, D]
  std::vector<LayerWeights> layers_;    // num_layers
  const float* lnf_gamma_;              // [D]
  const float* lnf_beta_;               // [D]
  Matrix lm_head_;  // [V, D]; the token embedding itself when the head is tied
};

}  // namespace

std::vector<WeightSpec> weight_spec(const ModelConfig& c, WeightFormat format) {
  const int64_t D = c.hidden_size;
  std::vector<WeightSpec> spec;
  add_matrix(spec, -1, "token_embedding", c.vocab_size, D, format);
  add_vector(spec, -1, "position_embedding", {c.max_positions, D});
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (const LayerTensor& t : kLayerTensors) {
      if (t.matrix) add_matrix(spec, l, t.key, size_of(t.rows, c), size_of(t.cols, c), format);
      else add_vector(spec, l, t.key, {size_of(t.rows, c)});
    }
  add_vector(spec, -1, "final_ln.gamma", {D});
  add_vector(spec, -1, "final_ln.beta", {D});
  if (!c.tied_lm_head) add_matrix(spec, -1, "lm_head.weight", c.vocab_size, D, format);
  return spec;
}

ModelConfig infer_config(int64_t num_layers, int64_t num_heads, float layer_norm_epsilon,
                         const std::string& activation, bool tied_lm_head, WeightFormat format,
                         const std::vector<WeightView>& views) {
  FGPT_CHECK(num_layers >= 1, "num_layers must be >= 1, got ", num_layers);
  // Names and order do not depend on the dimensions: read them off a 1-sized spec.
  ModelConfig shape_free;
  shape_free.num_layers = num_layers;
  shape_free.num_heads = shape_free.hidden_size = shape_free.inner_size = 1;
  shape_free.vocab_size = shape_free.max_positions = 1;
  shape_free.tied_lm_head = tied_lm_head;
  const std::vector<WeightSpec> names = gpt2::weight_spec(shape_free, format);
  FGPT_CHECK(views.size() == names.size(), "weights: expected ", names.size(), " tensors for ",
             num_layers, " layers (", tied_lm_head ? "tied" : "untied", " LM head, ",
             format_info(format).name, "), got ", views.size());
  auto view2d = [&](const std::string& name) -> const WeightView& {
    for (size_t i = 0; i < names.size(); ++i)
      if (names[i].name == name) {
        const WeightView& v = views[i];
        FGPT_CHECK(v.shape.size() == 2, "weights: ", name, " must be 2-D, got ", shape_str(v.shape));
        return v;
      }
    fail("weights: no tensor named ", name);
  };
  ModelConfig c;
  c.num_layers = num_layers;
  c.num_heads = num_heads;
  c.vocab_size = view2d("token_embedding").shape[0];
  c.hidden_size = view2d("token_embedding").shape[1];
  c.max_positions = view2d("position_embedding").shape[0];
  c.inner_size = view2d("layers.0.fc.weight").shape[0];
  c.layer_norm_epsilon = layer_norm_epsilon;
  c.activation = parse_activation(activation);
  c.tied_lm_head = tied_lm_head;
  c.validate();
  return c;
}

std::unique_ptr<Model> make_model(const ModelConfig& config, WeightFormat format,
                                  const std::vector<WeightView>& views) {
  return std::make_unique<Gpt2>(config, format, views);
}

}  // namespace gpt2
}  // namespace fastergpt
