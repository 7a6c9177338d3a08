// layer_norm() and rms_norm() on the CPU: rows split between threads, each row through
// the ISA's norm kernel (simd_norm.inc); and glu().
#include <algorithm>
#include <cmath>

#include "../core/context.h"
#include "cpu_ops.h"
#include "simd_kernels.h"

namespace fastergpt {
namespace cpu {

void layer_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma,
                const float* beta, float eps, float* y) {
  // Rows of a few thousand elements are too cheap to hand to another thread.
  const int64_t grain = ctx.pool().even_grain(M, 8192 / std::max<int64_t>(1, D));
  const auto rows = simd().layer_norm_rows;
  ctx.pool().parallel_for(M, grain, [&](int64_t m0, int64_t m1) {
    request_lines(x + m0 * D, (m1 - m0) * D * 4);
    rows(x + m0 * D, m1 - m0, D, gamma, beta, eps, y + m0 * D);
  });
}

// RMSNorm as transformers computes it: x * rsqrt(mean(x^2) + eps) in float32
// (the sum in double here), then times gamma.
void rms_norm(Context& ctx, const float* x, int64_t M, int64_t D, const float* gamma, float eps,
              float* y) {
  const int64_t grain = ctx.pool().even_grain(M, 8192 / std::max<int64_t>(1, D));
  const auto rows = simd().rms_norm_rows;
  ctx.pool().parallel_for(M, grain, [&](int64_t m0, int64_t m1) {
    request_lines(x + m0 * D, (m1 - m0) * D * 4);
    rows(x + m0 * D, m1 - m0, D, gamma, eps, y + m0 * D);
  });
}

// act(gate) * up, the rows of a gated MLP (LLaMA's SiLU).
void glu(Context& ctx, const float* in, int64_t M, int64_t F, Activation act, float* out) {
  const int64_t grain = ctx.pool().even_grain(M, 16384 / std::max<int64_t>(1, F));
  const auto rows = simd().glu_rows;
  ctx.pool().parallel_for(M, grain, [&](int64_t m0, int64_t m1) {
    rows(in + m0 * 2 * F, m1 - m0, F, act, out + m0 * F);
  });
}

}  // namespace cpu
}  // namespace fastergpt
