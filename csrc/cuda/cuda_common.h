// What the CUDA backend's files share: error checks that become the engine's
// Error (never an abort), the process's device state (one stream for every
// kernel and copy, so they stay in order; the cuBLAS handle) and scratch
// buffers for the small host arrays a pass hands its kernels.
//
// The CUDA backend's Matrix: `data` is row-major [rows, cols] device memory in
// the format's element type (float32 or IEEE half); bind_matrix unpacks the
// CPU's 16-row blocks into it once, when a model is made.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>

#include "../core/error.h"
#include "../core/kernels.h"

namespace fastergpt {
namespace cuda {

// Throws Error("CUDA error in <what>: <the runtime's message>") on failure.
void check(cudaError_t status, const char* what);
void check(cublasStatus_t status, const char* what);
// The last launch's error (a bad configuration shows here, not at the launch).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

struct DeviceState {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
};
// The current GPU's state, made on first use; throws Error when no GPU is visible.
DeviceState& state();

// Held by every op while it uploads its indices and enqueues its kernels: the scratch
// buffers are the process's, and two threads (two streams of tokens, each with a context
// of its own) must not interleave one's upload with the other's launch.
std::mutex& enqueue_mutex();
using EnqueueLock = std::lock_guard<std::mutex>;

// Scratch device memory per use, grown on demand and kept: a step allocates nothing.
enum class Scratch { kTokens, kSlots, kSources, kHalfInput, kProduct, kScores, kCount };
void* scratch(Scratch which, int64_t bytes);
// `bytes` of host memory in scratch `which`, copied on the stream (in order with the
// kernels that read them) unless the scratch holds these very bytes already: every
// layer of a pass asks for the same slots, and one copy serves them all.
const void* upload_bytes(Scratch which, const void* host, int64_t bytes);
template <class T>
const T* upload(Scratch which, const T* host, int64_t n) {
  return static_cast<const T*>(upload_bytes(which, host, n * static_cast<int64_t>(sizeof(T))));
}

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// The elements of a Matrix row as floats.
__device__ inline float element(const float* p, int64_t i) { return p[i]; }
__device__ inline float element(const __half* p, int64_t i) { return __half2float(p[i]); }

}  // namespace cuda
}  // namespace fastergpt
