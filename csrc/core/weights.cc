#include "weights.h"

#include <sstream>

#include "error.h"

namespace fastergpt {
namespace {

const char* const kLayerTensors[] = {
    "ln1.gamma", "ln1.beta", "qkv.weight",  "qkv.bias",  "attn_out.weight", "attn_out.bias",
    "ln2.gamma", "ln2.beta", "fc.weight",   "fc.bias",   "proj.weight",     "proj.bias"};
constexpr int kTensorsPerLayer = 12;
constexpr int kLeadingTensors = 2;  // token and position embeddings

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

}  // namespace

std::vector<WeightSpec> weight_spec(const ModelConfig& c) {
  const int64_t D = c.hidden_size, F = c.inner_size;
  std::vector<WeightSpec> spec;
  spec.push_back({"token_embedding", {c.vocab_size, D}});
  spec.push_back({"position_embedding", {c.max_positions, D}});
  const std::vector<std::vector<int64_t>> layer_shapes = {
      {D}, {D}, {3 * D, D}, {3 * D}, {D, D}, {D}, {D}, {D}, {F, D}, {F}, {D, F}, {D}};
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (int i = 0; i < kTensorsPerLayer; ++i)
      spec.push_back({"layers." + std::to_string(l) + "." + kLayerTensors[i], layer_shapes[i]});
  spec.push_back({"final_ln.gamma", {D}});
  spec.push_back({"final_ln.beta", {D}});
  if (!c.tied_lm_head) spec.push_back({"lm_head.weight", {c.vocab_size, D}});
  return spec;
}

ModelConfig infer_config(int64_t num_layers, int64_t num_heads, float layer_norm_epsilon,
                         const std::string& activation, bool tied_lm_head,
                         const std::vector<WeightView>& views) {
  FGPT_CHECK(num_layers >= 1, "num_layers must be >= 1, got ", num_layers);
  const size_t expected = kLeadingTensors + num_layers * kTensorsPerLayer + 2 + (tied_lm_head ? 0 : 1);
  FGPT_CHECK(views.size() == expected, "weights: expected ", expected, " tensors for ",
             num_layers, " layers (", tied_lm_head ? "tied" : "untied", " LM head), got ",
             views.size());
  FGPT_CHECK(views[0].shape.size() == 2, "weights: token_embedding must be 2-D [V, D], got ",
             shape_str(views[0].shape));
  FGPT_CHECK(views[1].shape.size() == 2, "weights: position_embedding must be 2-D [P, D], got ",
             shape_str(views[1].shape));
  const WeightView& fc = views[kLeadingTensors + 8];
  FGPT_CHECK(fc.shape.size() == 2, "weights: layers.0.fc.weight must be 2-D [F, D], got ",
             shape_str(fc.shape));
  ModelConfig c;
  c.num_layers = num_layers;
  c.num_heads = num_heads;
  c.vocab_size = views[0].shape[0];
  c.hidden_size = views[0].shape[1];
  c.max_positions = views[1].shape[0];
  c.inner_size = fc.shape[0];
  c.layer_norm_epsilon = layer_norm_epsilon;
  c.activation = parse_activation(activation);
  c.tied_lm_head = tied_lm_head;
  c.validate();
  return c;
}

ModelWeights bind_weights(const ModelConfig& c, const std::vector<WeightView>& views) {
  const std::vector<WeightSpec> spec = weight_spec(c);
  FGPT_CHECK(views.size() == spec.size(), "weights: expected ", spec.size(),
             " tensors, got ", views.size());
  for (size_t i = 0; i < spec.size(); ++i) {
    FGPT_CHECK(views[i].data != nullptr, "weights: tensor ", spec[i].name, " is empty");
    FGPT_CHECK(views[i].shape == spec[i].shape, "weights: tensor ", spec[i].name,
               " has shape ", shape_str(views[i].shape), ", expected ", shape_str(spec[i].shape));
  }
  auto mat = [&](size_t i) {
    Matrix m;
    m.format = WeightFormat::kF32;
    m.data = views[i].data;
    m.rows = views[i].shape[0];
    m.cols = views[i].shape[1];
    return m;
  };
  ModelWeights w;
  w.token_embedding = views[0].data;
  w.position_embedding = views[1].data;
  size_t i = kLeadingTensors;
  for (int64_t l = 0; l < c.num_layers; ++l, i += kTensorsPerLayer) {
    LayerWeights lw;
    lw.ln1_gamma = views[i + 0].data;
    lw.ln1_beta = views[i + 1].data;
    lw.qkv = mat(i + 2);
    lw.qkv_bias = views[i + 3].data;
    lw.attn_out = mat(i + 4);
    lw.attn_out_bias = views[i + 5].data;
    lw.ln2_gamma = views[i + 6].data;
    lw.ln2_beta = views[i + 7].data;
    lw.fc = mat(i + 8);
    lw.fc_bias = views[i + 9].data;
    lw.proj = mat(i + 10);
    lw.proj_bias = views[i + 11].data;
    w.layers.push_back(lw);
  }
  w.lnf_gamma = views[i].data;
  w.lnf_beta = views[i + 1].data;
  w.lm_head = c.tied_lm_head ? mat(0) : mat(i + 2);
  return w;
}

}  // namespace fastergpt
