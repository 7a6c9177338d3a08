// The operations the decoder is built from, as one table per device (the
// device seam). Model code calls `ctx.backend().linear(...)` and never names a
// device; each device fills a Backend in its own directory (csrc/cpu/
// cpu_backend.cc today, csrc/cuda/ later). Shapes use M rows (tokens), K
// inputs, N outputs, D hidden, Dh head size. All activations are float32,
// row-major, contiguous, in the device's memory.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "matrix.h"
#include "model_config.h"

namespace fastergpt {

class Context;
class KVCache;

// What linear() does with each result element after adding the bias.
enum class Epilogue {
  kStore,       // y = xW^T + b
  kGeluTanh,    // y = gelu_tanh(xW^T + b)
  kGeluErf,     // y = gelu_erf(xW^T + b)
  kAccumulate,  // y += xW^T + b  (the residual add, fused)
  kRelu,        // y = max(0, xW^T + b)
};

// The epilogue that applies an (ungated) MLP activation; SiLU only gates (glu).
inline Epilogue activation_epilogue(Activation a) {
  switch (a) {
    case Activation::kGeluTanh: return Epilogue::kGeluTanh;
    case Activation::kGeluErf: return Epilogue::kGeluErf;
    case Activation::kRelu: return Epilogue::kRelu;
    case Activation::kSilu: break;
  }
  return Epilogue::kStore;
}

// Rotary embedding tables of a model: cos/sin [P, rotary_dim / 2] of each
// position's angles, and how the pairs are laid out in a head.
struct RotaryTable {
  const float* cos = nullptr;
  const float* sin = nullptr;
  int64_t half = 0;          // rotary_dim / 2
  bool interleaved = false;  // pairs (2i, 2i+1) (GPT-J); else (i, i + half) (NeoX, LLaMA)
};

// Which way a Backend::copy goes; "device" is the backend's memory (host memory on the CPU).
enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice };

// Device memory the model keeps for its weights (freed when the last holder goes).
using DeviceBlock = std::shared_ptr<void>;

// A span of host memory: one weight tensor where its owner keeps it.
struct HostBytes {
  const void* data;
  int64_t bytes;
};

// Which cache row and slot one token of a pass belongs to.
struct TokenSlot {
  int64_t row;
  int64_t slot;  // position in the row's cache = its position id
};

struct Backend {
  const char* name;  // "cpu", "cuda"
  // The device's pointers are host pointers (the CPU): the generator and the adapters may
  // read activations in place; elsewhere they copy.
  bool host_memory;
  // Its attention reads a float16 KV cache (kv_cache_dtype=float16); else float32 only.
  bool half_kv_cache;
  // Its linear() takes matmul_precision=bfloat16 for float32 / float16 weights (on the CPU:
  // when it has AVX-512 BF16); else the setting is refused.
  bool bf16_matmul;

  // ---- memory -------------------------------------------------------------------------
  // `bytes` of device memory, zero-filled, 64-byte aligned; throws Error (naming the
  // device and the size) when there is not enough. Freed by deallocate.
  void* (*allocate)(int64_t bytes);
  void (*deallocate)(void* p);
  // Copies `bytes` (the two ranges must not overlap); a copy to the host returns once the
  // data is there.
  void (*copy)(void* dst, const void* src, int64_t bytes, CopyKind kind);
  // A packed matrix (host memory, the weight format's storage, see matrix.h) as this
  // device's kernels read it: the CPU reads the packing itself (returns `m`); a device
  // with its own layout converts and uploads it once, keeping the memory in `keep`.
  // Throws Error naming the format when the device has no kernels for it.
  Matrix (*bind_matrix)(const Matrix& m, std::vector<DeviceBlock>* keep);
  // n floats of host memory on the device (the CPU returns `v`).
  const float* (*bind_vector)(const float* v, int64_t n, std::vector<DeviceBlock>* keep);
  // Called once per model with every weight tensor's host memory, before bind_matrix: the
  // CPU, which streams the weights in place, asks for them to sit on 2 MB pages
  // (csrc/cpu/huge_pages.h); a device that uploads its own copies does nothing.
  void (*place_weights)(const std::vector<HostBytes>& weights);

  // ---- operations -----------------------------------------------------------------------
  // dst[n] += src[n] (a tensor-parallel shard's reduced sublayer output into x).
  void (*add)(Context& ctx, const float* src, int64_t n, float* dst);
  // x[m, :D] += positions[slots[m].slot, :D] (learned positions after a projection).
  void (*add_positions)(Context& ctx, const float* positions, const TokenSlot* slots, int64_t M,
                        int64_t D, float* x);

  // y[M, N] (op)= x[M, K] * W[N, K]^T + bias[N]; bias may be null. W in any
  // weight format; accumulation is float32 for every format.
  void (*linear)(Context& ctx, const float* x, int64_t M, const Matrix& W, const float* bias,
                 Epilogue epilogue, float* y);

  // x[m, :] = row tokens[m] of `table` (dequantised), + positions[slots[m].slot, :]
  // when `positions` is not null, for m < M: the embedding lookup.
  void (*embed)(Context& ctx, const Matrix& table, const float* positions, const int64_t* tokens,
                const TokenSlot* slots, int64_t M, float* x);

  // y[M, D] = layer_norm(x[M, D]) * gamma + beta (beta may be null); y may be x.
  void (*layer_norm)(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma,
                     const float* beta, float eps, float* y);

  // y[M, D] = x / sqrt(mean(x^2) + eps) * gamma (RMSNorm); y may be x.
  void (*rms_norm)(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma,
                   float eps, float* y);

  // Rotates the first 2 * table.half dims of every query and key head of
  // qkv[M, (H + 2 KVH) * Dh] (q heads, then k heads, then v) in place, token m
  // at angle row slots[m].slot.
  void (*rotary)(Context& ctx, float* qkv, const TokenSlot* slots, int64_t M, int64_t H,
                 int64_t KVH, int64_t Dh, const RotaryTable& table);

  // out[M, F] = act(in[m, :F]) * in[m, F:2F]: a gated MLP's activation.
  void (*glu)(Context& ctx, const float* in, int64_t M, int64_t F, Activation act, float* out);

  // Stores the K/V of M tokens (in qkv rows laid out as attention() reads them) at their
  // slots in `layer`, attending nothing: the last layer of a pass that wants only some
  // tokens' hidden states (a prompt's last) stores every token's K/V, then attends for
  // those alone.
  void (*store_kv)(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
                   const TokenSlot* slots, int64_t M);

  // Causal attention of M tokens over their rows' caches in `layer`: token m's
  // K/V (in qkv[m] = q (H heads) | k (KVH heads) | v (KVH heads), Dh each) are
  // stored at slots[m] first, then each query head h attends with KV head
  // h / (H / KVH) over slots [0, slots[m].slot] of its row; out[M, H*Dh].
  void (*attention)(Context& ctx, KVCache& cache, int64_t layer, int64_t H, const float* qkv,
                    const TokenSlot* slots, int64_t M, float* out);
};

// The CPU backend (csrc/cpu/cpu_backend.cc).
const Backend& cpu_backend();

// The CUDA backend (csrc/cuda/cuda_backend.cu) on the current GPU. Throws Error saying why
// when this build has no CUDA (csrc/core/no_cuda.cc) or no GPU is visible.
const Backend& cuda_backend();
// Whether this build holds the CUDA backend, and how many GPUs it sees (0 without one).
bool cuda_built();
int cuda_device_count();

// A backend by its device name: "cpu", or "gpu" / "cuda"; throws Error naming the value.
const Backend& backend_for_device(const std::string& device);

// Single-row helpers of the CPU kernels that the logits processors and tests use.
// sum_i exp(x[i] - shift) over n floats, SIMD (~2 ulp per term); shift >= max(x).
double sum_exp(const float* x, int64_t n, float shift);
// The largest of n floats (NaNs skipped) and, in *first, the lowest index holding it, SIMD
// in one pass (-inf when nothing is larger; *first = -1 when every value is NaN).
float max_first(const float* x, int64_t n, int64_t* first);
// x[i] = exp(x[i]) in place over n floats <= 0, SIMD (within 1 ulp; from -87 down the vector
// exp's floor, e^-87, which a caller that needs 0 there sets itself): the sampler's weights.
void exp_in_place(float* x, int64_t n);
// out[K] = row `row` of W as floats (scales applied).
void dequantize_row(const Matrix& W, int64_t row, float* out);

// Best of `repeats` timed passes reading `bytes` of memory with every thread
// of `ctx`, in GB/s: the machine's read bandwidth for the roofline.
double measure_read_bandwidth(int64_t bytes, int repeats, Context& ctx);

// Name of the SIMD path the CPU kernels picked at run time ("avx512", "avx2", "generic").
const char* cpu_isa_name();

// The CPU's weights on 2 MB pages (csrc/cpu/huge_pages.h), over the process's life.
struct HugePageStats {
  int64_t asked_bytes = 0;  // 2 MB regions of weights asked for
  int64_t huge_bytes = 0;   // of those, regions the kernel put (or had) on 2 MB pages
  int64_t shared_bytes = 0;  // of those, regions left alone: another process maps them too
  double seconds = 0;       // spent asking (the collapses copy the regions)
  const char* off_reason = nullptr;  // why nothing is asked on this system, or null
};
HugePageStats huge_page_stats();

}  // namespace fastergpt
