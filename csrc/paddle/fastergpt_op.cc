// The Paddle custom operator `fastergpt_generate`: tensors in, one engine call,
// tensors out. Only structural constants are attributes; every generation
// setting is a runtime input, so an exported graph keeps them adjustable.
//
// Inputs (CPU):
//   input_ids        int64   [B, L]
//   attention_mask   int64   [B, L]   1 real / 0 left padding
//   settings         float64 [S]      one value per name of the `settings_layout`
//                                     attribute (the settings table, csrc/core/
//                                     generation_options.h; a choice is its index)
//   end_token_ids    int64   [K]      more ids that end a row besides eos_token_id;
//                                     -1 entries are ignored ([-1]: none)
//   stop_strings     int32   [S, N]   one stop string's UTF-8 bytes per row, -1 after
//                                     its end; a row of only -1 is none ([[-1]]: none)
//   vocab_bytes      uint8   [*]      the tokenizer's vocabulary as bytes, for the stop
//   vocab_offsets    int64   [V + 1]  strings: token t spells vocab_bytes[offsets[t] ..
//                                     offsets[t+1]) ([0] and offsets [0]: no vocabulary;
//                                     see csrc/core/stop_conditions.h)
//   weights          tensors in weight_spec() order (csrc/core/model.h): matrices in
//                    the weight format's storage (+ float32 row scales for int8)
// Attributes: architecture ("name=value;...", csrc/core/model_config.h: the
//             decoder as data), weight_format, settings_layout ("name,name,...":
//             what `settings` holds, recorded in the graph so any later engine
//             reads an export correctly).
// Outputs: output_ids int64 [B*R, T], lengths int64 [B*R], logprobs float32 [B*R, T],
// scores float32 [B*R] (beam search: transformers' sequences_scores; else sum of logprobs),
// prompt_lookup_counts int64 [2] (prompt lookup's drafted and accepted tokens over the
// batch; 0 and 0 without it).
#include <string>
#include <vector>

#include "paddle/extension.h"

#include "../core/error.h"
#include "../core/generator.h"
#include "../core/model.h"

namespace {

using fastergpt::Error;

void check_cpu(const paddle::Tensor& t, const std::string& name) {
  if (!t.initialized()) fastergpt::fail(name, ": tensor is not initialized");
  if (!t.is_cpu()) fastergpt::fail(name, ": must be a CPU tensor (the Paddle op runs on the CPU; the GPU backend is "
                  "reached through fastergpt.Engine(device=\"gpu\"))");
}

fastergpt::ElementType element_type(const paddle::Tensor& t, const std::string& name) {
  switch (t.dtype()) {
    case paddle::DataType::FLOAT32: return fastergpt::ElementType::kF32;
    case paddle::DataType::FLOAT16: return fastergpt::ElementType::kF16;
    case paddle::DataType::INT8: return fastergpt::ElementType::kI8;
    case paddle::DataType::BFLOAT16: return fastergpt::ElementType::kBF16;
    case paddle::DataType::INT32: return fastergpt::ElementType::kI32;
    default: fastergpt::fail(name, ": dtype must be float32, float16, int8, bfloat16 or int32");
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

fastergpt::GenerationOptions read_settings(const paddle::Tensor& settings,
                                           const std::string& layout) {
  check_cpu(settings, "settings");
  if (settings.dtype() != paddle::DataType::FLOAT64)
    fastergpt::fail("settings: dtype must be float64");
  fastergpt::GenerationOptions o = fastergpt::options_from_values(
      fastergpt::split_layout(layout), settings.data<double>(), settings.numel());
  o.return_logprobs = true;
  return o;
}

// end_token_ids, stop_strings and the vocabulary into options.stop. The vocabulary is
// a view into the tensors, which outlive the call.
void read_stop_conditions(const paddle::Tensor& end_token_ids, const paddle::Tensor& stop_strings,
                          const paddle::Tensor& vocab_bytes, const paddle::Tensor& vocab_offsets,
                          fastergpt::StopConditions* stop) {
  check_cpu(end_token_ids, "end_token_ids");
  if (end_token_ids.dtype() != paddle::DataType::INT64 || end_token_ids.shape().size() != 1)
    fastergpt::fail("end_token_ids: must be a 1-D int64 tensor ([-1] for none)");
  const int64_t* ends = end_token_ids.data<int64_t>();
  for (int64_t i = 0; i < end_token_ids.numel(); ++i)
    if (ends[i] != -1) stop->end_token_ids.push_back(ends[i]);
  check_cpu(stop_strings, "stop_strings");
  if (stop_strings.dtype() != paddle::DataType::INT32 || stop_strings.shape().size() != 2)
    fastergpt::fail("stop_strings: must be a 2-D int32 tensor of bytes ([[-1]] for none)");
  const int32_t* bytes = stop_strings.data<int32_t>();
  const int64_t S = stop_strings.shape()[0], N = stop_strings.shape()[1];
  for (int64_t i = 0; i < S; ++i) {
    std::string text;
    for (int64_t j = 0; j < N && bytes[i * N + j] != -1; ++j) {
      const int32_t b = bytes[i * N + j];
      if (b < 0 || b > 255) fastergpt::fail("stop_strings: row ", i, " holds ", b, ", not a byte");
      text.push_back(static_cast<char>(b));
    }
    if (!text.empty()) stop->strings.push_back(std::move(text));
  }
  check_cpu(vocab_bytes, "vocab_bytes");
  check_cpu(vocab_offsets, "vocab_offsets");
  if (vocab_bytes.dtype() != paddle::DataType::UINT8 || vocab_offsets.dtype() != paddle::DataType::INT64)
    fastergpt::fail("vocab_bytes / vocab_offsets: dtypes must be uint8 / int64");
  const int64_t count = vocab_offsets.numel() - 1;
  if (count > 0 && vocab_offsets.data<int64_t>()[count] > vocab_bytes.numel())
    fastergpt::fail("vocab_offsets: points past the end of vocab_bytes");
  stop->vocabulary = {vocab_bytes.data<uint8_t>(), vocab_offsets.data<int64_t>(), count};
}

std::vector<paddle::Tensor> generate_kernel(
    const paddle::Tensor& input_ids, const paddle::Tensor& attention_mask,
    const paddle::Tensor& settings, const paddle::Tensor& end_token_ids,
    const paddle::Tensor& stop_strings, const paddle::Tensor& vocab_bytes,
    const paddle::Tensor& vocab_offsets, const std::vector<paddle::Tensor>& weights,
    const std::string& architecture, const std::string& weight_format,
    const std::string& settings_layout) {
  try {
    const int64_t* ids_data = id_data(input_ids, "input_ids");
    const int64_t* mask_data = id_data(attention_mask, "attention_mask");
    if (attention_mask.shape() != input_ids.shape())
      fastergpt::fail("attention_mask: shape must equal input_ids' shape");
    fastergpt::GenerationOptions options = read_settings(settings, settings_layout);
    read_stop_conditions(end_token_ids, stop_strings, vocab_bytes, vocab_offsets, &options.stop);

    const fastergpt::WeightFormat format = fastergpt::parse_weight_format(weight_format);
    std::vector<fastergpt::WeightView> views;
    for (size_t i = 0; i < weights.size(); ++i) {
      const std::string name = "weights[" + std::to_string(i) + "]";
      check_cpu(weights[i], name);
      views.push_back({weights[i].data(), weights[i].shape(), element_type(weights[i], name)});
    }
    const auto model =
        fastergpt::make_model(fastergpt::parse_architecture(architecture), format, views);

    fastergpt::GenerationInput in;
    in.input_ids = ids_data;
    in.attention_mask = mask_data;
    in.batch = input_ids.shape()[0];
    in.length = input_ids.shape()[1];
    fastergpt::GenerationResult r = fastergpt::generate(*model, in, options);

    auto ids = paddle::empty({r.rows, r.steps}, paddle::DataType::INT64, paddle::CPUPlace());
    auto lengths = paddle::empty({r.rows}, paddle::DataType::INT64, paddle::CPUPlace());
    auto logprobs = paddle::empty({r.rows, r.steps}, paddle::DataType::FLOAT32, paddle::CPUPlace());
    auto scores = paddle::empty({r.rows}, paddle::DataType::FLOAT32, paddle::CPUPlace());
    auto counts = paddle::empty({2}, paddle::DataType::INT64, paddle::CPUPlace());
    counts.data<int64_t>()[0] = r.drafted_tokens;
    counts.data<int64_t>()[1] = r.accepted_tokens;
    std::copy(r.scores.begin(), r.scores.end(), scores.data<float>());
    std::copy(r.ids.begin(), r.ids.end(), ids.data<int64_t>());
    std::copy(r.lengths.begin(), r.lengths.end(), lengths.data<int64_t>());
    std::copy(r.logprobs.begin(), r.logprobs.end(), logprobs.data<float>());
    return {ids, lengths, logprobs, scores, counts};
  } catch (const Error& e) {
    PD_THROW("fastergpt_generate: ", e.what());
  } catch (const std::bad_alloc&) {
    PD_THROW("fastergpt_generate: out of memory (batch, prompt length or max_new_tokens too large?)");
  } catch (const std::exception& e) {  // never let a C++ exception abort the process
    PD_THROW("fastergpt_generate: ", e.what());
  }
}

std::vector<std::vector<int64_t>> generate_shape(const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<int64_t>&,
                                                 const std::vector<std::vector<int64_t>>&) {
  return {{-1, -1}, {-1}, {-1, -1}, {-1}, {2}};
}

std::vector<paddle::DataType> generate_dtype(const paddle::DataType&, const paddle::DataType&,
                                             const paddle::DataType&, const paddle::DataType&,
                                             const paddle::DataType&, const paddle::DataType&,
                                             const paddle::DataType&,
                                             const std::vector<paddle::DataType>&) {
  return {paddle::DataType::INT64, paddle::DataType::INT64, paddle::DataType::FLOAT32,
          paddle::DataType::FLOAT32, paddle::DataType::INT64};
}

}  // namespace

PD_BUILD_OP(fastergpt_generate)
    .Inputs({"input_ids", "attention_mask", "settings", "end_token_ids", "stop_strings",
             "vocab_bytes", "vocab_offsets", paddle::Vec("weights")})
    .Outputs({"output_ids", "lengths", "logprobs", "scores", "prompt_lookup_counts"})
    .Attrs({"architecture: std::string", "weight_format: std::string",
            "settings_layout: std::string"})
    .SetKernelFn(PD_KERNEL(generate_kernel))
    .SetInferShapeFn(PD_INFER_SHAPE(generate_shape))
    .SetInferDtypeFn(PD_INFER_DTYPE(generate_dtype));
