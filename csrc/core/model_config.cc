#include "model_config.h"

#include <cmath>
#include <cstdlib>
#include <iomanip>
#include <sstream>

#include "error.h"
#include "table_value.h"

namespace fastergpt {
namespace {

std::vector<ArchitectureField> build_table() {
  std::vector<ArchitectureField> t;
#define FGPT_ARCH_ROW(name_, type, def, choices_, help_)                             \
  t.push_back(ArchitectureField{                                                      \
      #name_, choices_, help_,                                                        \
      [](ModelConfig& c, double v) { c.name_ = from_double<type>(v); },               \
      [](const ModelConfig& c) { return to_double(c.name_); }});
  FGPT_ARCHITECTURE(FGPT_ARCH_ROW)
#undef FGPT_ARCH_ROW
  return t;
}

const ArchitectureField& field(const std::string& name) {
  for (const ArchitectureField& f : architecture_table())
    if (name == f.name) return f;
  fail("architecture: unknown field '", name, "'");
}

void set_field(ModelConfig& c, const std::string& name, const std::string& value) {
  const ArchitectureField& f = field(name);
  if (f.choices) {
    for (int i = 0; f.choices[i]; ++i)
      if (value == f.choices[i]) return f.set(c, i);
    std::string names;
    for (int i = 0; f.choices[i]; ++i) names += (i ? ", " : "") + std::string(f.choices[i]);
    fail("architecture: ", name, " '", value, "' is not supported (expected one of ", names, ")");
  }
  char* end = nullptr;
  const double v = std::strtod(value.c_str(), &end);
  FGPT_CHECK(!value.empty() && *end == '\0' && std::isfinite(v) && std::fabs(v) < 1e15,
             "architecture: ", name, " must be a finite number, got '", value, "'");
  f.set(c, v);
}

}  // namespace

const std::vector<ArchitectureField>& architecture_table() {
  static const std::vector<ArchitectureField> table = build_table();
  return table;
}

ModelConfig architecture_from_map(const std::map<std::string, std::string>& fields) {
  ModelConfig c;
  for (const auto& kv : fields) set_field(c, kv.first, kv.second);
  return c;
}

ModelConfig parse_architecture(const std::string& text) {
  std::map<std::string, std::string> fields;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ';')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    FGPT_CHECK(eq != std::string::npos, "architecture: expected name=value, got '", item, "'");
    fields[item.substr(0, eq)] = item.substr(eq + 1);
  }
  // Checked here, where text becomes a config: an empty or partial string gave zeros
  // (num_heads = 0), and a caller that sized memory from it divided by them.
  ModelConfig c = architecture_from_map(fields);
  c.validate();
  return c;
}

std::string format_architecture(const ModelConfig& c) {
  std::ostringstream os;
  os << std::setprecision(9);
  for (const ArchitectureField& f : architecture_table()) {
    os << f.name << "=";
    if (f.choices) os << f.choices[static_cast<int>(f.get(c))];
    else os << f.get(c);
    os << ";";
  }
  return os.str();
}

void ModelConfig::validate() const {
  FGPT_CHECK(num_layers >= 1, "num_layers must be >= 1, got ", num_layers);
  FGPT_CHECK(num_heads >= 1, "num_heads must be >= 1, got ", num_heads);
  FGPT_CHECK(hidden_size >= 1, "hidden_size must be >= 1, got ", hidden_size);
  FGPT_CHECK(head_size > 0 || hidden_size % num_heads == 0, "hidden_size (", hidden_size,
             ") must be a multiple of num_heads (", num_heads, ") unless head_size is given");
  FGPT_CHECK(num_kv_heads >= 0 && kv_heads() <= num_heads && num_heads % kv_heads() == 0,
             "num_kv_heads (", num_kv_heads, ") must divide num_heads (", num_heads, ")");
  FGPT_CHECK(inner_size >= 1, "inner_size must be >= 1, got ", inner_size);
  FGPT_CHECK(vocab_size >= 1, "vocab_size must be >= 1, got ", vocab_size);
  FGPT_CHECK(max_positions >= 1, "max_positions must be >= 1, got ", max_positions);
  FGPT_CHECK(embed_size >= 0, "embed_size must be >= 0, got ", embed_size);
  FGPT_CHECK(std::isfinite(norm_epsilon) && norm_epsilon > 0.0f,
             "norm_epsilon must be > 0, got ", norm_epsilon);
  if (positions == Positions::kRotary) {
    FGPT_CHECK(rotary_dims() >= 2 && rotary_dims() <= head_dim() && rotary_dims() % 2 == 0,
               "rotary_dim (", rotary_dims(), ") must be even and in [2, head size ", head_dim(),
               "]");
    FGPT_CHECK(std::isfinite(rotary_base) && rotary_base > 0.0f, "rotary_base must be > 0");
    FGPT_CHECK(std::isfinite(rope_factor) && rope_factor > 0.0f, "rope_factor must be > 0");
  }
  FGPT_CHECK(sliding_window >= 0, "sliding_window must be >= 0, got ", sliding_window);
}

}  // namespace fastergpt
