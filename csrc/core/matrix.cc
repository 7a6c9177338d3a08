#include "matrix.h"

#include "error.h"

namespace fastergpt {

const WeightFormatInfo& format_info(WeightFormat f) {
  for (const auto& info : kWeightFormats)
    if (info.format == f) return info;
  fail("unknown weight format");
}

WeightFormat parse_weight_format(const std::string& name) {
  for (const auto& info : kWeightFormats)
    if (name == info.name) return info.format;
  if (name == "fp32") return WeightFormat::kF32;
  if (name == "fp16") return WeightFormat::kF16;
  fail("weight_format: unsupported '", name, "' (expected float32, float16 or int8)");
}

}  // namespace fastergpt
