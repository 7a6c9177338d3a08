// linear() on the CPU: splits the output features between threads (each
// thread streams its own rows of W once per chunk of tokens) and runs the SIMD
// tile kernels of the chosen instruction set for the matrix's weight format.
// A format whose row says kInt8Rows gets its activations quantised per row
// once per call (read in an act-order matrix's column order, matrix.h),
// then multiplies int8 x int8 -> int32; a float format under
// matmul_precision=bfloat16 gets them as bfloat16 pairs. Each thread first requests
// every line of its input at once (request_lines, cpu_ops.h).
#include <algorithm>
#include <vector>

#include "../core/context.h"
#include "../core/error.h"
#include "cpu_ops.h"
#include "simd_kernels.h"

namespace fastergpt {
namespace cpu {

void linear(Context& ctx, const float* x, int64_t M, const Matrix& W, const float* bias,
            Epilogue epilogue, float* y) {
  const int64_t N = W.rows, K = W.cols;
  const FormatKernels& k = simd().of(W.format);
  const WeightFormatInfo& format = format_info(W.format);
  ThreadPool& pool = ctx.pool();
  // Each thread's share is a multiple of 16 output rows (the tile width) and
  // at least kMinMacs of arithmetic or kMinBytes of weights to read (what paces a
  // product of a few token rows), so small layers run inline instead of paying for
  // a thread hand-off that costs more than the work; the shares as even as that
  // allows. (By arithmetic alone, the default model's 256 x 256 float32 attention
  // output ran on one thread at batch 1: 3.2 us, against 2.1 us on two at 2 rows.)
  constexpr int64_t kMinMacs = 1 << 16, kMinBytes = 1 << 16;
  const int64_t row_bytes = std::max<int64_t>(1, K * format.bits / 8);
  const int64_t by_work = std::min(kMinMacs / std::max<int64_t>(1, M * K), kMinBytes / row_bytes);
  const int64_t min_rows = std::max<int64_t>(16, (by_work + 15) / 16 * 16);
  const int64_t grain = pool.even_grain(N, min_rows, 16);
  const ActivationInput input = format.activations;
  if (input != ActivationInput::kFloat) {
    thread_local std::vector<int8_t> xs;
    thread_local std::vector<float> sx;
    if (static_cast<int64_t>(xs.size()) < M * K) xs.resize(M * K);
    if (static_cast<int64_t>(sx.size()) < M) sx.resize(M);
    request_lines(x, M * K * 4);
    simd().quantize_rows(x, M, K, W.columns, xs.data(), sx.data());
    // Plain pointers: inside the lambda, `xs` would name the worker's own thread_local.
    const int8_t* xq = xs.data();
    const float* xscale = sx.data();
    if (input == ActivationInput::kInt8Groups) {
      pool.parallel_for(N, grain, [&](int64_t n0, int64_t n1) {
        request_lines(xq, M * K);
        k.int8_groups(xq, xscale, M, W, n0, n1, bias, epilogue, y);
      });
      return;
    }
    pool.parallel_for(N, grain, [&](int64_t n0, int64_t n1) {
      request_lines(xq, M * K);
      k.int8_rows(xq, xscale, M, W, n0, n1, bias, epilogue, y);
    });
    return;
  }
  if (ctx.matmul_precision() == MatmulPrecision::kBFloat16) {
    // (Context refuses the setting where the ISA has no bf16 kernels.)
    thread_local std::vector<uint32_t> pairs;
    const int64_t words = M * bf16_pair_words(K);
    if (static_cast<int64_t>(pairs.size()) < words) pairs.resize(words);
    simd().to_bf16_pairs(x, M, K, pairs.data());
    const uint32_t* xb = pairs.data();
    pool.parallel_for(N, grain, [&](int64_t n0, int64_t n1) {
      request_lines(xb, M * bf16_pair_words(K) * 4);
      k.bf16_rows(xb, M, W, n0, n1, bias, epilogue, y);
    });
    return;
  }
  pool.parallel_for(N, grain, [&](int64_t n0, int64_t n1) {
    request_lines(x, M * K * 4);
    k.float_rows(x, M, W, n0, n1, bias, epilogue, y);
  });
}

void embed(Context& ctx, const Matrix& table, const float* positions, const int64_t* tokens,
           const TokenSlot* slots, int64_t M, float* x) {
  const int64_t D = table.cols;
  const DequantizeRowFn row = simd().of(table.format).dequantize_row;
  for (int64_t m = 0; m < M; ++m) {
    float* xm = x + m * D;
    row(table, tokens[m], xm);
    if (!positions) continue;
    const float* pe = positions + slots[m].slot * D;
    for (int64_t i = 0; i < D; ++i) xm[i] += pe[i];
  }
}

}  // namespace cpu

void dequantize_row(const Matrix& W, int64_t row, float* out) {
  cpu::simd().of(W.format).dequantize_row(W, row, out);
}

}  // namespace fastergpt
