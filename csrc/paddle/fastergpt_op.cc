// The Paddle custom operator `fastergpt_generate`: tensors in, one engine call,
// tensors out. Only structural constants are attributes; every generation
// setting is a runtime input, so an exported graph keeps them adjustable.
//
// Inputs (CPU):
//   input_ids        int64   [B, L]
//   attention_mask   int64   [B, L]   1 real / 0 left padding
//   max_new_tokens, min_length, top_k, eos_token_id, pad_token_id, seed,
//   decode_strategy (0 greedy, 1 sampling), num_return_sequences, num_threads
//                    int64   [1] each
//   top_p, temperature, repetition_penalty
//                    float32 [1] each
//   weights          tensors in weight_spec() order (csrc/core/weights.h): matrices in
//                    the weight format (float32 / float16 / int8 + float32 row scales)
// Attributes: num_layers, num_heads, layer_norm_epsilon, activation, tied_lm_head,
//             weight_format.
// Outputs: output_ids int64 [B*R, T], lengths int64 [B*R], logprobs float32 [B*R, T].
#include <string>
#include <vector>

#include "paddle/extension.h"

#include "../core/error.h"
#include "../core/generator.h"
#include "../core/weights.h"

namespace {

using fastergpt::Error;

void check_cpu(const paddle::Tensor& t, const char* name) {
  if (!t.initialized()) fastergpt::fail(name, ": tensor is not initialized");
  if (!t.is_cpu()) fastergpt::fail(name, ": must be a CPU tensor (this build has no GPU kernels)");
}

int64_t scalar_int(const paddle::Tensor& t, const char* name) {
  check_cpu(t, name);
  if (t.numel() != 1) fastergpt::fail(name, ": expected one value, got ", t.numel());
  if (t.dtype() == paddle::DataType::INT64) return t.data<int64_t>()[0];
  if (t.dtype() == paddle::DataType::INT32) return t.data<int32_t>()[0];
  fastergpt::fail(name, ": expected an int64 or int32 tensor");
}

float scalar_float(const paddle::Tensor& t, const char* name) {
  check_cpu(t, name);
  if (t.numel() != 1) fastergpt::fail(name, ": expected one value, got ", t.numel());
  if (t.dtype() == paddle::DataType::FLOAT32) return t.data<float>()[0];
  if (t.dtype() == paddle::DataType::FLOAT64) return static_cast<float>(t.data<double>()[0]);
  fastergpt::fail(name, ": expected a float32 tensor");
}

fastergpt::WeightFormat element_format(const paddle::Tensor& t, const std::string& name) {
  switch (t.dtype()) {
    case paddle::DataType::FLOAT32: return fastergpt::WeightFormat::kF32;
    case paddle::DataType::FLOAT16: return fastergpt::WeightFormat::kF16;
    case paddle::DataType::INT8: return fastergpt::WeightFormat::kI8;
    default: fastergpt::fail(name, ": dtype must be float32, float16 or int8");
  }
}

// Zero-size tensors are never allocated by Paddle, so they are let through
// here (with no data) for the engine to report as an empty batch or prompt.
const int64_t* id_data(const paddle::Tensor& t, const char* name) {
  if (t.dtype() != paddle::DataType::INT64) fastergpt::fail(name, ": dtype must be int64");
  if (t.shape().size() != 2)
    fastergpt::fail(name, ": must be 2-D [batch, length], got rank ", t.shape().size());
  if (t.numel() == 0) return nullptr;
  check_cpu(t, name);
  return t.data<int64_t>();
}

std::vector<paddle::Tensor> generate_kernel(
    const paddle::Tensor& input_ids, const paddle::Tensor& attention_mask,
    const paddle::Tensor& max_new_tokens, const paddle::Tensor& min_length,
    const paddle::Tensor& top_k, const paddle::Tensor& top_p, const paddle::Tensor& temperature,
    const paddle::Tensor& repetition_penalty, const paddle::Tensor& eos_token_id,
    const paddle::Tensor& pad_token_id, const paddle::Tensor& seed,
    const paddle::Tensor& decode_strategy, const paddle::Tensor& num_return_sequences,
    const paddle::Tensor& num_threads, const std::vector<paddle::Tensor>& weights, int num_layers,
    int num_heads, float layer_norm_epsilon, const std::string& activation, bool tied_lm_head,
    const std::string& weight_format) {
  try {
    const int64_t* ids_data = id_data(input_ids, "input_ids");
    const int64_t* mask_data = id_data(attention_mask, "attention_mask");
    if (attention_mask.shape() != input_ids.shape())
      fastergpt::fail("attention_mask: shape must equal input_ids' shape");

    const fastergpt::WeightFormat format = fastergpt::parse_weight_format(weight_format);
    std::vector<fastergpt::WeightView> views;
    for (size_t i = 0; i < weights.size(); ++i) {
      const std::string name = "weights[" + std::to_string(i) + "]";
      check_cpu(weights[i], name.c_str());
      views.push_back({weights[i].data(), weights[i].shape(), element_format(weights[i], name)});
    }
    const fastergpt::ModelConfig config = fastergpt::infer_config(
        num_layers, num_heads, layer_norm_epsilon, activation, tied_lm_head, format, views);
    const fastergpt::ModelWeights bound = fastergpt::bind_weights(config, format, views);

    fastergpt::GenerationOptions o;
    const int64_t strategy = scalar_int(decode_strategy, "decode_strategy");
    if (strategy != 0 && strategy != 1)
      fastergpt::fail("decode_strategy: expected 0 (greedy) or 1 (sampling), got ", strategy);
    o.strategy = strategy == 0 ? fastergpt::DecodeStrategy::kGreedy
                               : fastergpt::DecodeStrategy::kSampling;
    o.max_new_tokens = scalar_int(max_new_tokens, "max_new_tokens");
    o.min_length = scalar_int(min_length, "min_length");
    o.top_k = scalar_int(top_k, "top_k");
    o.top_p = scalar_float(top_p, "top_p");
    o.temperature = scalar_float(temperature, "temperature");
    o.repetition_penalty = scalar_float(repetition_penalty, "repetition_penalty");
    o.eos_token_id = scalar_int(eos_token_id, "eos_token_id");
    o.pad_token_id = scalar_int(pad_token_id, "pad_token_id");
    o.seed = static_cast<uint64_t>(scalar_int(seed, "seed"));
    o.num_return_sequences = scalar_int(num_return_sequences, "num_return_sequences");
    o.num_threads = scalar_int(num_threads, "num_threads");
    o.return_logprobs = true;

    fastergpt::GenerationInput in;
    in.input_ids = ids_data;
    in.attention_mask = mask_data;
    in.batch = input_ids.shape()[0];
    in.length = input_ids.shape()[1];
    fastergpt::GenerationResult r = fastergpt::generate(config, bound, in, o);

    auto ids = paddle::empty({r.rows, r.steps}, paddle::DataType::INT64, paddle::CPUPlace());
    auto lengths = paddle::empty({r.rows}, paddle::DataType::INT64, paddle::CPUPlace());
    auto logprobs = paddle::empty({r.rows, r.steps}, paddle::DataType::FLOAT32, paddle::CPUPlace());
    std::copy(r.ids.begin(), r.ids.end(), ids.data<int64_t>());
    std::copy(r.lengths.begin(), r.lengths.end(), lengths.data<int64_t>());
    std::copy(r.logprobs.begin(), r.logprobs.end(), logprobs.data<float>());
    return {ids, lengths, logprobs};
  } catch (const Error& e) {
    PD_THROW("fastergpt_generate: ", e.what());
  } catch (const std::bad_alloc&) {
    PD_THROW("fastergpt_generate: out of memory (batch, prompt length or max_new_tokens too large?)");
  }
}

std::vector<std::vector<int64_t>> generate_shape(
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<int64_t>&, const std::vector<int64_t>&,
    const std::vector<std::vector<int64_t>>&) {
  return {{-1, -1}, {-1}, {-1, -1}};
}

std::vector<paddle::DataType> generate_dtype(
    const paddle::DataType&, const paddle::DataType&, const paddle::DataType&,
    const paddle::DataType&, const paddle::DataType&, const paddle::DataType&,
    const paddle::DataType&, const paddle::DataType&, const paddle::DataType&,
    const paddle::DataType&, const paddle::DataType&, const paddle::DataType&,
    const paddle::DataType&, const paddle::DataType&, const std::vector<paddle::DataType>&) {
  return {paddle::DataType::INT64, paddle::DataType::INT64, paddle::DataType::FLOAT32};
}

}  // namespace

PD_BUILD_OP(fastergpt_generate)
    .Inputs({"input_ids", "attention_mask", "max_new_tokens", "min_length", "top_k", "top_p",
             "temperature", "repetition_penalty", "eos_token_id", "pad_token_id", "seed",
             "decode_strategy", "num_return_sequences", "num_threads", paddle::Vec("weights")})
    .Outputs({"output_ids", "lengths", "logprobs"})
    .Attrs({"num_layers: int", "num_heads: int", "layer_norm_epsilon: float",
            "activation: std::string", "tied_lm_head: bool", "weight_format: std::string"})
    .SetKernelFn(PD_KERNEL(generate_kernel))
    .SetInferShapeFn(PD_INFER_SHAPE(generate_shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(generate_dtype));
