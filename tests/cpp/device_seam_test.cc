// The device seam without a GPU: an emulated device whose memory the host cannot
// touch. Its allocations are mmap'd and kept PROT_NONE except while one of its own
// operations (or copies) runs, when the CPU kernels do the work. The whole engine
// then runs on it: every family's layout, every weight format, greedy, sampling with
// several return sequences, beam search, prompt lookup, the logits of every position
// and a continuous batch. A host-side read or write of device memory anywhere in the
// generator, the decoder or the KV cache faults (the test dies), and every result must
// equal the CPU backend's bit for bit. This is what a device with memory of its own
// (CUDA) relies on, checked where no GPU is.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/core/context.h"
#include "../../csrc/core/error.h"
#include "../../csrc/core/generation_stream.h"
#include "../../csrc/core/generator.h"
#include "../../csrc/core/model.h"
#include "../../csrc/cpu/cpu_ops.h"
#include "check.h"
#include "test_data.h"

using namespace fastergpt;
using fgpt_test::element_bytes;
using fgpt_test::RandomWeights;

namespace {

// ---- the emulated device's memory -----------------------------------------------------
std::map<void*, size_t>& regions() {
  static std::map<void*, size_t> r;
  return r;
}
int& open_depth() {
  static int d = 0;
  return d;
}
void protect_all(int prot) {
  for (const auto& [p, n] : regions()) CHECK(mprotect(p, n, prot) == 0);
}
// Device memory is readable and writable while one of these lives.
struct Open {
  Open() {
    if (open_depth()++ == 0) protect_all(PROT_READ | PROT_WRITE);
  }
  ~Open() {
    if (--open_depth() == 0) protect_all(PROT_NONE);
  }
};

void* allocate(int64_t bytes) {
  if (bytes <= 0) return nullptr;
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t n = (static_cast<size_t>(bytes) + page - 1) / page * page;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw Error("emulated device: out of memory");
  std::memset(p, 0, n);
  regions()[p] = n;
  if (open_depth() == 0) mprotect(p, n, PROT_NONE);
  return p;
}
void deallocate(void* p) {
  if (!p) return;
  auto it = regions().find(p);
  if (it == regions().end()) return;
  munmap(p, it->second);
  regions().erase(it);
}
void copy(void* dst, const void* src, int64_t bytes, CopyKind) {
  Open open;
  if (bytes > 0) std::memmove(dst, src, static_cast<size_t>(bytes));
}
const void* upload(const void* host, int64_t bytes, std::vector<DeviceBlock>* keep) {
  void* d = allocate(bytes);
  keep->push_back(DeviceBlock(d, deallocate));
  copy(d, host, bytes, CopyKind::kHostToDevice);
  return d;
}
Matrix bind_matrix(const Matrix& m, std::vector<DeviceBlock>* keep) {
  const WeightFormatInfo& f = format_info(m.format);
  int64_t n = 1;
  for (int64_t v : storage_shape(m.format, m.rows, m.cols)) n *= v;
  Matrix d = m;
  d.data = upload(m.data, n * element_bytes(f.element), keep);
  if (m.scales) d.scales = static_cast<const float*>(upload(m.scales, m.rows * 4, keep));
  if (m.group_params)
    d.group_params = static_cast<const uint16_t*>(
        upload(m.group_params, q4_blocks(m.rows) * m.groups * 32 * 2, keep));
  return d;
}
const float* bind_vector(const float* v, int64_t n, std::vector<DeviceBlock>* keep) {
  return static_cast<const float*>(upload(v, n * 4, keep));
}

// Its own copies are what it reads: the host memory needs no placing (as on a GPU).
void place_weights(const std::vector<HostBytes>&) {}

// ---- its operations: the CPU kernels, with the memory open --------------------------------
void add(Context& c, const float* s, int64_t n, float* d) { Open o; cpu::add(c, s, n, d); }
void add_positions(Context& c, const float* p, const TokenSlot* s, int64_t M, int64_t D, float* x) {
  Open o;
  cpu::add_positions(c, p, s, M, D, x);
}
void linear(Context& c, const float* x, int64_t M, const Matrix& W, const float* b, Epilogue e, float* y) {
  Open o;
  cpu::linear(c, x, M, W, b, e, y);
}
void embed(Context& c, const Matrix& t, const float* p, const int64_t* tok, const TokenSlot* s,
           int64_t M, float* x) {
  Open o;
  cpu::embed(c, t, p, tok, s, M, x);
}
void layer_norm(Context& c, const float* x, int64_t M, int64_t D, const float* g, const float* b,
                float eps, float* y) {
  Open o;
  cpu::layer_norm(c, x, M, D, g, b, eps, y);
}
void rms_norm(Context& c, const float* x, int64_t M, int64_t D, const float* g, float eps, float* y) {
  Open o;
  cpu::rms_norm(c, x, M, D, g, eps, y);
}
void rotary(Context& c, float* qkv, const TokenSlot* s, int64_t M, int64_t H, int64_t KVH, int64_t Dh,
            const RotaryTable& t) {
  Open o;
  cpu::rotary(c, qkv, s, M, H, KVH, Dh, t);
}
void glu(Context& c, const float* in, int64_t M, int64_t F, Activation a, float* out) {
  Open o;
  cpu::glu(c, in, M, F, a, out);
}
void store_kv(Context& c, KVCache& cache, int64_t l, int64_t H, const float* qkv, const TokenSlot* s,
              int64_t M) {
  Open o;
  cpu::store_kv(c, cache, l, H, qkv, s, M);
}
void attention(Context& c, KVCache& cache, int64_t l, int64_t H, const float* qkv, const TokenSlot* s,
               int64_t M, float* out) {
  Open o;
  cpu::attention(c, cache, l, H, qkv, s, M, out);
}

const Backend& emulated_device() {
  static const Backend b{"emulated",  /*host_memory=*/false, /*half_kv_cache=*/false, /*bf16_matmul=*/false,
                         allocate,    deallocate, copy,
                         bind_matrix, bind_vector, place_weights, add, add_positions, linear, embed,
                         layer_norm, rms_norm, rotary, glu, store_kv, attention};
  return b;
}

// ---- models ---------------------------------------------------------------------------
ModelConfig base() {
  ModelConfig c;
  c.num_layers = 2;
  c.num_heads = 4;
  c.hidden_size = 64;
  c.inner_size = 96;
  c.vocab_size = 67;
  c.max_positions = 48;
  return c;
}

std::vector<std::pair<std::string, ModelConfig>> families() {
  std::vector<std::pair<std::string, ModelConfig>> out;
  ModelConfig gpt2 = base();
  out.push_back({"gpt2", gpt2});
  ModelConfig llama = base();
  llama.num_kv_heads = 2;
  llama.norm = Norm::kRmsNorm;
  llama.positions = Positions::kRotary;
  llama.activation = Activation::kSilu;
  llama.gated_mlp = true;
  llama.qkv_bias = llama.out_bias = llama.mlp_bias = false;
  llama.tied_lm_head = false;
  out.push_back({"llama (GQA, gated, rotary halves)", llama});
  ModelConfig opt = base();
  opt.embed_size = 32;  // project_in / project_out, learned positions added after
  opt.residual = Residual::kPostNorm;
  opt.activation = Activation::kRelu;
  out.push_back({"opt-350m (projections, post-norm)", opt});
  ModelConfig gptj = base();
  gptj.positions = Positions::kRotary;
  gptj.rotary_dim = 8;
  gptj.rotary_interleaved = true;
  gptj.residual = Residual::kParallel;
  gptj.tied_lm_head = false;
  gptj.lm_head_bias = true;
  out.push_back({"gptj (parallel, interleaved partial rotary)", gptj});
  ModelConfig neox = base();
  neox.positions = Positions::kRotary;
  neox.rotary_dim = 4;
  neox.residual = Residual::kParallelTwoNorms;
  neox.activation = Activation::kGeluErf;
  out.push_back({"neox (parallel, two norms)", neox});
  return out;
}

void same(const GenerationResult& a, const GenerationResult& b, const std::string& what) {
  const bool ok = a.rows == b.rows && a.steps == b.steps && a.ids == b.ids &&
                  a.lengths == b.lengths && a.logprobs == b.logprobs && a.scores == b.scores &&
                  a.drafted_tokens == b.drafted_tokens && a.accepted_tokens == b.accepted_tokens;
  if (!ok) {
    std::fprintf(stderr, "%s: the emulated device's result differs from the CPU's\n", what.c_str());
    ++fgpt_test::failures();
  }
}

void run_all(const std::string& name, const ModelConfig& c, WeightFormat f) {
  const RandomWeights w(c, f, 7);
  const auto on_cpu = make_model(c, f, w.views);
  const auto on_device = make_model(c, f, w.views, emulated_device());
  const std::string tag = name + " " + format_info(f).name;
  // Two ragged rows [2, 7], left-padded; the second repeats itself (prompt lookup finds
  // drafts in it).
  const std::vector<int64_t> ids2 = {0, 0, 5, 9, 14, 3, 11, 12, 13, 11, 12, 13, 11, 12};
  const std::vector<int64_t> mask2 = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  const GenerationInput batch{ids2.data(), mask2.data(), 2, 7};
  GenerationOptions greedy;
  greedy.max_new_tokens = 10;
  greedy.eos_token_id = -1;
  greedy.num_threads = 1;
  GenerationOptions sampling = greedy;
  sampling.decode_strategy = DecodeStrategy::kSampling;
  sampling.top_k = 5;
  sampling.seed = 3;
  sampling.num_return_sequences = 2;
  GenerationOptions beams = greedy;
  beams.decode_strategy = DecodeStrategy::kBeamSearch;
  beams.num_beams = 3;
  beams.num_return_sequences = 2;
  GenerationOptions lookup = greedy;
  lookup.prompt_lookup_num_tokens = 3;
  for (const auto& [mode, o] : {std::pair<const char*, GenerationOptions>{"greedy", greedy},
                                {"sampling", sampling}, {"beam search", beams},
                                {"prompt lookup", lookup}})
    same(generate(*on_device, batch, o), generate(*on_cpu, batch, o), tag + " " + mode);
  GenerationOptions one_thread;
  one_thread.num_threads = 1;
  if (compute_logits(*on_device, batch, one_thread) != compute_logits(*on_cpu, batch, one_thread)) {
    std::fprintf(stderr, "%s logits: the emulated device's differ from the CPU's\n", tag.c_str());
    ++fgpt_test::failures();
  }
  // A continuous batch: two sequences join, one at the start and one after two steps.
  std::vector<std::vector<int64_t>> streamed(2);
  for (const Model* model : {on_cpu.get(), on_device.get()}) {
    GenerationStream stream(*model, 2, 40, greedy);
    const int64_t a = stream.join({5, 9, 14, 3}, greedy);
    StepTokens step;
    std::vector<int64_t>& got = streamed[model == on_device.get()];
    for (int i = 0; stream.next(&step); ++i) {
      if (i == 1) stream.join({11, 12, 13, 11}, greedy);
      got.insert(got.end(), step.tokens.begin(), step.tokens.end());
    }
    CHECK(a == 0);
  }
  if (streamed[0] != streamed[1]) {
    std::fprintf(stderr, "%s continuous batch: the emulated device's tokens differ\n", tag.c_str());
    ++fgpt_test::failures();
  }
}

}  // namespace

int main() {
  for (const auto& [name, config] : families())
    for (const WeightFormatInfo& f : kWeightFormats) run_all(name, config, f.format);
  // What is left allocated belongs to the shared contexts and nothing else.
  std::printf("emulated device: %zu regions alive at the end\n", regions().size());
  TEST_MAIN_END();
}
