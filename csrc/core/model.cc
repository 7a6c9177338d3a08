// The model interface's shared pieces: spec helpers, binding views by name,
// and the entry points (every family is the one decoder over its architecture).
#include "model.h"

#include <sstream>

#include "error.h"
#include "models/decoder.h"

namespace fastergpt {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

std::string scale_name(const std::string& matrix) {
  const std::string suffix = ".weight";
  if (matrix.size() > suffix.size() &&
      matrix.compare(matrix.size() - suffix.size(), suffix.size(), suffix) == 0)
    return matrix.substr(0, matrix.size() - suffix.size()) + ".scale";
  return matrix + ".scale";
}

static std::string full_name(int64_t layer, const std::string& key) {
  return layer < 0 ? key : "layers." + std::to_string(layer) + "." + key;
}

void add_vector(std::vector<WeightSpec>& spec, int64_t layer, const std::string& key,
                std::vector<int64_t> shape) {
  spec.push_back({full_name(layer, key), key, layer, std::move(shape), ElementType::kF32, false});
}

void add_matrix(std::vector<WeightSpec>& spec, int64_t layer, const std::string& key,
                int64_t rows, int64_t cols, WeightFormat format) {
  const WeightFormatInfo& f = format_info(format);
  spec.push_back({full_name(layer, key), key, layer, {rows, cols}, f.element, true});
  if (f.scales == ScaleLayout::kPerRow)
    spec.push_back({scale_name(full_name(layer, key)), scale_name(key), layer, {rows},
                    ElementType::kF32, false});
}

BoundWeights::BoundWeights(const std::vector<WeightSpec>& spec, WeightFormat format,
                           const std::vector<WeightView>& views)
    : format_(format) {
  FGPT_CHECK(views.size() == spec.size(), "weights: expected ", spec.size(), " tensors, got ",
             views.size());
  for (size_t i = 0; i < spec.size(); ++i) {
    const WeightView& v = views[i];
    FGPT_CHECK(v.data != nullptr, "weights: tensor ", spec[i].name, " is empty");
    FGPT_CHECK(v.dtype == spec[i].dtype, "weights: tensor ", spec[i].name, " has dtype ",
               element_name(v.dtype), ", expected ", element_name(spec[i].dtype));
    FGPT_CHECK(v.shape == spec[i].shape, "weights: tensor ", spec[i].name, " has shape ",
               shape_str(v.shape), ", expected ", shape_str(spec[i].shape));
    by_name_[spec[i].name] = &v;
  }
}

const WeightView& BoundWeights::view(const std::string& name) const {
  auto it = by_name_.find(name);
  FGPT_CHECK(it != by_name_.end(), "weights: no tensor named ", name);
  return *it->second;
}

const float* BoundWeights::f32(const std::string& name) const {
  return static_cast<const float*>(view(name).data);
}

Matrix BoundWeights::matrix(const std::string& name) const {
  const WeightView& v = view(name);
  Matrix m;
  m.format = format_;
  m.data = v.data;
  m.rows = v.shape[0];
  m.cols = v.shape[1];
  if (format_info(format_).scales == ScaleLayout::kPerRow) m.scales = f32(scale_name(name));
  return m;
}

std::vector<WeightSpec> weight_spec(const ModelConfig& config, WeightFormat format) {
  config.validate();
  return decoder_weight_spec(config, format);
}

std::unique_ptr<Model> make_model(const ModelConfig& config, WeightFormat format,
                                  const std::vector<WeightView>& views) {
  config.validate();
  return make_decoder(config, format, views);
}

}  // namespace fastergpt
