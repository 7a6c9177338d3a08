#include "context.h"
#include "error.h"

#include <pthread.h>

#include <algorithm>
#include <map>

namespace fastergpt {

namespace {
inline void grow(DeviceArray<float>& v, int64_t n) { v.grow(n); }
inline void grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}
int resolve_threads(int n) { return n > 0 ? n : default_num_threads(); }
}  // namespace

Activations::Activations(const Backend& b)
    : x(&b), h(&b), h2(&b), qkv(&b), attn(&b), mlp(&b), gated(&b), partial(&b),
      device_logits(&b) {}

void Activations::reserve(int64_t M, const ModelConfig& c) {
  const int64_t D = c.hidden_size, E = c.embed_dim();
  grow(x, M * std::max(D, E));
  grow(h, M * std::max(D, E));
  grow(h2, M * D);
  grow(qkv, M * c.qkv_size());
  grow(attn, M * c.q_size());
  grow(mlp, M * c.inner_size * (c.gated_mlp ? 2 : 1));
  grow(gated, c.gated_mlp ? M * c.inner_size : 0);
}

void Activations::reserve_partial(int64_t M, const ModelConfig& c) {
  grow(partial, M * c.hidden_size);
}

void Activations::reserve_logits(int64_t rows, const ModelConfig& c) {
  grow(logits, rows * c.vocab_size);
}

int64_t Activations::bytes() const {
  int64_t n = static_cast<int64_t>(logits.capacity() * sizeof(float));
  for (const DeviceArray<float>* v : {&x, &h, &h2, &qkv, &attn, &mlp, &gated, &partial, &device_logits})
    n += v->bytes();
  return n;
}

void Activations::release() {
  for (DeviceArray<float>* v : {&x, &h, &h2, &qkv, &attn, &mlp, &gated, &partial, &device_logits})
    v->release();
  logits = std::vector<float>();
}

Context::Context(const Backend& backend, int num_threads)
    : backend_(backend),
      pool_(std::make_unique<ThreadPool>(backend.host_memory ? resolve_threads(num_threads) : 1)),
      cache_(backend), act_(backend) {}

void Context::set_matmul_precision(MatmulPrecision p) {
  FGPT_CHECK(p == MatmulPrecision::kFloat32 || backend_.bf16_matmul, "matmul_precision=",
             matmul_precision_name(p), ": the ", backend_.name, " backend cannot multiply in it",
             backend_.host_memory ? " (this CPU has no AVX-512 BF16)" : "", "; use float32");
  precision_ = p;
}

void Context::set_num_threads(int num_threads) {
  if (!backend_.host_memory) return;  // a device's kernels do not use the pool
  const int want = resolve_threads(num_threads);
  if (pool_->num_threads() != want) {
    pool_.reset();  // its threads end before the new ones start
    try {
      pool_ = std::make_unique<ThreadPool>(want);
    } catch (...) {
      pool_ = std::make_unique<ThreadPool>(1);  // starts no thread: cannot fail
      throw;
    }
  }
}

void Context::trim(int64_t keep_bytes) {
  const int64_t held = cache_.bytes() + act_.bytes();
  if (held > keep_bytes) {
    cache_.release();
    act_.release();
  }
}

namespace {

// The process-wide contexts (one per backend) and their lock. A fork() copies only the forking
// thread, so a child must not use the parent's pool (its workers do not exist
// there: the first parallel loop would wait for them forever). The fork
// handlers take the lock around fork() (no call is mid-way in the child) and
// give the child a fresh context; the parent's is left behind, unreleased,
// since destroying it would join threads that do not exist.
std::mutex& context_mutex() {
  static std::mutex m;
  return m;
}
std::map<const Backend*, Context*>& context_slots() {
  // Never destroyed (as the contexts): they stay reachable until the process ends.
  static auto* slots = new std::map<const Backend*, Context*>();
  return *slots;
}
void before_fork() { context_mutex().lock(); }
void parent_after_fork() { context_mutex().unlock(); }
void child_after_fork() {
  context_slots().clear();
  context_mutex().unlock();  // locked by this same (and only) thread in before_fork
}

}  // namespace

Context& shared_context(const Backend& backend, int num_threads,
                        std::unique_lock<std::mutex>* lock) {
  static std::once_flag handlers;
  std::call_once(handlers, [] { pthread_atfork(before_fork, parent_after_fork, child_after_fork); });
  *lock = std::unique_lock<std::mutex>(context_mutex());
  Context*& ctx = context_slots()[&backend];
  if (!ctx) ctx = new Context(backend, num_threads);  // lives as long as the process
  ctx->set_num_threads(num_threads);
  return *ctx;
}

}  // namespace fastergpt
