// measure_read_bandwidth(): how fast this machine streams memory into the
// cores, read the way the kernels read weights (contiguous, SIMD, every
// thread of the pool on its own share). The roofline of a bandwidth-bound
// decoder is this figure divided by the bytes of weights read per token.
#include <algorithm>
#include <chrono>
#include <vector>

#include "../core/context.h"
#include "simd_kernels.h"

namespace fastergpt {

double measure_read_bandwidth(int64_t bytes, int repeats, Context& ctx) {
  ThreadPool& pool = ctx.pool();
  const int64_t n = std::max<int64_t>(1 << 16, bytes / static_cast<int64_t>(sizeof(float)));
  std::vector<float> buffer(n, 1.0f);  // written once so every page is resident
  const auto& k = cpu::simd();
  const int threads = pool.num_threads();
  std::vector<float> sink(threads * 16, 0.0f);
  double best = 0.0;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
      // dot(a, a) reads each element once from memory (the second operand hits L1).
      const int slot = static_cast<int>((b * threads) / n) * 16;
      sink[slot] += k.dot(buffer.data() + b, buffer.data() + b, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, n * sizeof(float) / s / 1e9);
  }
  volatile float keep = sink[0];  // the sums must not be optimised away
  (void)keep;
  return best;
}

}  // namespace fastergpt
