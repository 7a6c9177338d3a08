// attend() on the CPU: one query over a contiguous run of cached keys/values.
// Callers parallelise over (token, head) pairs; this stays single-threaded.
// Also sum_exp(), the softmax denominator the logits processors use.
#include <cmath>

#include "../core/kernels.h"
#include "simd_kernels.h"

namespace fastergpt {

void attend(const float* q, const float* K, const float* V, int64_t n_keys, int64_t Dh,
            float scale, float* out, float* scores) {
  const auto& k = cpu::simd();
  float max_score = -INFINITY;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = k.dot(q, K + j * Dh, Dh) * scale;
    max_score = scores[j] > max_score ? scores[j] : max_score;
  }
  double total = 0.0;
  for (int64_t j = 0; j < n_keys; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    total += scores[j];
  }
  const float inv = static_cast<float>(1.0 / total);
  for (int64_t i = 0; i < Dh; ++i) out[i] = 0.0f;
  for (int64_t j = 0; j < n_keys; ++j) k.axpy(scores[j] * inv, V + j * Dh, out, Dh);
}

double sum_exp(const float* x, int64_t n, float shift) { return cpu::simd().sum_exp(x, n, shift); }

}  // namespace fastergpt
