#include "context.h"

#include <algorithm>

namespace fastergpt {

namespace {
inline void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}
int resolve_threads(int n) { return n > 0 ? n : default_num_threads(); }
}  // namespace

void Activations::reserve(int64_t M, const ModelConfig& c) {
  const int64_t D = c.hidden_size, E = c.embed_dim();
  grow(x, M * std::max(D, E));
  grow(h, M * std::max(D, E));
  grow(h2, M * D);
  grow(qkv, M * c.qkv_size());
  grow(attn, M * c.q_size());
  grow(mlp, M * c.inner_size * (c.gated_mlp ? 2 : 1));
  grow(gated, c.gated_mlp ? M * c.inner_size : 0);
  grow(logits, M * c.vocab_size);
}

Context::Context(const Backend& backend, int num_threads)
    : backend_(backend), pool_(std::make_unique<ThreadPool>(resolve_threads(num_threads))) {}

void Context::set_num_threads(int num_threads) {
  const int want = resolve_threads(num_threads);
  if (pool_->num_threads() != want) {
    pool_.reset();
    pool_ = std::make_unique<ThreadPool>(want);
  }
}

Context& cpu_context(int num_threads, std::unique_lock<std::mutex>* lock) {
  static std::mutex mutex;
  *lock = std::unique_lock<std::mutex>(mutex);
  static Context ctx(cpu_backend(), num_threads);
  ctx.set_num_threads(num_threads);
  return ctx;
}

}  // namespace fastergpt
