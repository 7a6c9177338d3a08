// pybind11 module `fastergpt._engine`: the same engine as the Paddle operator,
// driven from NumPy without Paddle. Thin: it converts arguments, keeps the
// weight arrays alive, releases the GIL while C++ runs and maps engine errors
// to ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <mutex>
#include <string>
#include <vector>

#include "../core/error.h"
#include "../core/generator.h"
#include "../core/kernels.h"
#include "../core/thread_pool.h"
#include "../core/weights.h"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

namespace {

fastergpt::GenerationOptions make_options(const std::string& decode_strategy,
                                          int64_t max_new_tokens, int64_t min_length,
                                          int64_t top_k, float top_p, float temperature,
                                          float repetition_penalty, int64_t eos_token_id,
                                          int64_t pad_token_id, int64_t num_return_sequences,
                                          uint64_t seed, int64_t num_threads) {
  fastergpt::GenerationOptions o;
  if (decode_strategy == "greedy_search" || decode_strategy == "greedy")
    o.strategy = fastergpt::DecodeStrategy::kGreedy;
  else if (decode_strategy == "sampling")
    o.strategy = fastergpt::DecodeStrategy::kSampling;
  else
    fastergpt::fail("decode_strategy: expected 'greedy_search' or 'sampling', got '",
                    decode_strategy, "'");
  o.max_new_tokens = max_new_tokens;
  o.min_length = min_length;
  o.top_k = top_k;
  o.top_p = top_p;
  o.temperature = temperature;
  o.repetition_penalty = repetition_penalty;
  o.eos_token_id = eos_token_id;
  o.pad_token_id = pad_token_id;
  o.num_return_sequences = num_return_sequences;
  o.seed = seed;
  o.num_threads = num_threads;
  return o;
}

// The batch of ids and mask as the engine takes it, with the shape checks.
fastergpt::GenerationInput make_input(const IdArray& input_ids, const py::object& attention_mask,
                                      IdArray* mask_storage) {
  FGPT_CHECK(input_ids.ndim() == 2, "input_ids: must be 2-D [batch, length], got rank ",
             input_ids.ndim());
  fastergpt::GenerationInput in;
  in.input_ids = input_ids.data();
  in.batch = input_ids.shape(0);
  in.length = input_ids.shape(1);
  if (!attention_mask.is_none()) {
    *mask_storage = attention_mask.cast<IdArray>();
    FGPT_CHECK(mask_storage->ndim() == 2 && mask_storage->shape(0) == in.batch &&
                   mask_storage->shape(1) == in.length,
               "attention_mask: shape must equal input_ids' shape");
    in.attention_mask = mask_storage->data();
  }
  return in;
}

class Engine {
 public:
  Engine(int64_t num_layers, int64_t num_heads, float layer_norm_epsilon,
         const std::string& activation, bool tied_lm_head, const std::string& weight_format,
         const std::vector<py::array>& weights)
      : arrays_(weights) {
    const fastergpt::WeightFormat format = fastergpt::parse_weight_format(weight_format);
    std::vector<fastergpt::WeightView> views;
    for (size_t i = 0; i < arrays_.size(); ++i) {
      const py::array& a = arrays_[i];
      FGPT_CHECK(a.flags() & py::array::c_style, "weights[", i, "]: array must be C-contiguous");
      views.push_back({a.data(), std::vector<int64_t>(a.shape(), a.shape() + a.ndim()),
                       element_format(a, i)});
    }
    config_ = fastergpt::infer_config(num_layers, num_heads, layer_norm_epsilon, activation,
                                      tied_lm_head, format, views);
    weights_ = fastergpt::bind_weights(config_, format, views);
  }

  py::dict generate(const IdArray& input_ids, const py::object& attention_mask,
                    int64_t max_new_tokens, const std::string& decode_strategy, int64_t top_k,
                    float top_p, float temperature, float repetition_penalty, int64_t min_length,
                    int64_t eos_token_id, int64_t pad_token_id, int64_t num_return_sequences,
                    uint64_t seed, int64_t num_threads, bool return_logprobs) const {
    IdArray mask;
    const fastergpt::GenerationInput in = make_input(input_ids, attention_mask, &mask);
    fastergpt::GenerationOptions o = make_options(
        decode_strategy, max_new_tokens, min_length, top_k, top_p, temperature,
        repetition_penalty, eos_token_id, pad_token_id, num_return_sequences, seed, num_threads);
    o.return_logprobs = return_logprobs;

    fastergpt::GenerationResult r;
    {
      py::gil_scoped_release release;
      r = fastergpt::generate(config_, weights_, in, o);
    }
    py::dict out;
    IdArray ids({r.rows, r.steps});
    std::copy(r.ids.begin(), r.ids.end(), ids.mutable_data());
    IdArray lengths({r.rows});
    std::copy(r.lengths.begin(), r.lengths.end(), lengths.mutable_data());
    out["ids"] = ids;
    out["lengths"] = lengths;
    if (return_logprobs) {
      FloatArray lp({r.rows, r.steps});
      std::copy(r.logprobs.begin(), r.logprobs.end(), lp.mutable_data());
      out["logprobs"] = lp;
    }
    return out;
  }

  FloatArray logits(const IdArray& input_ids, const py::object& attention_mask,
                    int64_t num_threads) const {
    IdArray mask;
    const fastergpt::GenerationInput in = make_input(input_ids, attention_mask, &mask);
    std::vector<float> out;
    {
      py::gil_scoped_release release;
      out = fastergpt::compute_logits(config_, weights_, in, num_threads);
    }
    FloatArray arr({in.batch, in.length, config_.vocab_size});
    std::copy(out.begin(), out.end(), arr.mutable_data());
    return arr;
  }

  py::dict config() const {
    py::dict d;
    d["num_layers"] = config_.num_layers;
    d["num_heads"] = config_.num_heads;
    d["hidden_size"] = config_.hidden_size;
    d["inner_size"] = config_.inner_size;
    d["vocab_size"] = config_.vocab_size;
    d["max_positions"] = config_.max_positions;
    return d;
  }

 private:
  static fastergpt::WeightFormat element_format(const py::array& a, size_t i) {
    if (a.dtype().is(py::dtype::of<float>())) return fastergpt::WeightFormat::kF32;
    if (a.dtype().is(py::dtype("float16"))) return fastergpt::WeightFormat::kF16;
    if (a.dtype().is(py::dtype::of<int8_t>())) return fastergpt::WeightFormat::kI8;
    fastergpt::fail("weights[", i, "]: dtype must be float32, float16 or int8");
  }

  std::vector<py::array> arrays_;  // owns the memory the bound weights point into
  fastergpt::ModelConfig config_;
  fastergpt::ModelWeights weights_;
};

std::vector<std::tuple<std::string, std::vector<int64_t>, std::string>> weight_spec(
    int64_t num_layers, int64_t num_heads, int64_t hidden_size, int64_t inner_size,
    int64_t vocab_size, int64_t max_positions, bool tied_lm_head, const std::string& weight_format) {
  fastergpt::ModelConfig c;
  c.num_layers = num_layers;
  c.num_heads = num_heads;
  c.hidden_size = hidden_size;
  c.inner_size = inner_size;
  c.vocab_size = vocab_size;
  c.max_positions = max_positions;
  c.tied_lm_head = tied_lm_head;
  c.validate();
  std::vector<std::tuple<std::string, std::vector<int64_t>, std::string>> out;
  for (const auto& s : fastergpt::weight_spec(c, fastergpt::parse_weight_format(weight_format)))
    out.emplace_back(s.name, s.shape, fastergpt::format_info(s.dtype).name);
  return out;
}

}  // namespace

PYBIND11_MODULE(_engine, m) {
  m.doc() = "fastergpt's fused GPT generation engine, from NumPy (no Paddle needed).";
  // Engine errors are bad arguments: plain ValueError, as from every other front end.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const fastergpt::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  m.def("weight_spec", &weight_spec, py::arg("num_layers"), py::arg("num_heads"),
        py::arg("hidden_size"), py::arg("inner_size"), py::arg("vocab_size"),
        py::arg("max_positions"), py::arg("tied_lm_head"), py::arg("weight_format") = "float32",
        "(name, shape, dtype) of the packed weights, in the order the engine takes them.");
  m.def("cpu_isa", &fastergpt::cpu_isa_name, "The SIMD path the CPU kernels use.");
  m.def(
      "validate_request",
      [](const IdArray& input_ids, const py::object& attention_mask, int64_t vocab_size,
         int64_t max_positions, const std::string& decode_strategy, int64_t max_new_tokens,
         int64_t min_length, int64_t top_k, float top_p, float temperature,
         float repetition_penalty, int64_t eos_token_id, int64_t pad_token_id,
         int64_t num_return_sequences, uint64_t seed, int64_t num_threads) {
        IdArray mask;
        const fastergpt::GenerationInput in = make_input(input_ids, attention_mask, &mask);
        fastergpt::ModelConfig c;  // only the vocabulary and the positions matter here
        c.num_layers = c.num_heads = c.hidden_size = c.inner_size = 1;
        c.vocab_size = vocab_size;
        c.max_positions = max_positions;
        fastergpt::validate_request(
            c, in, make_options(decode_strategy, max_new_tokens, min_length, top_k, top_p,
                                temperature, repetition_penalty, eos_token_id, pad_token_id,
                                num_return_sequences, seed, num_threads));
      },
      py::arg("input_ids"), py::arg("attention_mask"), py::arg("vocab_size"),
      py::arg("max_positions"), py::arg("decode_strategy"), py::arg("max_new_tokens"),
      py::arg("min_length"), py::arg("top_k"), py::arg("top_p"), py::arg("temperature"),
      py::arg("repetition_penalty"), py::arg("eos_token_id"), py::arg("pad_token_id"),
      py::arg("num_return_sequences"), py::arg("seed"), py::arg("num_threads"),
      "generate()'s argument checks alone; raises ValueError naming the problem.");
  m.def(
      "measure_read_bandwidth",
      [](int64_t megabytes, int num_threads, int repeats) {
        py::gil_scoped_release release;
        std::lock_guard<std::mutex> lock(fastergpt::pool_mutex());
        return fastergpt::measure_read_bandwidth(megabytes << 20, repeats,
                                                 fastergpt::shared_pool(num_threads));
      },
      py::arg("megabytes") = 1024, py::arg("num_threads") = 0, py::arg("repeats") = 5,
      "Read bandwidth of this machine in GB/s, read as the kernels read weights.");
  py::class_<Engine>(m, "Engine")
      .def(py::init<int64_t, int64_t, float, const std::string&, bool, const std::string&,
                    const std::vector<py::array>&>(),
           py::arg("num_layers"), py::arg("num_heads"), py::arg("layer_norm_epsilon"),
           py::arg("activation"), py::arg("tied_lm_head"), py::arg("weight_format"),
           py::arg("weights"))
      .def("generate", &Engine::generate, py::arg("input_ids"),
           py::arg("attention_mask") = py::none(), py::arg("max_new_tokens") = 20,
           py::arg("decode_strategy") = "greedy_search", py::arg("top_k") = 0,
           py::arg("top_p") = 1.0f, py::arg("temperature") = 1.0f,
           py::arg("repetition_penalty") = 1.0f, py::arg("min_length") = 0,
           py::arg("eos_token_id") = -1, py::arg("pad_token_id") = -1,
           py::arg("num_return_sequences") = 1, py::arg("seed") = 0, py::arg("num_threads") = 0,
           py::arg("return_logprobs") = false,
           "Runs the whole generation; returns {'ids', 'lengths'[, 'logprobs']} arrays.")
      .def("logits", &Engine::logits, py::arg("input_ids"), py::arg("attention_mask") = py::none(),
           py::arg("num_threads") = 0,
           "Next-token logits at every position, float32 [B, L, V] (zeros under padding).")
      .def_property_readonly("config", &Engine::config);
}
