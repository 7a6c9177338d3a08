// measure_read_bandwidth(): how fast this machine streams memory into the
// cores, read the way the kernels read weights (contiguous, SIMD, every
// thread of the pool on its own share, on 2 MB pages as the weights are). The
// roofline of a bandwidth-bound decoder is this figure divided by the bytes of
// weights read per token.
//
// A core's reads are bounded by the misses it keeps in flight, and how many the
// hardware prefetchers keep in flight depends on how many streams they follow: on an
// AMD EPYC (family 26) one stream per thread read 36-38 GB/s where 4 read 45-62 GB/s in
// the same minute, and the matrix kernels, which walk 4 blocks of 16 rows side by side,
// read 4 streams at once. A probe of one stream per thread made a roofline that
// decoding beat by up to 45%. So each thread reads its share as 1, 2, 4 and 8 streams,
// advanced in turn a kilobyte at a time, and the best reading of any is the machine's.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "../core/context.h"
#include "../core/error.h"
#include "simd_kernels.h"

namespace fastergpt {

double measure_read_bandwidth(int64_t bytes, int repeats, Context& ctx) {
  ThreadPool& pool = ctx.pool();
  constexpr int64_t kPiece = 256;                 // floats: 1 KB of a stream, then the next
  constexpr size_t kHugePage = size_t(2) << 20;
  const int64_t n = std::max<int64_t>(1 << 16, bytes / static_cast<int64_t>(sizeof(float)));
  const size_t size = (n * sizeof(float) + kHugePage - 1) / kHugePage * kHugePage;
  std::unique_ptr<float, decltype(&std::free)> owned(
      static_cast<float*>(std::aligned_alloc(kHugePage, size)), &std::free);
  FGPT_CHECK(owned, "measure_read_bandwidth: allocating ", size, " bytes failed");
  float* buffer = owned.get();
#ifdef __linux__
  madvise(buffer, size, MADV_HUGEPAGE);  // before the first touch; refused: 4 KB pages
#endif
  std::fill(buffer, buffer + n, 1.0f);  // written once so every page is resident
  const auto& k = cpu::simd();
  const int threads = pool.num_threads();
  std::vector<float> sink(threads * 16, 0.0f);
  double best = 0.0;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    for (const int64_t streams : {1, 2, 4, 8}) {
      const auto t0 = std::chrono::steady_clock::now();
      pool.parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
        // dot(a, a) reads each element once from memory (the second operand hits L1).
        const int slot = static_cast<int>((b * threads) / n) * 16;
        const int64_t part = (e - b) / streams;  // each stream a contiguous part
        float sum = 0.0f;
        for (int64_t i = 0; i < part; i += kPiece)
          for (int64_t s = 0; s < streams; ++s) {
            const float* p = buffer + b + s * part + i;
            sum += k.dot(p, p, std::min(kPiece, part - i));
          }
        const float* rest = buffer + b + streams * part;
        sink[slot] += sum + k.dot(rest, rest, e - b - streams * part);
      });
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, n * sizeof(float) / s / 1e9);
    }
  }
  volatile float keep = sink[0];  // the sums must not be optimised away
  (void)keep;
  return best;
}

}  // namespace fastergpt
