// layer_norm() on the CPU: one row per task, statistics in double so long
// rows of large activations do not lose precision.
#include <algorithm>
#include <cmath>

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
      for (int64_t i = 0; i < D; ++i) yr[i] = (xr[i] - mu) * inv * gamma[i] + beta[i];
    }
  });
}

}  // namespace cpu
}  // namespace fastergpt
