#include "weights.h"

#include <map>
#include <sstream>

#include "error.h"

namespace fastergpt {
namespace {

struct LayerTensor {
  const char* name;
  bool is_matrix;
};
const LayerTensor kLayerTensors[] = {
    {"ln1.gamma", false}, {"ln1.beta", false},       {"qkv.weight", true},
    {"qkv.bias", false},  {"attn_out.weight", true}, {"attn_out.bias", false},
    {"ln2.gamma", false}, {"ln2.beta", false},       {"fc.weight", true},
    {"fc.bias", false},   {"proj.weight", true},     {"proj.bias", false}};

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// "layers.0.qkv.weight" -> "layers.0.qkv.scale"; "token_embedding" -> "token_embedding.scale".
std::string scale_name(const std::string& matrix) {
  const std::string suffix = ".weight";
  if (matrix.size() > suffix.size() &&
      matrix.compare(matrix.size() - suffix.size(), suffix.size(), suffix) == 0)
    return matrix.substr(0, matrix.size() - suffix.size()) + ".scale";
  return matrix + ".scale";
}

void add_matrix(std::vector<WeightSpec>& spec, const std::string& name, int64_t rows, int64_t cols,
                WeightFormat format) {
  spec.push_back({name, {rows, cols}, format});
  if (format_info(format).has_row_scales)
    spec.push_back({scale_name(name), {rows}, WeightFormat::kF32});
}

int64_t index_of(const std::vector<WeightSpec>& spec, const std::string& name) {
  for (size_t i = 0; i < spec.size(); ++i)
    if (spec[i].name == name) return static_cast<int64_t>(i);
  fail("weights: no tensor named ", name);
}

}  // namespace

std::vector<WeightSpec> weight_spec(const ModelConfig& c, WeightFormat format) {
  const int64_t D = c.hidden_size, F = c.inner_size;
  const std::map<std::string, std::vector<int64_t>> layer_shapes = {
      {"ln1.gamma", {D}},        {"ln1.beta", {D}},     {"qkv.weight", {3 * D, D}},
      {"qkv.bias", {3 * D}},     {"attn_out.weight", {D, D}}, {"attn_out.bias", {D}},
      {"ln2.gamma", {D}},        {"ln2.beta", {D}},     {"fc.weight", {F, D}},
      {"fc.bias", {F}},          {"proj.weight", {D, F}}, {"proj.bias", {D}}};
  std::vector<WeightSpec> spec;
  add_matrix(spec, "token_embedding", c.vocab_size, D, format);
  spec.push_back({"position_embedding", {c.max_positions, D}, WeightFormat::kF32});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    for (const LayerTensor& t : kLayerTensors) {
      const std::string name = "layers." + std::to_string(l) + "." + t.name;
      const auto& shape = layer_shapes.at(t.name);
      if (t.is_matrix)
        add_matrix(spec, name, shape[0], shape[1], format);
      else
        spec.push_back({name, shape, WeightFormat::kF32});
    }
  }
  spec.push_back({"final_ln.gamma", {D}, WeightFormat::kF32});
  spec.push_back({"final_ln.beta", {D}, WeightFormat::kF32});
  if (!c.tied_lm_head) add_matrix(spec, "lm_head.weight", c.vocab_size, D, format);
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
  const std::vector<WeightSpec> names = weight_spec(shape_free, format);
  FGPT_CHECK(views.size() == names.size(), "weights: expected ", names.size(), " tensors for ",
             num_layers, " layers (", tied_lm_head ? "tied" : "untied", " LM head, ",
             format_info(format).name, "), got ", views.size());
  auto view2d = [&](const std::string& name) -> const WeightView& {
    const WeightView& v = views[index_of(names, name)];
    FGPT_CHECK(v.shape.size() == 2, "weights: ", name, " must be 2-D, got ", shape_str(v.shape));
    return v;
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

ModelWeights bind_weights(const ModelConfig& c, WeightFormat format,
                          const std::vector<WeightView>& views) {
  const std::vector<WeightSpec> spec = weight_spec(c, format);
  FGPT_CHECK(views.size() == spec.size(), "weights: expected ", spec.size(),
             " tensors, got ", views.size());
  std::map<std::string, const WeightView*> by_name;
  for (size_t i = 0; i < spec.size(); ++i) {
    const WeightView& v = views[i];
    FGPT_CHECK(v.data != nullptr, "weights: tensor ", spec[i].name, " is empty");
    FGPT_CHECK(v.dtype == spec[i].dtype, "weights: tensor ", spec[i].name, " has dtype ",
               format_info(v.dtype).name, ", expected ", format_info(spec[i].dtype).name);
    FGPT_CHECK(v.shape == spec[i].shape, "weights: tensor ", spec[i].name, " has shape ",
               shape_str(v.shape), ", expected ", shape_str(spec[i].shape));
    by_name[spec[i].name] = &v;
  }
  auto f32 = [&](const std::string& name) {
    return static_cast<const float*>(by_name.at(name)->data);
  };
  auto mat = [&](const std::string& name) {
    const WeightView& v = *by_name.at(name);
    Matrix m;
    m.format = format;
    m.data = v.data;
    m.rows = v.shape[0];
    m.cols = v.shape[1];
    if (format_info(format).has_row_scales) m.scales = f32(scale_name(name));
    return m;
  };
  ModelWeights w;
  w.format = format;
  w.token_embedding = mat("token_embedding");
  w.position_embedding = f32("position_embedding");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    LayerWeights lw;
    lw.ln1_gamma = f32(p + "ln1.gamma");
    lw.ln1_beta = f32(p + "ln1.beta");
    lw.qkv = mat(p + "qkv.weight");
    lw.qkv_bias = f32(p + "qkv.bias");
    lw.attn_out = mat(p + "attn_out.weight");
    lw.attn_out_bias = f32(p + "attn_out.bias");
    lw.ln2_gamma = f32(p + "ln2.gamma");
    lw.ln2_beta = f32(p + "ln2.beta");
    lw.fc = mat(p + "fc.weight");
    lw.fc_bias = f32(p + "fc.bias");
    lw.proj = mat(p + "proj.weight");
    lw.proj_bias = f32(p + "proj.bias");
    w.layers.push_back(lw);
  }
  w.lnf_gamma = f32("final_ln.gamma");
  w.lnf_beta = f32("final_ln.beta");
  w.lm_head = c.tied_lm_head ? w.token_embedding : mat("lm_head.weight");
  return w;
}

}  // namespace fastergpt
