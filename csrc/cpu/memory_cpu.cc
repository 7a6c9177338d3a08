// The CPU's memory rows of the Backend table: host memory, weights read in
// place (the packing is the CPU kernels' own), and the two small element-wise
// additions the decoder needs outside the kernels.
#include <cstdlib>
#include <cstring>
#include <new>

#include "../core/error.h"
#include "cpu_ops.h"

namespace fastergpt {
namespace cpu {

void* allocate(int64_t bytes) {
  const size_t size = (static_cast<size_t>(bytes) + 63) / 64 * 64;  // aligned_alloc wants a multiple
  void* p = size ? std::aligned_alloc(64, size) : nullptr;
  FGPT_CHECK(p || !size, "out of host memory: allocating ", bytes, " bytes failed");
  if (p) std::memset(p, 0, size);
  return p;
}

void deallocate(void* p) { std::free(p); }

void copy(void* dst, const void* src, int64_t bytes, CopyKind) {
  if (bytes > 0 && dst != src) std::memmove(dst, src, static_cast<size_t>(bytes));
}

Matrix bind_matrix(const Matrix& m, std::vector<DeviceBlock>*) { return m; }

const float* bind_vector(const float* v, int64_t, std::vector<DeviceBlock>*) { return v; }

void add(Context&, const float* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
}

void add_positions(Context&, const float* positions, const TokenSlot* slots, int64_t M, int64_t D,
                   float* x) {
  for (int64_t m = 0; m < M; ++m) {
    const float* pe = positions + slots[m].slot * D;
    for (int64_t i = 0; i < D; ++i) x[m * D + i] += pe[i];
  }
}

}  // namespace cpu
}  // namespace fastergpt
