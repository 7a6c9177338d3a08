#include "memory_estimate.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>

#include "error.h"

namespace fastergpt {

namespace {
constexpr int64_t kPrefillChunk = 512;  // as generator.cc
std::string mb(int64_t bytes) {
  std::ostringstream os;
  os << (bytes + (1 << 20) - 1) / (1 << 20) << " MB";
  return os.str();
}
}  // namespace

MemoryEstimate estimate_memory(const ModelConfig& c, int64_t batch, int64_t max_prompt,
                               int64_t total_prompt, int64_t padded_length,
                               const GenerationOptions& o, int64_t new_tokens) {
  // Beam search keeps num_beams cache rows per prompt (>= num_return_sequences).
  const bool beams = o.decode_strategy == DecodeStrategy::kBeamSearch;
  const int64_t R = new_tokens > 0 ? (beams ? o.num_beams : o.num_return_sequences) : 1;
  const int64_t rows = batch * R;
  const int64_t positions = max_prompt + new_tokens, V = c.vocab_size;
  const int64_t f = sizeof(float);
  MemoryEstimate m;
  m.kv_cache = 2 * c.num_layers * rows * c.kv_heads() * positions * c.head_dim() *
               kv_element_bytes(o.kv_cache_dtype);
  const int64_t chunk = std::min(kPrefillChunk, std::max<int64_t>(total_prompt, 1));
  const int64_t width = 2 * std::max(c.hidden_size, c.embed_dim()) + c.hidden_size + c.qkv_size() +
                        c.q_size() + c.inner_size * (c.gated_mlp ? 3 : 1);
  // Prompt lookup passes each row's newest token and its draft: logits at every one.
  const int64_t per_row = 1 + (new_tokens > 0 ? o.prompt_lookup_num_tokens : 0);
  m.activations = std::max(chunk, batch * per_row) * width * f;
  if (new_tokens > 0) {
    m.logits = std::max(rows * per_row, chunk) * V * f;
    const bool sampling = o.decode_strategy == DecodeStrategy::kSampling;
    m.row_state = rows * new_tokens * (sizeof(int64_t) + f) * 2 +           // outputs
                  (o.repetition_penalty != 1.0f ? rows * (V + positions * 4) : 0) +  // penalty
                  (sampling ? rows * V * (o.typical_p < 1.0f ? 20 : 8) : 0) +  // sampler scratch
                  (beams ? rows * positions * (4 + 2 * (sizeof(int64_t) + f)) : 0);  // histories
  } else {
    m.logits = (batch * padded_length + chunk) * V * f;  // the returned [B, L, V] and a chunk's
  }
  return m;
}

int64_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return int64_t(1) << 50;
}

// MemAvailable for a request that needs `need` bytes: the last reading while it is under a
// second old and the request needs at most half of it, else a new one. A reading costs
// 10-12 us (the kernel writes out the whole of /proc/meminfo; AMD EPYC family 26), a
// twentieth of a one-token generate() call on the default model; an old reading only ever
// answers requests far inside it. (Atomics, not a mutex: a fork() while another thread
// held one would leave it held in the child. Two calls at once may both read the file.)
int64_t recent_available_memory(int64_t need) {
  static std::atomic<int64_t> last{0}, read_at_ns{0};
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  // (The time is stored after the reading and loaded before it: a fresh time comes with
  // its reading or a later one.)
  const int64_t at = read_at_ns.load(), seen = last.load();
  if (seen > 0 && now - at < 1000000000 && need <= seen / 2) return seen;
  const int64_t fresh = available_memory();
  last.store(fresh);
  read_at_ns.store(now);
  return fresh;
}

void check_memory(const MemoryEstimate& need, const GenerationOptions& o) {
  const bool given = o.max_memory_mb > 0;
  const int64_t budget =
      given ? o.max_memory_mb * (int64_t(1) << 20) : recent_available_memory(need.total());
  FGPT_CHECK(need.total() <= budget, "this request needs about ", mb(need.total()),
             " (KV cache ", mb(need.kv_cache), ", logits ", mb(need.logits), ", activations ",
             mb(need.activations), ", row state ", mb(need.row_state), ") but ",
             given ? "max_memory_mb allows " : "the machine has ", mb(budget),
             given ? "" : " available (max_memory_mb sets a budget)",
             "; lower the batch, num_return_sequences, num_beams, the prompt length or max_new_tokens");
}

}  // namespace fastergpt
