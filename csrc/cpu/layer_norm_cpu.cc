// layer_norm() on the CPU: one row per task, statistics in double so long
// rows of large activations do not lose precision.
#include <algorithm>
#include <cmath>

#include "../core/activation_math.h"
#include "../core/context.h"
#include "cpu_ops.h"

namespace fastergpt {
namespace cpu {

void layer_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma,
                const float* beta, float eps, float* y) {
  ThreadPool& pool = ctx.pool();
  // Rows of a few thousand elements are too cheap to hand to another thread.
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, D));
  pool.parallel_for(M, grain, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* xr = x + m * D;
      float* yr = y + m * D;
      double sum = 0.0;
      for (int64_t i = 0; i < D; ++i) sum += xr[i];
      const double mean = sum / D;
      double sq = 0.0;
      for (int64_t i = 0; i < D; ++i) {
        const double d = xr[i] - mean;
        sq += d * d;
      }
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / D + eps));
      const float mu = static_cast<float>(mean);
      if (beta)
        for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mu) * inv * gamma[i] + beta[i];
      else
        for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mu) * inv * gamma[i];
    }
  });
}

// RMSNorm as transformers computes it: x * rsqrt(mean(x^2) + eps) in float32
// (the sum in double here), then times gamma.
void rms_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma, float eps,
              float* y) {
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, D));
  ctx.pool().parallel_for(M, grain, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* xr = x + m * D;
      float* yr = y + m * D;
      double sq = 0.0;
      for (int64_t i = 0; i < D; ++i) sq += double(xr[i]) * xr[i];
      const float inv = static_cast<float>(1.0 / std::sqrt(sq / D + eps));
      for (int64_t i = 0; i < D; ++i) yr[i] = gamma[i] * (xr[i] * inv);
    }
  });
}

// act(gate) * up, the rows of a gated MLP (LLaMA's SiLU).
void glu(Context& ctx, const float* in, int64_t M, int64_t F, Activation act, float* out) {
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, F));
  ctx.pool().parallel_for(M, grain, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* gate = in + m * 2 * F;
      const float* up = gate + F;
      float* o = out + m * F;
      for (int64_t i = 0; i < F; ++i) o[i] = activate(act, gate[i]) * up[i];
    }
  });
}

}  // namespace cpu
}  // namespace fastergpt
