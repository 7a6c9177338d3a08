// linear() on the CPU: splits the output features between threads (each
// thread streams its own rows of W once per chunk of tokens) and runs the SIMD
// tile kernels of the chosen instruction set for the matrix's weight format
// (int8: activations quantised per row first, then int8 x int8 -> int32).
#include <algorithm>
#include <vector>

#include "../core/error.h"
#include "../core/kernels.h"
#include "simd_kernels.h"

namespace fastergpt {

void linear(const float* x, int64_t M, const Matrix& W, const float* bias, Epilogue epilogue,
            float* y, ThreadPool& pool) {
  const int64_t N = W.rows, K = W.cols;
  const auto& k = cpu::simd();
  // Each thread's share is a multiple of 16 output rows (the tile width) and
  // at least kMinMacs of work, so small layers run inline instead of paying
  // for a thread hand-off that costs more than the arithmetic.
  constexpr int64_t kMinMacs = 1 << 16;
  const int64_t grain = std::max<int64_t>(16, (kMinMacs / std::max<int64_t>(1, M * K) + 15) / 16 * 16);
  if (W.format == WeightFormat::kI8) {
    // Activations are quantised once per call, then every thread reads them.
    thread_local std::vector<int8_t> xs;
    thread_local std::vector<float> sx;
    if (static_cast<int64_t>(xs.size()) < M * K) xs.resize(M * K);
    if (static_cast<int64_t>(sx.size()) < M) sx.resize(M);
    k.quantize_rows(x, M, K, xs.data(), sx.data());
    // Plain pointers: inside the lambda, `xs` would name the worker's own thread_local.
    const int8_t* xq = xs.data();
    const float* xscale = sx.data();
    pool.parallel_for(N, grain, [&](int64_t n0, int64_t n1) {
      k.linear_q8_rows(xq, xscale, M, W.data, W.scales, K, N, n0, n1, bias, epilogue, y);
    });
    return;
  }
  const cpu::LinearRowsFn rows = k.linear_rows[static_cast<int>(W.format)];
  pool.parallel_for(N, grain, [&](int64_t n0, int64_t n1) {
    rows(x, M, W.data, W.scales, K, N, n0, n1, bias, epilogue, y);
  });
}

void dequantize_row(const Matrix& W, int64_t row, float* out) {
  cpu::simd().dequantize_row[static_cast<int>(W.format)](W.data, W.scales, W.cols, row, out);
}

}  // namespace fastergpt
