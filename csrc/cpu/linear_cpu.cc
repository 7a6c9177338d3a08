// linear() on the CPU: splits the output features between threads (each
// thread streams its own rows of W once per chunk of tokens) and runs the SIMD
// tile kernels of the chosen instruction set for the matrix's weight format.
#include <algorithm>

#include "../core/error.h"
#include "../core/kernels.h"
#include "simd_kernels.h"

namespace fastergpt {

void linear(const float* x, int64_t M, const Matrix& W, const float* bias, Epilogue epilogue,
            float* y, ThreadPool& pool) {
  const int64_t N = W.rows, K = W.cols;
  const cpu::LinearRowsFn rows = cpu::simd().linear_rows[static_cast<int>(W.format)];
  // Each thread's share is a multiple of 16 output rows (the tile width) and
  // at least kMinMacs of work, so small layers run inline instead of paying
  // for a thread hand-off that costs more than the arithmetic.
  constexpr int64_t kMinMacs = 1 << 16;
  const int64_t grain = std::max<int64_t>(16, (kMinMacs / std::max<int64_t>(1, M * K) + 15) / 16 * 16);
  pool.parallel_for(N, grain, [&](int64_t n0, int64_t n1) {
    rows(x, M, W.data, W.scales, K, N, n0, n1, bias, epilogue, y);
  });
}

void dequantize_row(const Matrix& W, int64_t row, float* out) {
  cpu::simd().dequantize_row[static_cast<int>(W.format)](W.data, W.scales, W.cols, row, out);
}

}  // namespace fastergpt
