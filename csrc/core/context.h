// Where the engine runs: a backend (the kernel table of one device) and what
// that device owns for a call: its threads (a CUDA stream later), the
// workspace of activations and the KV cache. Buffers are reserved here and
// only grow, so a steady stream of requests allocates nothing after the first
// and a decoding step allocates nothing at all.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "device_array.h"
#include "generation_options.h"
#include "kernels.h"
#include "kv_cache.h"
#include "model_config.h"
#include "thread_pool.h"

namespace fastergpt {

// Activations of the M tokens of one pass (row-major [M, width]), and the
// next-token logits of the rows being decoded [rows, V]. The pass's buffers are
// in the backend's memory; the logits are on the host, where the logits
// processors and samplers read them (a device computes them into
// device_logits and copies them over).
struct Activations {
  explicit Activations(const Backend& backend);
  DeviceArray<float> x, h, h2, qkv, attn, mlp, gated;
  DeviceArray<float> partial;  // [M, D]: a tensor-parallel shard's sublayer output
  DeviceArray<float> device_logits;  // [rows, V] on a device without host memory
  std::vector<float> logits;
  void reserve(int64_t M, const ModelConfig& c);  // all but the logits and partial
  void reserve_logits(int64_t rows, const ModelConfig& c);
  void reserve_partial(int64_t M, const ModelConfig& c);
  int64_t bytes() const;
  void release();  // gives the memory back
};

class Context {
 public:
  Context(const Backend& backend, int num_threads);

  const Backend& backend() const { return backend_; }
  ThreadPool& pool() { return *pool_; }
  KVCache& kv_cache() { return cache_; }
  Activations& activations() { return act_; }

  // Threads for the next call (0 = all cores); re-creates the pool on a change.
  void set_num_threads(int num_threads);
  // What linear() multiplies float weights in, for the next call; throws Error when the
  // backend cannot (bfloat16 without AVX-512 BF16).
  void set_matmul_precision(MatmulPrecision p);
  MatmulPrecision matmul_precision() const { return precision_; }

  // After a call: gives back the KV cache and workspace when they hold more than
  // `keep_bytes`, so one large request does not pin its memory for the life of
  // the process, while a steady stream of ordinary ones still allocates nothing.
  void trim(int64_t keep_bytes = int64_t(512) << 20);

 private:
  const Backend& backend_;
  std::unique_ptr<ThreadPool> pool_;
  KVCache cache_;
  Activations act_;
  MatmulPrecision precision_ = MatmulPrecision::kFloat32;
};

// The process-wide context of `backend`, with `num_threads` threads (the CPU's
// workers; a GPU's context keeps one). Hold the returned lock while using it:
// concurrent calls take turns instead of sharing workers.
Context& shared_context(const Backend& backend, int num_threads, std::unique_lock<std::mutex>* lock);
inline Context& cpu_context(int num_threads, std::unique_lock<std::mutex>* lock) {
  return shared_context(cpu_backend(), num_threads, lock);
}

}  // namespace fastergpt
