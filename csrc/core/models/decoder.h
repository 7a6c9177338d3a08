// The decoder every family runs (see decoder.cc): its weight spec and its model.
#pragma once

#include <memory>
#include <vector>

#include "../model.h"

namespace fastergpt {

std::vector<WeightSpec> decoder_weight_spec(const ModelConfig& config, WeightFormat format);
std::unique_ptr<Model> make_decoder(const ModelConfig& config, WeightFormat format,
                                    const std::vector<WeightView>& views, const Backend& backend);

}  // namespace fastergpt
