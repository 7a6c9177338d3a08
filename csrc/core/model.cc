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

// A tensor that travels with a matrix: "layers.0.qkv.weight" -> "layers.0.qkv" + part
// (a matrix named without ".weight", as "token_embedding", keeps its whole name).
static std::string beside_matrix(const std::string& matrix, const char* part) {
  const std::string suffix = ".weight";
  if (matrix.size() > suffix.size() &&
      matrix.compare(matrix.size() - suffix.size(), suffix.size(), suffix) == 0)
    return matrix.substr(0, matrix.size() - suffix.size()) + part;
  return matrix + part;
}

std::string scale_name(const std::string& matrix) { return beside_matrix(matrix, ".scale"); }

std::string columns_name(const std::string& matrix) { return beside_matrix(matrix, ".columns"); }

static std::string full_name(int64_t layer, const std::string& key) {
  return layer < 0 ? key : "layers." + std::to_string(layer) + "." + key;
}

void add_vector(std::vector<WeightSpec>& spec, int64_t layer, const std::string& key,
                std::vector<int64_t> shape) {
  spec.push_back({full_name(layer, key), key, layer, std::move(shape), ElementType::kF32, false});
}

void add_matrix(std::vector<WeightSpec>& spec, int64_t layer, const std::string& key,
                int64_t rows, int64_t cols, WeightFormat format, bool column_order) {
  const WeightFormatInfo& f = format_info(format);
  spec.push_back({full_name(layer, key), key, layer, storage_shape(format, rows, cols), f.element,
                  true, {rows, cols}, format});
  if (f.scales == ScaleLayout::kPerRow)
    spec.push_back({scale_name(full_name(layer, key)), scale_name(key), layer, {rows},
                    ElementType::kF32, false});
  if (f.scales == ScaleLayout::kPerGroup)  // [blocks, groups * 32]: the groups are the file's
    spec.push_back({scale_name(full_name(layer, key)), scale_name(key), layer,
                    {q4_blocks(rows), -1}, ElementType::kF16, false});
  if (column_order && f.scales == ScaleLayout::kPerGroup)
    spec.push_back({columns_name(full_name(layer, key)), columns_name(key), layer, {cols},
                    ElementType::kI32, false});
}

static bool shape_fits(const std::vector<int64_t>& got, const std::vector<int64_t>& want) {
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (want[i] >= 0 ? got[i] != want[i] : got[i] <= 0) return false;
  return true;
}

BoundWeights::BoundWeights(const std::vector<WeightSpec>& spec,
                           const std::vector<WeightView>& views) {
  FGPT_CHECK(views.size() == spec.size(), "weights: expected ", spec.size(), " tensors, got ",
             views.size());
  for (size_t i = 0; i < spec.size(); ++i) {
    const WeightView& v = views[i];
    FGPT_CHECK(v.data != nullptr, "weights: tensor ", spec[i].name, " is empty");
    FGPT_CHECK(v.dtype == spec[i].dtype, "weights: tensor ", spec[i].name, " has dtype ",
               element_name(v.dtype), ", expected ", element_name(spec[i].dtype));
    // A matrix stored [rows, cols] is the row-major layout fastergpt used before the
    // blocked ones (no format stores that shape now): say so, not only that it is wrong.
    const bool row_major = spec[i].matrix && v.shape == spec[i].matrix_shape;
    FGPT_CHECK(shape_fits(v.shape, spec[i].shape), "weights: tensor ", spec[i].name,
               " has shape ", shape_str(v.shape), ", expected ", shape_str(spec[i].shape),
               row_major ? " (weights in the row-major layout of an earlier fastergpt: "
                           "export or save the model again)" : "");
    by_name_[spec[i].name] = &v;
    if (spec[i].matrix) matrices_[spec[i].name] = {spec[i].matrix_shape, spec[i].format};
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

// The kernels index x with these: anything but a permutation of 0..K-1 would read out of
// bounds or drop an input, so it is refused here, naming the tensor.
const int32_t* BoundWeights::column_order(const std::string& name, int64_t cols) const {
  const int32_t* order = static_cast<const int32_t*>(view(name).data);
  std::vector<char> seen(cols, 0);
  for (int64_t k = 0; k < cols; ++k) {
    const int64_t c = order[k];
    FGPT_CHECK(c >= 0 && c < cols, "weights: tensor ", name, " holds ", c, " at position ", k,
               ": column indices must be in 0..", cols - 1);
    FGPT_CHECK(!seen[c], "weights: tensor ", name, " names column ", c, " twice: it must hold "
               "each of the ", cols, " input columns once");
    seen[c] = 1;
  }
  return order;
}

Matrix BoundWeights::matrix(const std::string& name) const {
  const WeightView& v = view(name);
  const auto info = matrices_.find(name);
  FGPT_CHECK(info != matrices_.end(), "weights: tensor ", name, " is not a matrix");
  Matrix m;
  m.format = info->second.second;
  m.data = v.data;
  m.rows = info->second.first[0];
  m.cols = info->second.first[1];
  const ScaleLayout scales = format_info(m.format).scales;
  if (scales == ScaleLayout::kPerRow) m.scales = f32(scale_name(name));
  if (scales == ScaleLayout::kPerGroup) {
    const WeightView& p = view(scale_name(name));
    const int64_t width = p.shape[1];
    FGPT_CHECK(width % 32 == 0, "weights: tensor ", scale_name(name), " has shape ",
               shape_str(p.shape), ": its width must be 32 x the number of groups");
    m.groups = width / 32;
    m.group_size = q4_group_size(m.cols, m.groups);
    FGPT_CHECK(m.groups <= m.cols && (m.groups - 1) * m.group_size < m.cols, "weights: tensor ",
               scale_name(name), " holds ", m.groups, " groups, which no group size (a power of "
               "two >= 8) splits ", m.cols, " columns into");
    m.group_params = static_cast<const uint16_t*>(p.data);
    const std::string columns = columns_name(name);
    if (by_name_.count(columns)) m.columns = column_order(columns, m.cols);
  }
  return m;
}

std::vector<WeightSpec> weight_spec(const ModelConfig& config, WeightFormat format) {
  config.validate();
  return decoder_weight_spec(config, format);
}

void Model::set_collective(std::shared_ptr<Collective> collective) {
  FGPT_CHECK(!collective || backend_->host_memory, "tensor parallelism runs on the CPU; this "
             "model's weights are on the ", backend_->name, " device");
  collective_ = std::move(collective);
}

std::unique_ptr<Model> make_model(const ModelConfig& config, WeightFormat format,
                                  const std::vector<WeightView>& views, const Backend& backend) {
  config.validate();
  return make_decoder(config, format, views, backend);
}

}  // namespace fastergpt
