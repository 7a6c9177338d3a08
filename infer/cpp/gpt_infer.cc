// gpt_infer: GPT text generation from a fastergpt inference directory with the
// Paddle Inference C++ predictor. Tokenizes prompts itself (GPT-2 byte-level
// BPE from the directory's vocab.json + merges.txt), loads the directory's
// operator library, feeds every generation setting as a graph input and
// prints the continuations; --benchmark N reports latency, QPS and tokens/s.
//
// Builds against the official Paddle Inference library (PADDLE_INFERENCE_DIR)
// or the pip wheel's libpaddle.so (paddle_infer_decls.h); this source is the
// same either way. Exit codes: 0 ok, 2 bad input (with a message).
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef FGPT_OFFICIAL_PADDLE_INFERENCE
#include "paddle_inference_api.h"
#else
#include "paddle_infer_decls.h"
#endif

#include "../../csrc/core/error.h"
#include "../../csrc/core/generation_options.h"
#include "../../csrc/core/memory_estimate.h"
#include "../../csrc/core/model_config.h"
#include "gpt2_tokenizer.h"
#include "json_lite.h"
#include "sha256.h"

using fastergpt_cpp::Gpt2Tokenizer;
using fastergpt_cpp::JsonValue;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model_dir;
  std::vector<std::string> prompts;
  std::vector<std::vector<int64_t>> input_ids;  // --input_ids: prompts as token ids
  std::string prompt_file;
  int batch_size = 0;  // 0: all prompts in one batch
  std::map<std::string, double> settings;  // flags given on the command line
  std::vector<std::string> stops;          // --stop: strings that end a row
  std::vector<int64_t> end_token_ids;      // --end_token_ids: ids that end a row
  int benchmark = 0;
  bool print_json = false;
  bool trust_library = false;  // load the directory's library without checking its hash
  std::string op_library;      // a library named by the caller, used instead
};

// Older spellings of some settings' flags (PaddleNLP's scripts used them).
const std::map<std::string, std::string> kFlagAliases = {
    {"--topk", "top_k"}, {"--topp", "top_p"}, {"--max_length", "max_new_tokens"},
    {"--threads", "num_threads"}};

// The usage text: fixed flags, then one flag per row of the engine's settings table.
std::string usage() {
  std::string u =
      "usage: gpt_infer --model_dir DIR [--prompt TEXT]... [--prompt_file FILE]\n"
      "                 [--input_ids 1,2,3]... [--batch_size N] [--benchmark N] [--json]\n"
      "                 [--stop TEXT]... [--end_token_ids 1,2]\n"
      "                 [--op_library FILE | --trust_library] [SETTINGS]\n"
      "the directory's operator library is loaded only if its SHA-256 is the one its\n"
      "config.json recorded; --op_library names another, --trust_library skips the check\n"
      "--input_ids: a prompt as token ids (for tokenizers gpt_infer does not read)\n"
      "--stop: a string that ends a row (matched on the text; not printed), repeatable\n"
      "--end_token_ids: ids that end a row besides eos_token_id\n"
      "settings (default: the export's config.json; aliases --topk --topp --max_length --threads):\n";
  for (const fastergpt::SettingInfo& s : fastergpt::setting_table()) {
    std::string line = "  --" + std::string(s.name);
    if (s.choices) {
      line += " ";
      for (int i = 0; i <= static_cast<int>(s.max); ++i)
        line += std::string(i ? "|" : "") + s.choices[i].name;
    }
    line.resize(std::max<size_t>(line.size() + 1, 38), ' ');
    u += line + s.help + "\n";
  }
  return u;
}

double parse_number(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0') throw UsageError(flag + ": expected a number, got '" + v + "'");
  return d;
}

// A count flag: an integer in [0, 2^31), checked before any cast.
int parse_count(const std::string& flag, const std::string& v) {
  const double d = parse_number(flag, v);
  if (!(d >= 0 && d < 2147483648.0) || d != std::floor(d))
    throw UsageError(flag + " must be an integer >= 0, got '" + v + "'");
  return static_cast<int>(d);
}

// "1,2,3" (or spaces) -> ids: a prompt given as token ids.
std::vector<int64_t> parse_ids(const std::string& flag, const std::string& v) {
  std::vector<int64_t> ids;
  std::string item;
  for (size_t i = 0; i <= v.size(); ++i) {
    if (i == v.size() || v[i] == ',' || v[i] == ' ') {
      if (!item.empty()) {
        const double d = parse_number(flag, item);
        if (d != std::floor(d) || d < 0 || d > 2147483647.0)
          throw UsageError(flag + ": '" + item + "' is not a token id");
        ids.push_back(static_cast<int64_t>(d));
      }
      item.clear();
    } else {
      item += v[i];
    }
  }
  if (ids.empty()) throw UsageError(flag + ": no token ids in '" + v + "'");
  return ids;
}

// The setting a flag names ("--top_k" or an alias), or "" when it names none.
std::string setting_of_flag(const std::string& flag) {
  auto alias = kFlagAliases.find(flag);
  if (alias != kFlagAliases.end()) return alias->second;
  if (flag.rfind("--", 0) != 0) return "";
  for (const fastergpt::SettingInfo& s : fastergpt::setting_table())
    if (flag.compare(2, std::string::npos, s.name) == 0) return s.name;
  return "";
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage().c_str(), stdout);
      std::exit(0);
    }
    if (flag == "--json") {
      o.print_json = true;
      continue;
    }
    if (flag == "--trust_library") {
      o.trust_library = true;
      continue;
    }
    if (i + 1 >= argc) throw UsageError(flag + " needs a value");
    const std::string v = argv[++i];
    if (flag == "--model_dir") o.model_dir = v;
    else if (flag == "--prompt") o.prompts.push_back(v);
    else if (flag == "--input_ids") o.input_ids.push_back(parse_ids(flag, v));
    else if (flag == "--prompt_file") o.prompt_file = v;
    else if (flag == "--stop") o.stops.push_back(v);
    else if (flag == "--end_token_ids") {
      const std::vector<int64_t> ids = parse_ids(flag, v);
      o.end_token_ids.insert(o.end_token_ids.end(), ids.begin(), ids.end());
    }
    else if (flag == "--op_library") o.op_library = v;
    else if (flag == "--batch_size") o.batch_size = parse_count(flag, v);
    else if (flag == "--benchmark") o.benchmark = parse_count(flag, v);
    else if (!setting_of_flag(flag).empty()) {
      const fastergpt::SettingInfo& s = fastergpt::setting_info(setting_of_flag(flag));
      try {
        o.settings[s.name] = s.choices ? static_cast<double>(fastergpt::parse_choice(s, v))
                                       : parse_number(flag, v);
      } catch (const fastergpt::Error& e) {
        throw UsageError(flag + ": " + e.what());
      }
    } else throw UsageError("unknown flag " + flag);
  }
  if (o.model_dir.empty()) throw UsageError("--model_dir is required");
  if (o.batch_size < 0) throw UsageError("--batch_size must be >= 1");
  return o;
}

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string require_file(const std::string& dir, const std::string& name, const char* what) {
  const std::string path = dir + "/" + name;
  if (!is_file(path)) throw UsageError(std::string(what) + " " + path + " is missing");
  return path;
}

std::vector<std::string> read_prompt_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw UsageError("--prompt_file " + path + " cannot be opened");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
  }
  if (lines.empty()) throw UsageError("--prompt_file " + path + " holds no prompt");
  return lines;
}

class Runner {
 public:
  Runner(const Options& o, const JsonValue& info) {
    const JsonValue& files = info.at("files");
    const std::string model = require_file(o.model_dir, files.at("model").string, "model file");
    const std::string params = require_file(o.model_dir, files.at("params").string, "parameter file");
    const std::string op_lib = o.op_library.empty()
        ? require_file(o.model_dir, files.at("op_library").string, "operator library")
        : o.op_library;
    if (!o.op_library.empty() && !is_file(op_lib))
      throw UsageError("--op_library " + op_lib + " does not exist");
    // A library is code: the directory's own runs only as the export recorded it.
    if (o.op_library.empty() && !o.trust_library) {
      const bool recorded = info.has("op_library") && info.at("op_library").has("sha256");
      if (!recorded || fastergpt_cpp::sha256_file(op_lib) != info.at("op_library").at("sha256").string)
        throw UsageError("the operator library " + op_lib + (recorded
            ? " does not match the SHA-256 its config.json recorded (changed after export)"
            : " has no recorded SHA-256 (an older export)") +
            "; it is code, so it is not loaded: re-export, name a library with --op_library, "
            "or pass --trust_library if you trust where the directory came from");
    }
    // The op must be registered before the predictor parses the program.
    if (!dlopen(op_lib.c_str(), RTLD_NOW | RTLD_GLOBAL))
      throw UsageError("cannot load the operator library " + op_lib + ": " + dlerror());
    paddle_infer::Config config(model, params);
    config.DisableGpu();
    config.DisableGlogInfo();
    if (model.size() > 5 && model.compare(model.size() - 5, 5, ".json") == 0) config.EnableNewIR(true);
    try {
      predictor_ = paddle_infer::CreatePredictor(config);
    } catch (const std::exception& e) {
      std::string why = e.what();
      why = why.substr(0, why.find('\n'));
      throw std::runtime_error("Paddle Inference cannot load " + model + " + " + params + " (" + why +
                               "); if the files were damaged, re-export the model");
    }
    for (const std::string& name : predictor_->GetInputNames())
      inputs_[name] = predictor_->GetInputHandle(name).release();  // kept for the whole run
    const auto outs = predictor_->GetOutputNames();
    ids_out_ = predictor_->GetOutputHandle(outs.at(0)).release();
    len_out_ = predictor_->GetOutputHandle(outs.at(1)).release();
    scores_out_ = predictor_->GetOutputHandle(outs.at(3)).release();
    // (A directory exported before the operator had its fifth output has none.)
    if (outs.size() > 4) counts_out_ = predictor_->GetOutputHandle(outs.at(4)).release();
  }

  // Whether the graph reports prompt lookup's drafted and accepted tokens.
  bool reports_counts() const { return counts_out_ != nullptr; }

  // ids/mask [B, L], settings [S] in the export's layout; returns ids [B', T] and lengths [B'].
  // The stop conditions as the graph takes them (csrc/paddle/fastergpt_op.cc): end ids
  // [K] with [-1] for none, stop strings as bytes [S, N] padded with -1, [[-1]] for none.
  void set_stop_conditions(const fastergpt::StopConditions& stop) {
    if (!inputs_.count("stop_strings")) {
      if (!stop.strings.empty() || !stop.end_token_ids.empty())
        throw UsageError("this directory was exported before stop strings and end_token_ids "
                         "were graph inputs; re-export it with export_model.py");
      return;
    }
    end_ids_ = stop.end_token_ids.empty() ? std::vector<int64_t>{-1} : stop.end_token_ids;
    stop_shape_ = {std::max<int>(1, static_cast<int>(stop.strings.size())), 1};
    for (const std::string& str : stop.strings)
      stop_shape_[1] = std::max(stop_shape_[1], static_cast<int>(str.size()));
    stop_bytes_.assign(static_cast<size_t>(stop_shape_[0]) * stop_shape_[1], -1);
    for (size_t i = 0; i < stop.strings.size(); ++i)
      for (size_t j = 0; j < stop.strings[i].size(); ++j)
        stop_bytes_[i * stop_shape_[1] + j] = static_cast<uint8_t>(stop.strings[i][j]);
  }

  void run(const std::vector<int64_t>& ids, const std::vector<int64_t>& mask, int B, int L,
           const std::vector<double>& settings, std::vector<int64_t>* out_ids,
           std::vector<int64_t>* lengths, std::vector<float>* scores, int* T,
           int64_t* drafted = nullptr, int64_t* accepted = nullptr) {
    feed("input_ids", {B, L}, ids.data());
    feed("attention_mask", {B, L}, mask.data());
    feed("settings", {static_cast<int>(settings.size())}, settings.data());
    if (inputs_.count("stop_strings")) {
      feed("end_token_ids", {static_cast<int>(end_ids_.size())}, end_ids_.data());
      feed("stop_strings", stop_shape_, stop_bytes_.data());
    }
    if (!predictor_->Run()) throw std::runtime_error("the predictor failed to run");
    // (An operator error inside Run() arrives as a bare std::exception; main()
    // reports it with a hint, and resolve_settings() catches bad settings before.)
    const std::vector<int> shape = ids_out_->shape();
    *T = shape.at(1);
    out_ids->resize(static_cast<size_t>(shape[0]) * shape[1]);
    if (!out_ids->empty()) ids_out_->CopyToCpu(out_ids->data());
    lengths->resize(len_out_->shape().at(0));
    len_out_->CopyToCpu(lengths->data());
    scores->resize(lengths->size());
    scores_out_->CopyToCpu(scores->data());
    if (counts_out_ && drafted && accepted) {  // added to: a run may take several batches
      int64_t counts[2] = {0, 0};
      counts_out_->CopyToCpu(counts);
      *drafted += counts[0];
      *accepted += counts[1];
    }
  }

 private:
  template <typename T>
  void feed(const std::string& name, const std::vector<int>& shape, const T* data) {
    auto it = inputs_.find(name);
    if (it == inputs_.end()) throw UsageError("the model has no input '" + name + "' (not a fastergpt export?)");
    it->second->Reshape(shape);
    it->second->CopyFromCpu(data);
  }

  std::shared_ptr<paddle_infer::Predictor> predictor_;
  std::map<std::string, paddle_infer::Tensor*> inputs_;
  std::vector<int64_t> end_ids_{-1};
  std::vector<int> stop_shape_{1, 1};
  std::vector<int32_t> stop_bytes_{-1};
  paddle_infer::Tensor* ids_out_ = nullptr;
  paddle_infer::Tensor* len_out_ = nullptr;
  paddle_infer::Tensor* scores_out_ = nullptr;
  paddle_infer::Tensor* counts_out_ = nullptr;
};

// Every setting's value: the export's config.json "generation" defaults, then
// the command line; checked by the engine's own table (the predictor would
// report an operator's error only as a bare std::exception, without its message).
fastergpt::GenerationOptions resolve_settings(const Options& o, const JsonValue& gen,
                                              const JsonValue& model) {
  fastergpt::GenerationOptions g;
  try {
    for (const fastergpt::SettingInfo& s : fastergpt::setting_table()) {
      if (!gen.has(s.name)) continue;
      const JsonValue& v = gen.at(s.name);
      if (v.kind == JsonValue::Kind::kNumber) fastergpt::set_setting(g, s.name, v.number);
      else if (v.kind == JsonValue::Kind::kString && s.choices)
        fastergpt::set_setting(g, s.name, static_cast<double>(fastergpt::parse_choice(s, v.string)));
    }
    fastergpt::set_setting(g, "num_return_sequences", 1);
    fastergpt::set_setting(g, "num_threads", 0);
    // Beam search asked for on the command line (or num_beams > 1 alone, as in
    // transformers) drops the export's sampling defaults: beam search does not
    // use them, and they were not the caller's choice.
    const auto given = [&](const char* name) { return o.settings.count(name) > 0; };
    const double beam = static_cast<double>(fastergpt::DecodeStrategy::kBeamSearch);
    if ((given("decode_strategy") && o.settings.at("decode_strategy") == beam) ||
        (!given("decode_strategy") && given("num_beams") && o.settings.at("num_beams") > 1)) {
      fastergpt::set_setting(g, "decode_strategy", beam);
      for (const fastergpt::SettingInfo& s : fastergpt::setting_table())
        if (std::string(s.help).rfind("sampling: ", 0) == 0 && !given(s.name))
          fastergpt::set_setting(g, s.name, s.default_value);
    }
    if (!o.settings.count("seed"))
      fastergpt::set_setting(g, "seed", static_cast<double>(std::random_device{}() & 0x7fffffff));
    for (const auto& kv : o.settings) fastergpt::set_setting(g, kv.first, kv.second);
    g.validate(static_cast<int64_t>(model.at("vocab_size").number));
  } catch (const fastergpt::Error& e) {
    throw UsageError(e.what());
  }
  return g;
}

// The settings vector in the order the exported graph records (config.json "settings").
std::vector<double> settings_vector(const fastergpt::GenerationOptions& g, const JsonValue& info) {
  if (!info.has("settings") || info.at("settings").kind != JsonValue::Kind::kArray)
    throw UsageError("this directory was exported by an older fastergpt (one graph input per "
                     "setting); re-export it with export_model.py");
  std::vector<double> v;
  for (const JsonValue& name : info.at("settings").array) {
    try {
      v.push_back(fastergpt::setting_info(name.string).get(g));
    } catch (const fastergpt::Error& e) {
      throw UsageError(std::string("the export takes a setting this gpt_infer does not know: ") +
                       e.what());
    }
  }
  return v;
}

// --stop and --end_token_ids, checked as the engine checks them (the predictor would
// report an operator's error without its message). The export's vocabulary, which the
// engine matches stop strings on, is inside the graph: config.json says if it has one.
fastergpt::StopConditions stop_conditions(const Options& o, const JsonValue& info,
                                          const fastergpt::GenerationOptions& options) {
  fastergpt::StopConditions stop;
  stop.end_token_ids = o.end_token_ids;
  stop.strings = o.stops;
  const bool has_vocabulary = info.has("stop_strings") &&
                              info.at("stop_strings").kind == JsonValue::Kind::kBool &&
                              info.at("stop_strings").boolean;
  if (!stop.strings.empty() && !has_vocabulary)
    throw UsageError("--stop: this export has no tokenizer vocabulary to match stop strings on "
                     "(exported before stop strings, or from a tokenizer fastergpt cannot spell); "
                     "re-export it, or use --end_token_ids");
  static const uint8_t no_bytes = 0;
  static const int64_t one_token[2] = {0, 0};  // stands for the graph's own vocabulary
  fastergpt::GenerationOptions checked = options;  // with the settings (beam search refuses stops)
  checked.stop = stop;
  checked.stop.vocabulary = {&no_bytes, one_token, 1};
  try {
    checked.validate(static_cast<int64_t>(info.at("model").at("vocab_size").number));
  } catch (const fastergpt::Error& e) {
    throw UsageError(e.what());
  }
  return stop;
}

// The text up to the first occurrence of any stop string (which is not returned).
std::string cut_at_stop(const std::string& text, const std::vector<std::string>& stops) {
  size_t cut = text.size();
  for (const std::string& s : stops) cut = std::min(cut, text.find(s));
  return text.substr(0, cut);
}

int run_main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  if (!is_dir(o.model_dir)) throw UsageError("--model_dir " + o.model_dir + " does not exist");
  const JsonValue info = fastergpt_cpp::read_json_file(require_file(o.model_dir, "config.json", "config"));
  if (!info.has("fastergpt_export"))
    throw UsageError(o.model_dir + " is not a fastergpt inference directory (export it with export_model.py)");
  std::vector<std::string> prompts = o.prompts;
  if (!o.prompt_file.empty()) {
    const auto more = read_prompt_file(o.prompt_file);
    prompts.insert(prompts.end(), more.begin(), more.end());
  }
  if (prompts.empty() && o.input_ids.empty())
    throw UsageError("give at least one --prompt, a --prompt_file or --input_ids");
  if (!prompts.empty() && !o.input_ids.empty())
    throw UsageError("give text prompts or --input_ids, not both");
  // The tokenizer gpt_infer reads: byte-level BPE with GPT-2's pre-tokenizer, from
  // vocab.json + merges.txt or from tokenizer.json.
  std::unique_ptr<Gpt2Tokenizer> tok;
  std::string no_tokenizer = "no tokenizer file (vocab.json + merges.txt or tokenizer.json)";
  if (is_file(o.model_dir + "/vocab.json") && is_file(o.model_dir + "/merges.txt")) {
    tok = std::make_unique<Gpt2Tokenizer>(o.model_dir + "/vocab.json", o.model_dir + "/merges.txt");
  } else if (is_file(o.model_dir + "/tokenizer.json")) {
    try {
      tok = std::make_unique<Gpt2Tokenizer>(
          Gpt2Tokenizer::from_tokenizer_json(o.model_dir + "/tokenizer.json"));
    } catch (const fastergpt_cpp::UnsupportedTokenizer& e) {
      no_tokenizer = e.what();
    }
  }
  if (!tok && !prompts.empty())
    throw UsageError(no_tokenizer + ": gpt_infer reads byte-level BPE with GPT-2's "
                     "pre-tokenizer only (vocab.json is missing); pass the prompts as --input_ids");
  std::vector<std::vector<int64_t>> encoded = o.input_ids;
  for (const std::string& p : prompts) encoded.push_back(tok->encode(p));
  std::vector<std::string> labels = prompts;  // what a printed row starts with
  for (const auto& ids : o.input_ids) {
    std::string l = "[";
    for (size_t j = 0; j < ids.size(); ++j) l += (j ? " " : "") + std::to_string(ids[j]);
    labels.push_back(l + "] ");
  }
  const fastergpt::GenerationOptions options = resolve_settings(o, info.at("generation"), info.at("model"));
  const std::vector<double> settings = settings_vector(options, info);
  const fastergpt::StopConditions stop = stop_conditions(o, info, options);
  const int64_t max_positions = static_cast<int64_t>(info.at("model").at("n_positions").number);
  const int64_t pad = options.pad_token_id >= 0 ? options.pad_token_id : 0;

  Runner runner(o, info);
  runner.set_stop_conditions(stop);
  const size_t batch = o.batch_size > 0 ? o.batch_size : encoded.size();
  std::vector<std::vector<int64_t>> all_ids;
  std::vector<std::string> texts;
  std::vector<float> scores;  // one per output row, as the op's scores output
  double seconds = 0;
  int64_t tokens = 0, drafted = 0, accepted = 0;  // drafted / accepted: prompt lookup's
  std::vector<int64_t> bench_ids, bench_mask;
  int bench_B = 0, bench_L = 0;
  const int64_t vocab = static_cast<int64_t>(info.at("model").at("vocab_size").number);
  for (size_t start = 0; start < encoded.size(); start += batch) {
    const size_t end = std::min(encoded.size(), start + batch);
    std::vector<std::vector<int64_t>> enc;
    size_t L = 0;
    for (size_t i = start; i < end; ++i) {
      enc.push_back(encoded[i]);
      if (enc.back().empty()) throw UsageError("prompt " + std::to_string(i) + " encodes to no tokens");
      for (int64_t id : enc.back())
        if (id >= vocab)
          throw UsageError("prompt " + std::to_string(i) + ": token id " + std::to_string(id) +
                           " is outside the vocabulary of " + std::to_string(vocab));
      if (static_cast<int64_t>(enc.back().size()) + options.max_new_tokens > max_positions)
        throw UsageError("prompt " + std::to_string(i) + " has " + std::to_string(enc.back().size()) +
                         " tokens; with max_new_tokens=" + std::to_string(options.max_new_tokens) +
                         " it needs " + std::to_string(enc.back().size() + options.max_new_tokens) +
                         " positions but the model has " + std::to_string(max_positions));
      L = std::max(L, enc.back().size());
    }
    const int B = static_cast<int>(enc.size());
    if (info.has("architecture")) {  // the engine's memory check, before the predictor allocates
      if (info.at("architecture").kind != JsonValue::Kind::kString)
        throw UsageError(o.model_dir + "/config.json: 'architecture' must be a string; re-export the model");
      fastergpt::ModelConfig architecture;
      try {
        architecture = fastergpt::parse_architecture(info.at("architecture").string);
      } catch (const fastergpt::Error& e) {
        throw UsageError(o.model_dir + "/config.json: 'architecture': " + e.what() +
                         "; re-export the model");
      }
      int64_t total = 0;
      for (const auto& e : enc) total += static_cast<int64_t>(e.size());
      try {
        fastergpt::check_memory(
            fastergpt::estimate_memory(architecture, B, static_cast<int64_t>(L), total,
                                       static_cast<int64_t>(L), options, options.max_new_tokens),
            options);
      } catch (const fastergpt::Error& e) {
        throw UsageError(e.what());
      }
    }
    std::vector<int64_t> ids(B * L, pad), mask(B * L, 0);
    for (int b = 0; b < B; ++b)
      for (size_t j = 0; j < enc[b].size(); ++j) {
        ids[b * L + L - enc[b].size() + j] = enc[b][j];
        mask[b * L + L - enc[b].size() + j] = 1;
      }
    if (start == 0) {
      bench_ids = ids;
      bench_mask = mask;
      bench_B = B;
      bench_L = static_cast<int>(L);
    }
    std::vector<int64_t> out, lengths;
    std::vector<float> row_scores;
    int T = 0;
    const auto t0 = std::chrono::steady_clock::now();
    runner.run(ids, mask, B, static_cast<int>(L), settings, &out, &lengths, &row_scores, &T,
               &drafted, &accepted);
    scores.insert(scores.end(), row_scores.begin(), row_scores.end());
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (size_t r = 0; r < lengths.size(); ++r) {
      std::vector<int64_t> row(out.begin() + r * T, out.begin() + r * T + lengths[r]);
      tokens += lengths[r];
      texts.push_back(tok ? cut_at_stop(tok->decode(row), stop.strings) : "");
      all_ids.push_back(std::vector<int64_t>(out.begin() + r * T, out.begin() + (r + 1) * T));
    }
  }

  if (o.print_json) {
    std::string js = "{\"ids\": [";
    for (size_t r = 0; r < all_ids.size(); ++r) {
      js += r ? ", [" : "[";
      for (size_t j = 0; j < all_ids[r].size(); ++j) js += (j ? ", " : "") + std::to_string(all_ids[r][j]);
      js += "]";
    }
    js += "], \"texts\": [";
    for (size_t r = 0; r < texts.size(); ++r) js += (r ? ", " : "") + fastergpt_cpp::quote_json(texts[r]);
    js += "], \"scores\": [";
    for (size_t r = 0; r < scores.size(); ++r) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(scores[r]));
      js += (r ? ", " : "") + std::string(buf);
    }
    js += "]";
    if (runner.reports_counts())
      js += ", \"drafted_tokens\": " + std::to_string(drafted) + ", \"accepted_tokens\": " +
            std::to_string(accepted);
    std::printf("%s}\n", js.c_str());
  } else {
    for (size_t r = 0; r < texts.size(); ++r) {
      if (tok) {
        std::printf("[%zu] %s%s\n", r, labels[r].c_str(), texts[r].c_str());
        continue;
      }
      std::string ids;
      for (int64_t id : all_ids[r]) ids += " " + std::to_string(id);
      std::printf("[%zu] %s->%s\n", r, labels[r].c_str(), ids.c_str());
    }
    std::printf("\n%lld tokens in %.1f ms: %.1f tokens/s\n", static_cast<long long>(tokens),
                seconds * 1e3, tokens / seconds);
    if (options.prompt_lookup_num_tokens > 0) {
      if (!runner.reports_counts())
        std::printf("prompt lookup: this exported directory does not report its drafts "
                    "(exported before the graph had them as an output)\n");
      else if (drafted > 0)
        std::printf("prompt lookup: %lld of %lld drafted tokens accepted (%.0f%%)\n",
                    static_cast<long long>(accepted), static_cast<long long>(drafted),
                    100.0 * accepted / drafted);
      else
        std::printf("prompt lookup: 0 of 0 drafted tokens accepted\n");
    }
  }

  if (o.benchmark > 0) {
    std::vector<int64_t> out, lengths;
    std::vector<float> row_scores;
    int T = 0;
    runner.run(bench_ids, bench_mask, bench_B, bench_L, settings, &out, &lengths, &row_scores, &T);  // warm-up
    double total = 0;
    int64_t generated = 0;
    for (int i = 0; i < o.benchmark; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      runner.run(bench_ids, bench_mask, bench_B, bench_L, settings, &out, &lengths, &row_scores, &T);
      total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      for (int64_t n : lengths) generated += n;
    }
    std::printf("benchmark: %d runs of batch %d (prompt length %d): %.2f ms/run, %.2f QPS, "
                "%.1f tokens/s\n", o.benchmark, bench_B, bench_L, total / o.benchmark * 1e3,
                bench_B * o.benchmark / total, generated / total);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "error: %s\n%s", e.what(), usage().c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s%s\n", e.what(),
                 std::string(e.what()) == "std::exception"
                     ? " (raised inside the Paddle predictor, which drops the message; the same "
                       "settings through infer/infer.py --inference_model_dir show it)"
                     : "");
    return 2;
  }
}
