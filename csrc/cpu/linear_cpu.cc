// linear() on the CPU: splits the output features between threads (each
// thread streams its own rows of W once per chunk of tokens) and runs the SIMD
// tile kernels of the chosen instruction set.
#include "../core/error.h"
#include "../core/kernels.h"
#include "simd_kernels.h"

namespace fastergpt {

void linear(const float* x, int64_t M, const Matrix& W, const float* bias, Epilogue epilogue,
            float* y, ThreadPool& pool) {
  FGPT_CHECK(W.format == WeightFormat::kF32, "linear: unsupported weight format");
  const int64_t N = W.rows, K = W.cols;
  const float* w = W.f32();
  const auto& k = cpu::simd();
  // Grain of 16 output rows keeps each thread's share a multiple of the tile
  // width and big enough that scheduling costs nothing next to the reads.
  pool.parallel_for(N, 16, [&](int64_t n0, int64_t n1) {
    k.linear_f32_rows(x, M, w, K, N, n0, n1, bias, epilogue, y);
  });
}

}  // namespace fastergpt
