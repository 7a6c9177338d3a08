// pybind11 module `fastergpt._engine`: the same engine as the Paddle operator,
// driven from NumPy without Paddle. Thin: it converts arguments, keeps the
// weight arrays alive, releases the GIL while C++ runs and maps engine errors
// to ValueError. It also hands Python the engine's tables (settings, weight
// formats, weight spec), so Python never repeats them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../core/context.h"
#include "../core/error.h"
#include "../core/generation_stream.h"
#include "../core/generator.h"
#include "../core/kernels.h"
#include "../core/logits_processor.h"
#include "../core/model.h"

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using IdArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using SettingValues = std::map<std::string, double>;
using ByteArray = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

namespace {

// The stop conditions of a call (csrc/core/stop_conditions.h) into o->stop. The
// vocabulary, None or (bytes uint8 [*], offsets int64 [V + 1]), is read in place from
// arrays kept in *keep, which must outlive the call.
void read_stop(const std::vector<int64_t>& end_token_ids, const std::vector<std::string>& stop,
               const py::object& vocabulary, fastergpt::GenerationOptions* o,
               std::pair<ByteArray, IdArray>* keep) {
  o->stop.end_token_ids = end_token_ids;
  o->stop.strings = stop;
  if (vocabulary.is_none()) return;
  const auto pair = vocabulary.cast<std::pair<py::object, py::object>>();
  keep->first = pair.first.cast<ByteArray>();
  keep->second = pair.second.cast<IdArray>();
  FGPT_CHECK(keep->first.ndim() == 1 && keep->second.ndim() == 1 && keep->second.size() >= 1,
             "vocabulary: expected (bytes uint8 [N], offsets int64 [V + 1])");
  const int64_t count = keep->second.size() - 1;
  FGPT_CHECK(count == 0 || keep->second.data()[count] <= keep->first.size(),
             "vocabulary: offsets point past the end of the bytes");
  o->stop.vocabulary = {keep->first.data(), keep->second.data(), count};
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

fastergpt::ElementType element_type(const py::array& a, size_t i) {
  if (a.dtype().is(py::dtype::of<float>())) return fastergpt::ElementType::kF32;
  if (a.dtype().is(py::dtype("float16"))) return fastergpt::ElementType::kF16;
  if (a.dtype().is(py::dtype::of<int8_t>())) return fastergpt::ElementType::kI8;
  // NumPy has no bfloat16: its bits travel as uint16 (as Paddle's do)
  if (a.dtype().is(py::dtype::of<uint16_t>())) return fastergpt::ElementType::kBF16;
  if (a.dtype().is(py::dtype::of<int32_t>())) return fastergpt::ElementType::kI32;
  fastergpt::fail("weights[", i, "]: dtype must be float32, float16, int8, uint16 (bfloat16 bits) "
                  "or int32 (a column order)");
}

// Tensor parallelism's all-reduce through a Python callable (e.g. torch.distributed's
// all_reduce over gloo): `all_reduce(array)` must sum the float32 array in place over the
// shards. Called on the thread running the engine, with the GIL taken for the call; a
// Python error becomes a RuntimeError of the engine call (the shards are then out of step).
class PyCollective final : public fastergpt::Collective {
 public:
  PyCollective(py::function all_reduce, int rank, int size)
      : all_reduce_(std::move(all_reduce)), rank_(rank), size_(size) {
    FGPT_CHECK(size >= 1 && rank >= 0 && rank < size, "tensor_parallel: rank must be in [0, size), got rank ",
               rank, " of size ", size);
  }
  ~PyCollective() override {
    py::gil_scoped_acquire gil;
    all_reduce_ = py::function();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce_sum(float* data, int64_t n) override {
    py::gil_scoped_acquire gil;
    try {
      // A view of the engine's buffer (no copy); the capsule owns nothing.
      py::array_t<float> view({n}, {static_cast<py::ssize_t>(sizeof(float))}, data,
                              py::capsule(data, [](void*) {}));
      all_reduce_(view);
    } catch (py::error_already_set& e) {
      throw std::runtime_error(std::string("tensor_parallel: all_reduce failed: ") + e.what());
    }
  }

 private:
  py::function all_reduce_;
  int rank_, size_;
};

class Engine {
 public:
  Engine(const std::string& architecture, const std::string& weight_format,
         const std::vector<py::array>& weights, const py::object& all_reduce, int rank, int size,
         const std::string& device)
      : arrays_(weights) {
    const fastergpt::WeightFormat format = fastergpt::parse_weight_format(weight_format);
    for (size_t i = 0; i < arrays_.size(); ++i) {
      const py::array& a = arrays_[i];
      FGPT_CHECK(a.flags() & py::array::c_style, "weights[", i, "]: array must be C-contiguous");
      views_.push_back({a.data(), std::vector<int64_t>(a.shape(), a.shape() + a.ndim()),
                        element_type(a, i)});
    }
    model_ = fastergpt::make_model(fastergpt::parse_architecture(architecture), format, views_,
                                   fastergpt::backend_for_device(device));
    if (!all_reduce.is_none())
      model_->set_collective(std::make_shared<PyCollective>(all_reduce.cast<py::function>(), rank, size));
  }

  py::dict generate(const IdArray& input_ids, const py::object& attention_mask,
                    const SettingValues& settings, bool return_logprobs,
                    const std::vector<int64_t>& end_token_ids, const std::vector<std::string>& stop,
                    const py::object& vocabulary) const {
    IdArray mask;
    const fastergpt::GenerationInput in = make_input(input_ids, attention_mask, &mask);
    fastergpt::GenerationOptions o = fastergpt::options_from_map(settings);
    o.return_logprobs = return_logprobs;
    std::pair<ByteArray, IdArray> vocabulary_arrays;
    read_stop(end_token_ids, stop, vocabulary, &o, &vocabulary_arrays);
    fastergpt::GenerationResult r;
    {
      py::gil_scoped_release release;
      r = fastergpt::generate(*model_, in, o);
    }
    py::dict out;
    IdArray ids({r.rows, r.steps});
    std::copy(r.ids.begin(), r.ids.end(), ids.mutable_data());
    IdArray lengths({r.rows});
    std::copy(r.lengths.begin(), r.lengths.end(), lengths.mutable_data());
    FloatArray scores({r.rows});
    std::copy(r.scores.begin(), r.scores.end(), scores.mutable_data());
    out["ids"] = ids;
    out["lengths"] = lengths;
    out["scores"] = scores;
    if (o.prompt_lookup_num_tokens > 0) {  // how well the drafts did
      out["drafted_tokens"] = r.drafted_tokens;
      out["accepted_tokens"] = r.accepted_tokens;
    }
    if (return_logprobs) {
      FloatArray lp({r.rows, r.steps});
      std::copy(r.logprobs.begin(), r.logprobs.end(), lp.mutable_data());
      out["logprobs"] = lp;
    }
    return out;
  }

  FloatArray logits(const IdArray& input_ids, const py::object& attention_mask,
                    const SettingValues& settings) const {
    IdArray mask;
    const fastergpt::GenerationInput in = make_input(input_ids, attention_mask, &mask);
    const fastergpt::GenerationOptions o = fastergpt::options_from_map(settings);
    std::vector<float> out;
    {
      py::gil_scoped_release release;
      out = fastergpt::compute_logits(*model_, in, o);
    }
    FloatArray arr({in.batch, in.length, model_->config().vocab_size});
    std::copy(out.begin(), out.end(), arr.mutable_data());
    return arr;
  }

  std::string architecture() const { return fastergpt::format_architecture(model_->config()); }
  const fastergpt::Model& model() const { return *model_; }

 private:
  std::vector<py::array> arrays_;  // owns the memory the model's weights point into
  std::vector<fastergpt::WeightView> views_;
  std::unique_ptr<fastergpt::Model> model_;
};

// A generation run a step at a time (Engine.stream). Holds its engine's Python object,
// so the weights outlive it.
class Stream {
 public:
  Stream(py::object owner, const Engine& engine, const IdArray& input_ids,
         const py::object& attention_mask, const SettingValues& settings,
         const std::vector<int64_t>& end_token_ids)
      : owner_(std::move(owner)) {
    IdArray mask;
    const fastergpt::GenerationInput in = make_input(input_ids, attention_mask, &mask);
    fastergpt::GenerationOptions o = fastergpt::options_from_map(settings);
    o.stop.end_token_ids = end_token_ids;
    py::gil_scoped_release release;
    stream_ = std::make_unique<fastergpt::GenerationStream>(engine.model(), in, o);
  }

  // (tokens int64 [rows], logprobs float32 [rows]) of the next step, -1 for a row that
  // had finished; None when the generation is over.
  py::object next() {
    fastergpt::StepTokens step;
    bool more;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      more = stream_->next(&step);
    }
    if (!more) return py::none();
    IdArray tokens({static_cast<py::ssize_t>(step.tokens.size())});
    FloatArray logprobs({static_cast<py::ssize_t>(step.logprobs.size())});
    std::copy(step.tokens.begin(), step.tokens.end(), tokens.mutable_data());
    std::copy(step.logprobs.begin(), step.logprobs.end(), logprobs.mutable_data());
    return py::make_tuple(tokens, logprobs);
  }
  // Every call takes the stream's lock (after giving up the GIL): a server's request
  // threads join, finish and release while its loop thread steps.
  void finish(int64_t row) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    stream_->finish(row);
  }

  // A continuous batch (Engine.batch): empty, sequences join and leave between steps.
  Stream(py::object owner, const Engine& engine, int64_t capacity, int64_t max_positions,
         const SettingValues& settings)
      : owner_(std::move(owner)) {
    const fastergpt::GenerationOptions o = fastergpt::options_from_map(settings);
    py::gil_scoped_release release;
    stream_ = std::make_unique<fastergpt::GenerationStream>(engine.model(), capacity, max_positions, o);
  }
  int64_t join(const IdArray& prompt, const SettingValues& settings, int64_t rng_row) {
    FGPT_CHECK(prompt.ndim() == 1, "prompt: must be 1-D token ids, got rank ", prompt.ndim());
    std::vector<int64_t> ids(prompt.data(), prompt.data() + prompt.size());
    const fastergpt::GenerationOptions o = fastergpt::options_from_map(settings);
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_->join(ids, o, rng_row);
  }
  std::vector<int64_t> join_many(const std::vector<IdArray>& prompts,
                                 const std::vector<SettingValues>& settings,
                                 const std::vector<int64_t>& rng_rows) {
    std::vector<std::vector<int64_t>> ids;
    for (const IdArray& p : prompts) {
      FGPT_CHECK(p.ndim() == 1, "prompt: must be 1-D token ids, got rank ", p.ndim());
      ids.emplace_back(p.data(), p.data() + p.size());
    }
    std::vector<fastergpt::GenerationOptions> options;
    for (const SettingValues& s : settings) options.push_back(fastergpt::options_from_map(s));
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_->join(ids, options, rng_rows);
  }
  void release(int64_t row) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    stream_->release(row);
  }
  int64_t running() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_->running();
  }
  int64_t free_rows() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return stream_->free_rows();
  }

 private:
  py::object owner_;
  std::unique_ptr<fastergpt::GenerationStream> stream_;
  std::mutex mutex_;
};

py::list weight_spec(const std::string& architecture, const std::string& weight_format) {
  const fastergpt::ModelConfig c = fastergpt::parse_architecture(architecture);
  py::list out;
  for (const auto& s : fastergpt::weight_spec(c, fastergpt::parse_weight_format(weight_format))) {
    py::dict d;
    d["name"] = s.name;
    d["key"] = s.key;
    d["layer"] = s.layer;
    d["shape"] = py::tuple(py::cast(s.shape));
    d["dtype"] = fastergpt::element_name(s.dtype);
    d["matrix"] = s.matrix;
    d["matrix_shape"] = py::tuple(py::cast(s.matrix_shape));
    d["format"] = s.matrix ? fastergpt::format_info(s.format).name : "";
    out.append(d);
  }
  return out;
}

py::list settings_table() {
  static const char* kinds[] = {"int", "float", "choice"};
  py::list out;
  for (const fastergpt::SettingInfo& s : fastergpt::setting_table()) {
    py::dict d;
    d["name"] = s.name;
    d["kind"] = kinds[static_cast<int>(s.kind)];
    d["default"] = s.default_value;
    d["min"] = s.min;
    d["min_inclusive"] = s.min_inclusive;
    d["max"] = s.max;
    d["help"] = s.help;
    py::dict choices;  // name -> value, canonical names first
    if (s.choices)
      for (const fastergpt::ChoiceName* c = s.choices; c->name; ++c) choices[c->name] = c->value;
    d["choices"] = choices;
    out.append(d);
  }
  return out;
}

py::list architecture_table() {
  py::list out;
  for (const fastergpt::ArchitectureField& f : fastergpt::architecture_table()) {
    py::dict d;
    d["name"] = f.name;
    d["help"] = f.help;
    py::list choices;
    if (f.choices)
      for (int i = 0; f.choices[i]; ++i) choices.append(f.choices[i]);
    d["choices"] = choices;
    d["default"] = f.get(fastergpt::ModelConfig());
    out.append(d);
  }
  return out;
}

py::list weight_formats() {
  py::list out;
  for (const fastergpt::WeightFormatInfo& f : fastergpt::kWeightFormats) {
    py::dict d;
    d["name"] = f.name;
    d["alias"] = f.alias;
    d["element"] = fastergpt::element_name(f.element);
    d["bits"] = f.bits;
    static const char* scales[] = {"none", "per_row", "per_group"};
    d["scales"] = scales[static_cast<int>(f.scales)];
    d["vocabulary"] = fastergpt::format_info(f.vocabulary).name;
    d["token_table"] = fastergpt::format_info(f.token_table).name;
    d["description"] = f.description;
    out.append(d);
  }
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
  m.def("weight_spec", &weight_spec, py::arg("architecture"), py::arg("weight_format") = "float32",
        "[{name, key, layer, shape, dtype, matrix}] of the packed weights, in the order the engine "
        "takes them.");
  m.def("settings_table", &settings_table,
        "The generation settings table: [{name, kind, default, min, min_inclusive, max, help, "
        "choices}] in the order of a settings vector.");
  m.def("architecture_table", &architecture_table,
        "The architecture fields: [{name, help, choices, default}] (csrc/core/model_config.h).");
  m.def("weight_formats", &weight_formats,
        "The weight format table: [{name, alias, element, bits, scales, description}].");
  m.def("cpu_isa", &fastergpt::cpu_isa_name, "The SIMD path the CPU kernels use.");
  m.def(
      "sampling_distribution",
      [](const FloatArray& logits, const SettingValues& settings) {
        FGPT_CHECK(logits.ndim() == 2, "logits: must be 2-D [rows, vocab]");
        const fastergpt::GenerationOptions o = fastergpt::options_from_map(settings);
        const int64_t N = logits.shape(0), V = logits.shape(1);
        py::array_t<double> out({N, V});
        double* p = out.mutable_data();
        std::fill(p, p + N * V, 0.0);
        fastergpt::SamplerScratch scratch;
        for (int64_t r = 0; r < N; ++r) {
          const int64_t n = fastergpt::sampling_candidates(logits.data() + r * V, V, o, scratch);
          double mass = 0.0;
          for (int64_t i = 0; i < n; ++i) mass += scratch.weight[i];
          for (int64_t i = 0; i < n; ++i) p[r * V + scratch.order[i]] = scratch.weight[i] / mass;
        }
        return out;
      },
      py::arg("logits"), py::arg("settings"),
      "The probabilities sampling draws each row's token from, float64 [N, V] (zeros "
      "outside the kept candidates), under `settings`' temperature, top_k, top_p, min_p "
      "and typical_p: the engine's own logits processing, for checking it.");
  m.def(
      "validate_request",
      [](const IdArray& input_ids, const py::object& attention_mask,
         const std::string& architecture, const SettingValues& settings,
         const std::vector<int64_t>& end_token_ids, const std::vector<std::string>& stop,
         const py::object& vocabulary) {
        IdArray mask;
        const fastergpt::GenerationInput in = make_input(input_ids, attention_mask, &mask);
        fastergpt::GenerationOptions o = fastergpt::options_from_map(settings);
        std::pair<ByteArray, IdArray> vocabulary_arrays;
        read_stop(end_token_ids, stop, vocabulary, &o, &vocabulary_arrays);
        fastergpt::validate_request(fastergpt::parse_architecture(architecture), in, o);
      },
      py::arg("input_ids"), py::arg("attention_mask"), py::arg("architecture"),
      py::arg("settings"), py::arg("end_token_ids") = std::vector<int64_t>(),
      py::arg("stop") = std::vector<std::string>(), py::arg("vocabulary") = py::none(),
      "generate()'s argument checks alone; raises ValueError naming the problem.");
  m.def(
      "huge_page_stats",
      [] {
        const fastergpt::HugePageStats s = fastergpt::huge_page_stats();
        py::dict d;
        d["asked_bytes"] = s.asked_bytes;
        d["huge_bytes"] = s.huge_bytes;
        d["shared_bytes"] = s.shared_bytes;
        d["seconds"] = s.seconds;
        d["off_reason"] = s.off_reason ? py::object(py::str(s.off_reason)) : py::object(py::none());
        return d;
      },
      "The weights models bound in this process on 2 MB pages (csrc/cpu/huge_pages.h): "
      "asked_bytes (the 2 MB regions at least half weights), huge_bytes (of those, on 2 MB "
      "pages), shared_bytes (of those, left on their pages because another process maps "
      "them too, as after a fork), seconds (spent asking), off_reason (why none are asked "
      "here, or None).");
  m.def("cuda_built", &fastergpt::cuda_built,
        "Whether this build holds the CUDA backend (built where nvcc and cuBLAS were found).");
  m.def("cuda_device_count", &fastergpt::cuda_device_count,
        "How many CUDA GPUs this process sees (0 without the CUDA backend or a GPU).");
  m.def(
      "measure_read_bandwidth",
      [](int64_t megabytes, int num_threads, int repeats) {
        py::gil_scoped_release release;
        std::unique_lock<std::mutex> lock;
        fastergpt::Context& ctx = fastergpt::cpu_context(num_threads, &lock);
        return fastergpt::measure_read_bandwidth(megabytes << 20, repeats, ctx);
      },
      py::arg("megabytes") = 1024, py::arg("num_threads") = 0, py::arg("repeats") = 5,
      "Read bandwidth of this machine in GB/s, read as the kernels read weights: each thread "
      "its own share, on 2 MB pages, as 1, 2, 4 and 8 streams at once; the best reading.");
  py::class_<Engine>(m, "Engine")
      .def(py::init<const std::string&, const std::string&, const std::vector<py::array>&,
                    const py::object&, int, int, const std::string&>(),
           py::arg("architecture"), py::arg("weight_format"), py::arg("weights"),
           py::arg("all_reduce") = py::none(), py::arg("rank") = 0, py::arg("size") = 1,
           py::arg("device") = "cpu",
           "The model over `weights` (packed, kept alive, read in place on the CPU; copied "
           "once to the GPU with device=\"gpu\"). With `all_reduce`, a shard `rank` of `size` "
           "of a tensor-parallel model (fastergpt.tensor_parallel).")
      .def("generate", &Engine::generate, py::arg("input_ids"),
           py::arg("attention_mask") = py::none(), py::arg("settings") = SettingValues(),
           py::arg("return_logprobs") = false, py::arg("end_token_ids") = std::vector<int64_t>(),
           py::arg("stop") = std::vector<std::string>(), py::arg("vocabulary") = py::none(),
           "Runs the whole generation with `settings` ({name: number}, see settings_table; "
           "unnamed settings keep their defaults), ending rows also at `end_token_ids` and "
           "at `stop` strings (matched on `vocabulary`, (bytes, offsets)); returns {'ids', "
           "'lengths', 'scores'[, 'logprobs']}.")
      .def("logits", &Engine::logits, py::arg("input_ids"), py::arg("attention_mask") = py::none(),
           py::arg("settings") = SettingValues(),
           "Next-token logits at every position, float32 [B, L, V] (zeros under padding); of "
           "`settings`, num_threads and matmul_precision apply.")
      .def(
          "stream",
          [](py::object self, const IdArray& input_ids, const py::object& attention_mask,
             const SettingValues& settings, const std::vector<int64_t>& end_token_ids) {
            return std::make_unique<Stream>(self, self.cast<const Engine&>(), input_ids,
                                            attention_mask, settings, end_token_ids);
          },
          py::arg("input_ids"), py::arg("attention_mask") = py::none(),
          py::arg("settings") = SettingValues(), py::arg("end_token_ids") = std::vector<int64_t>(),
          "A generation run a step at a time: .next() -> (tokens, logprobs) or None.")
      .def(
          "batch",
          [](py::object self, int64_t capacity, int64_t max_positions, const SettingValues& settings) {
            return std::make_unique<Stream>(self, self.cast<const Engine&>(), capacity,
                                            max_positions, settings);
          },
          py::arg("capacity"), py::arg("max_positions"), py::arg("settings") = SettingValues(),
          "An empty continuous batch of `capacity` rows: .join/.next/.release.")
      .def_property_readonly("architecture", &Engine::architecture);
  py::class_<Stream>(m, "Stream")
      .def("next", &Stream::next)
      .def("finish", &Stream::finish, py::arg("row"), "Ends a row before the next step.")
      .def("join", &Stream::join, py::arg("prompt"), py::arg("settings"), py::arg("rng_row") = 0,
           "A continuous batch: a sequence joins before the next step; returns its row.")
      .def("join_many", &Stream::join_many, py::arg("prompts"), py::arg("settings"),
           py::arg("rng_rows"), "Several sequences join in one prompt pass; returns their rows.")
      .def("release", &Stream::release, py::arg("row"), "Frees a finished row's slot.")
      .def_property_readonly("running", &Stream::running)
      .def_property_readonly("free_rows", &Stream::free_rows);
}
