#include "matrix.h"

#include "error.h"

namespace fastergpt {

const char* element_name(ElementType t) {
  switch (t) {
    case ElementType::kF32: return "float32";
    case ElementType::kF16: return "float16";
    case ElementType::kI8: return "int8";
  }
  return "?";
}

const WeightFormatInfo& format_info(WeightFormat f) {
  for (const auto& info : kWeightFormats)
    if (info.format == f) return info;
  fail("unknown weight format");
}

WeightFormat parse_weight_format(const std::string& name) {
  std::string known;
  for (const auto& info : kWeightFormats) {
    if (name == info.name || (info.alias[0] && name == info.alias)) return info.format;
    known += (known.empty() ? "" : ", ") + std::string(info.name);
  }
  fail("weight_format: unsupported '", name, "' (expected one of ", known, ")");
}

}  // namespace fastergpt
