// Micro-benchmark of the CPU kernels: linear (the GEMV/GEMM that dominates
// decoding) at GPT-2-small shapes in every weight format, reporting GB/s of
// weights streamed and GFLOP/s at 1..N threads; the machine's read bandwidth;
// the activations (GELU epilogues, the gated MLP's, sum_exp); and the sampler over a
// GPT-2 vocabulary, and greedy search's choice.
// The GFLOP/s figures are against the machine's arithmetic peak, which this
// benchmark measures rather than quotes: register-only loops of independent
// vpdpbusd (int8, 64 multiply-adds each) and vfmadd231ps (fp32, 16 each), one
// thread per core at once, so clock speed and how many 512-bit units a core
// has are what the loop finds.
// Usage: bench_kernels [seconds_per_case] [attention|norm]  (that section only)
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "../csrc/core/activation_math.h"
#include "../csrc/core/context.h"
#include "../csrc/core/kernels.h"
#include "../csrc/core/logits_processor.h"
#include "../csrc/cpu/cpu_ops.h"
#include "../csrc/cpu/huge_pages.h"
#include "../csrc/cpu/simd_kernels.h"

using namespace fastergpt;
using Clock = std::chrono::steady_clock;

// Operations (multiply + add = 2) of `iters` rounds of 12 independent accumulators.
constexpr int kPeakChains = 12;

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double peak_int8_loop(int64_t iters) {
  __m512i acc[kPeakChains];
  for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_set1_epi32(i);
  __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2);
  __asm__ volatile("" : "+v"(a), "+v"(b));  // opaque operands: nothing to fold
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  }
  // (Summed as unsigned words: the lanes' int32 sums wrap, which is no error here, and
  // _mm512_reduce_add_epi32's signed additions would overflow.)
  uint32_t sink = 0;
  for (int i = 0; i < kPeakChains; ++i) {
    alignas(64) uint32_t lanes[16];
    _mm512_store_si512(lanes, acc[i]);
    for (uint32_t v : lanes) sink += v;
  }
  __asm__ volatile("" : : "r"(sink));
  return double(iters) * kPeakChains * 64 * 2;
}

__attribute__((target("avx512f,fma"))) static double peak_fp32_loop(int64_t iters) {
  __m512 acc[kPeakChains];
  for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-9f);
  __asm__ volatile("" : "+v"(a), "+v"(b));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
  }
  float sink = 0;
  for (int i = 0; i < kPeakChains; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  __asm__ volatile("" : : "x"(sink));
  return double(iters) * kPeakChains * 16 * 2;
}

__attribute__((target("avx512f,avx512bf16"))) static double peak_bf16_loop(int64_t iters) {
  __m512 acc[kPeakChains];
  for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_set1_ps(float(i));
  __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80), b = (__m512bh)_mm512_set1_epi16(0x3000);
  __asm__ volatile("" : "+v"(a), "+v"(b));
  for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < kPeakChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  float sink = 0;
  for (int i = 0; i < kPeakChains; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  __asm__ volatile("" : : "x"(sink));
  return double(iters) * kPeakChains * 32 * 2;
}

// A model config for the attention cases: `layers` layers of `heads` heads of 64 and a KV
// cache of up to `positions`; nothing else is used (sizes 1).
static ModelConfig attention_shape(int64_t layers, int64_t heads, int64_t positions) {
  ModelConfig c;
  c.num_layers = layers;
  c.num_heads = heads;
  c.hidden_size = heads * 64;
  c.inner_size = c.vocab_size = 1;
  c.max_positions = positions;
  return c;
}

// A 2-thread context whose KV cache holds one row of c.max_positions, with random
// q / k / v rows for that many tokens at slots 0, 1, ... (the attention cases below).
struct AttentionRun {
  AttentionRun(const ModelConfig& c, std::mt19937& rng) : ctx(cpu_backend(), 2) {
    const int64_t n = c.max_positions, H = c.num_heads, Dh = c.head_dim();
    ctx.kv_cache().allocate(c, 1, n);
    std::normal_distribution<float> d;
    qkv.resize(n * 3 * H * Dh);
    for (auto& v : qkv) v = d(rng);
    out.resize(n * H * Dh);
    for (int64_t j = 0; j < n; ++j) slots.push_back({0, j});
  }
  Context ctx;
  std::vector<float> qkv, out;
  std::vector<TokenSlot> slots;
};

// Seconds per call of `fn`, after one warm-up call, over at least `seconds` of calls.
template <typename F>
static double seconds_per_call(F&& fn, double seconds) {
  fn();
  int iters = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    fn();
    ++iters;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return elapsed / iters;
}

// G(FL)OP/s of `loop` on `threads` threads at once (each a core's worth).
// The best of 5 tries, each about 30 ms: a try that shares its cores with anything else
// (a hypervisor's other guest, the other thread's start) reads low, and one such try had
// put the two cores' float32 peak at 351 GFLOP/s where an M=256 GEMM then ran at 508.
static double measure_peak(double (*loop)(int64_t), int threads) {
  const int64_t iters = 20000000;
  double best = 0;
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::vector<std::thread> pool;
    std::vector<double> ops(threads);
    const auto t0 = Clock::now();
    for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { ops[t] = loop(iters); });
    for (auto& th : pool) th.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    double total = 0;
    for (double o : ops) total += o;
    best = std::max(best, total / secs / 1e9);
  }
  return best;
}

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.5;
  const char* section = argc > 2 ? argv[2] : "";
  const bool all = std::strcmp(section, "attention") != 0 && std::strcmp(section, "norm") != 0;
  const bool attention_section = all || std::strcmp(section, "attention") == 0;
  std::printf("ISA: %s\n", cpu_isa_name());
  std::mt19937 rng(0);
  std::normal_distribution<float> d;
  if (all) {
    Context ctx(cpu_backend(), default_num_threads());
    std::printf("read bandwidth (%d threads): %.1f GB/s\n", default_num_threads(),
                measure_read_bandwidth(int64_t(1) << 30, 3, ctx));
  }
  if (all && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("avx512bw")) {
    for (int threads = 1; threads <= default_num_threads(); ++threads)
      std::printf("peak (measured, %d threads): int8 vpdpbusd %.0f GOP/s, fp32 vfmadd %.0f GFLOP/s\n",
                  threads, measure_peak(peak_int8_loop, threads), measure_peak(peak_fp32_loop, threads));
  }
  if (all && cpu_backend().bf16_matmul) {
    for (int threads = 1; threads <= default_num_threads(); ++threads)
      std::printf("peak (measured, %d threads): bf16 vdpbf16ps %.0f GFLOP/s\n", threads,
                  measure_peak(peak_bf16_loop, threads));
  }
  struct Shape {
    const char* name;
    int64_t M, K, N;
  } shapes[] = {{"qkv   M=1", 1, 768, 2304},  {"fc    M=1", 1, 768, 3072},
                {"lmhead M=1", 1, 768, 50257}, {"lmhead M=8", 8, 768, 50257},  // from memory
                {"fc    M=8", 8, 768, 3072},  {"fc   M=32", 32, 768, 3072},
                {"fc  M=256", 256, 768, 3072}};
  // int4 three times: groups of 128 and of 32 columns, and groups of 128 with an
  // act-order column order ("int4ao": the activations' quantisation reads x through it,
  // csrc/core/matrix.h); the float formats
  // again under matmul_precision=bfloat16 where the CPU has AVX-512 BF16 ("f32>bf16",
  // "f16>bf16", "bf16>bf16").
  struct Format {
    WeightFormat f;
    int64_t group_size;
    const char* name;
    MatmulPrecision precision;
    bool act_order = false;
  } formats[] = {{WeightFormat::kF32, 0, "float32", MatmulPrecision::kFloat32},
                 {WeightFormat::kF32, 0, "f32>bf16", MatmulPrecision::kBFloat16},
                 {WeightFormat::kF16, 0, "float16", MatmulPrecision::kFloat32},
                 {WeightFormat::kF16, 0, "f16>bf16", MatmulPrecision::kBFloat16},
                 {WeightFormat::kI8, 0, "int8", MatmulPrecision::kFloat32},
                 {WeightFormat::kI4, 128, "int4g128", MatmulPrecision::kFloat32},
                 {WeightFormat::kI4, 128, "int4ao", MatmulPrecision::kFloat32, true},
                 {WeightFormat::kI4, 32, "int4g32", MatmulPrecision::kFloat32},
                 {WeightFormat::kBF16, 0, "bfloat16", MatmulPrecision::kFloat32},
                 {WeightFormat::kBF16, 0, "bf16>bf16", MatmulPrecision::kBFloat16}};
  // A column order of K columns (a shuffled permutation), for the act-order rows.
  const auto column_order = [&](int64_t K) {
    std::vector<int32_t> order(K);
    for (int64_t i = 0; i < K; ++i) order[i] = int32_t(i);
    std::shuffle(order.begin(), order.end(), rng);
    return order;
  };
  for (int threads = 1; all && threads <= default_num_threads(); ++threads) {
    Context ctx(cpu_backend(), threads);
    const Backend& k = ctx.backend();
    for (const Shape& s : shapes) for (const Format& fmt : formats) {
      if (fmt.precision == MatmulPrecision::kBFloat16 && !k.bf16_matmul) continue;
      ctx.set_matmul_precision(fmt.precision);
      const WeightFormat f = fmt.f;
      const std::vector<int64_t> stored = storage_shape(f, s.N, s.K);
      // The weight buffers hold the whole storage: the last block of 16 rows is read whole
      // (a row count that is no multiple of 16, as the LM head's 50257, pads it).
      const int64_t stored_elements = stored[0] * stored[1];
      std::vector<float> x(s.M * s.K), w(stored_elements), y(s.M * s.N), scales(s.N, 0.01f);
      std::vector<uint16_t> w16(stored_elements, 0x3c00);  // 1.0 in half
      std::vector<uint16_t> wbf(stored_elements, 0x3f80);  // 1.0 in bfloat16
      std::vector<int8_t> w8(stored_elements, 3);
      const int64_t groups = fmt.group_size ? (s.K + fmt.group_size - 1) / fmt.group_size : 0;
      std::vector<uint16_t> params(q4_blocks(s.N) * groups * 32, 0x2000);  // small halves
      for (auto& v : x) v = d(rng);
      for (auto& v : w) v = d(rng);
      const void* data = f == WeightFormat::kF32 ? static_cast<const void*>(w.data())
                         : f == WeightFormat::kF16 ? static_cast<const void*>(w16.data())
                         : f == WeightFormat::kBF16 ? static_cast<const void*>(wbf.data())
                                                   : static_cast<const void*>(w8.data());
      Matrix W{f, data, f == WeightFormat::kI8 ? scales.data() : nullptr};
      W.rows = s.N;
      W.cols = s.K;
      const std::vector<int32_t> order = fmt.act_order ? column_order(s.K) : std::vector<int32_t>{};
      if (f == WeightFormat::kI4) {
        W.group_params = params.data();
        W.groups = groups;
        W.group_size = q4_group_size(s.K, groups);
        if (fmt.act_order) W.columns = order.data();
      }
      // bytes streamed per call: the weights and their scales
      const double bytes = double(s.N) * s.K * format_info(f).bits / 8 +
                           (f == WeightFormat::kI8 ? 4.0 * s.N : 0) + 2.0 * params.size();
      // The LM head is read from memory in decoding (the layers' weights stream through
      // L3 between two of its reads), but called back to back its int8 / int4 forms
      // (38.6 / 19 MB) would partly stay in the 32 MB L3: calls take turns over copies of
      // it that add up to over 128 MB. The other shapes are timed in cache, as labelled.
      const bool from_memory = s.N > 10000;
      const int64_t weight_bytes = stored_elements * element_bytes(format_info(f).element);
      const int copies = from_memory ? int((int64_t(128) << 20) / weight_bytes + 1) : 1;
      std::vector<std::vector<char>> copy_store(copies - 1);
      std::vector<Matrix> Ws(1, W);
      for (int c = 1; c < copies; ++c) {
        const char* src = static_cast<const char*>(data);
        copy_store[c - 1].assign(src, src + weight_bytes);
        Ws.push_back(W);
        Ws.back().data = copy_store[c - 1].data();
      }
      int64_t call = 0;
      const double per = seconds_per_call(
          [&] {
            k.linear(ctx, x.data(), s.M, Ws[call++ % copies], nullptr, Epilogue::kStore, y.data());
          },
          seconds);
      std::printf("linear %-8s %-11s threads=%d  %8.3f ms  %6.2f GB/s weights  %7.2f GFLOP/s\n",
                  fmt.name, s.name, threads, per * 1e3, bytes / per / 1e9,
                  2.0 * s.M * s.N * s.K / per / 1e9);
    }
  }
  // A decoding step's layer matrices streamed from memory: GPT-2-small's 12 layers (qkv,
  // attention output, fc, proj) at M = 1, one after another, as the decoder runs them
  // (45-340 MB, far past L3), on all threads; GB/s of weights + scales against the read
  // bandwidth measured just before.
  if (all) {
    Context ctx(cpu_backend(), default_num_threads());
    const Backend& k = ctx.backend();
    const int64_t layer[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};  // N, K
    for (const Format& fmt : formats) {
      if (fmt.precision != MatmulPrecision::kFloat32 || fmt.group_size == 32) continue;
      const WeightFormat f = fmt.f;
      std::vector<std::vector<char>> store;
      std::vector<std::vector<float>> scales;
      std::vector<std::vector<uint16_t>> params;
      std::vector<std::vector<int32_t>> orders;
      std::vector<Matrix> step;
      double bytes = 0;
      for (int l = 0; l < 12; ++l)
        for (const auto& nk : layer) {
          const int64_t N = nk[0], K = nk[1];
          const std::vector<int64_t> st = storage_shape(f, N, K);
          const int64_t n = st[0] * st[1] * element_bytes(format_info(f).element);
          store.emplace_back(n, f == WeightFormat::kF16 ? 0 : 0x11);  // small values, no NaN
          scales.emplace_back(N, 0.01f);
          const int64_t groups = f == WeightFormat::kI4 ? (K + fmt.group_size - 1) / fmt.group_size : 0;
          params.emplace_back(q4_blocks(N) * groups * 32, 0x2000);
          Matrix W{f, store.back().data(), f == WeightFormat::kI8 ? scales.back().data() : nullptr};
          W.rows = N;
          W.cols = K;
          if (fmt.act_order) orders.push_back(column_order(K));
          if (f == WeightFormat::kI4) {
            W.group_params = params.back().data();
            W.groups = groups;
            W.group_size = q4_group_size(K, groups);
            if (fmt.act_order) W.columns = orders.back().data();
          }
          step.push_back(W);
          bytes += n + (f == WeightFormat::kI8 ? 4.0 * N : 0) + 2.0 * params.back().size();
        }
      std::vector<float> x(3072, 0.5f), y(3072);
      // Seconds per pass over two sets of the step's matrices, a then b then b then a ...,
      // call by call (this host's bandwidth drifts more between runs than the differences
      // these compare).
      auto alternated = [&](const std::vector<Matrix>& a, const std::vector<Matrix>& b, int rounds) {
        double seconds_a = 0, seconds_b = 0;
        for (int round = 0; round < rounds; ++round)
          for (int pass = 0; pass < 2; ++pass) {
            const bool first = (pass ^ round) & 1;
            const auto t0 = Clock::now();
            for (const Matrix& W : first ? a : b)
              k.linear(ctx, x.data(), 1, W, nullptr, Epilogue::kStore, y.data());
            (first ? seconds_a : seconds_b) += std::chrono::duration<double>(Clock::now() - t0).count();
          }
        return std::make_pair(seconds_a / rounds, seconds_b / rounds);
      };
      const double bandwidth = measure_read_bandwidth(int64_t(1) << 30, 3, ctx);
      const double per = seconds_per_call([&] {
        for (const Matrix& W : step) k.linear(ctx, x.data(), 1, W, nullptr, Epilogue::kStore, y.data());
      }, seconds);
      std::printf("decode stream %-8s 12 layers from memory, %d threads: %6.1f MB  %7.3f ms  "
                  "%5.1f GB/s (%.0f%% of the %.1f GB/s read just before)\n", fmt.name,
                  default_num_threads(), bytes / 1e6, per * 1e3, bytes / per / 1e9,
                  100 * bytes / per / 1e9 / bandwidth, bandwidth);
      if (!fmt.act_order) {
        // What 2 MB pages give (csrc/cpu/huge_pages.h): a copy of the same matrices on 4 KB
        // pages against these asked onto 2 MB pages, alternated call by call.
        std::vector<std::vector<char>> store4k = store;
        std::vector<std::vector<uint16_t>> params4k = params;
        std::vector<Matrix> small_pages = step;
        std::vector<HostBytes> ranges;
        for (size_t i = 0; i < step.size(); ++i) {
          small_pages[i].data = store4k[i].data();
          if (f == WeightFormat::kI4) small_pages[i].group_params = params4k[i].data();
          ranges.push_back({store[i].data(), static_cast<int64_t>(store[i].size())});
          ranges.push_back({params[i].data(), static_cast<int64_t>(params[i].size() * 2)});
        }
        const HugePageStats before = huge_page_stats();
        cpu::place_weights(ranges);
        const HugePageStats after = huge_page_stats();
        const auto [huge, small] = alternated(step, small_pages, 200);
        if (after.off_reason)
          std::printf("decode stream %-8s 2 MB pages: not asked (%s)\n", fmt.name, after.off_reason);
        else
          std::printf("decode stream %-8s on 2 MB pages (%.0f of %.0f MB collapsed) against 4 KB "
                      "pages, alternated: %.3f / %.3f ms = %.3fx the time\n", fmt.name,
                      (after.huge_bytes - before.huge_bytes) / 1e6,
                      (after.asked_bytes - before.asked_bytes) / 1e6, huge * 1e3, small * 1e3,
                      huge / small);
        continue;
      }
      // What the orders cost: the same matrices with and without them, alternated.
      std::vector<Matrix> unordered = step;
      for (Matrix& W : unordered) W.columns = nullptr;
      const auto [with, without] = alternated(step, unordered, 400);
      std::printf("decode stream %-8s against the same without orders, alternated: %.3f / %.3f ms "
                  "= %.3fx\n", fmt.name, with * 1e3, without * 1e3, with / without);
    }
  }
  // int8 activations: the per-row quantisation every int8 / int4 linear runs first.
  if (all) {
    const int64_t M = 256, K = 768;
    std::vector<float> x(M * K);
    for (auto& v : x) v = d(rng);
    std::vector<int8_t> xs(M * K);
    std::vector<float> sx(M);
    const auto& simd = cpu::simd();
    const int n = 200;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) simd.quantize_rows(x.data(), M, K, nullptr, xs.data(), sx.data());
    const double per = std::chrono::duration<double>(Clock::now() - t0).count() / n;
    std::printf("quantize_rows M=%lld K=%lld: %.1f us (%.2f GB/s of activations)\n", (long long)M,
                (long long)K, per * 1e6, M * K * 4.0 / per / 1e9);
  }
  // The activation epilogue: the same float32 linear with and without gelu_tanh applied
  // to its output (GPT-2's fc), one thread, at the default model's fc (K=256, N=1024)
  // for a decoding step and a 192-token prompt; a gated MLP's activation; and sum_exp
  // (the softmax's exp) over a vocabulary. All are exp_vec's work.
  if (all) {
    Context ctx(cpu_backend(), 1);
    for (int64_t M : {1, 192}) {
      const int64_t K = 256, N = 1024;
      std::vector<float> x(M * K), w(N * K), y(M * N);
      for (auto& v : x) v = d(rng);
      for (auto& v : w) v = 0.1f * d(rng);
      Matrix W{WeightFormat::kF32, w.data(), nullptr};
      W.rows = N;
      W.cols = K;
      const auto run = [&](Epilogue ep) {
        return seconds_per_call([&] { ctx.backend().linear(ctx, x.data(), M, W, nullptr, ep, y.data()); },
                                seconds / 4);
      };
      const double plain = run(Epilogue::kStore);
      for (Epilogue ep : {Epilogue::kGeluTanh, Epilogue::kGeluErf}) {
        const double gelu = run(ep);
        std::printf("epilogue %s M=%-3lld K=%lld N=%lld, 1 thread: %.2f us against %.2f us "
                    "stored plain, %.2f ns per element\n",
                    ep == Epilogue::kGeluTanh ? "gelu_tanh" : "gelu_erf ", (long long)M,
                    (long long)K, (long long)N, gelu * 1e6, plain * 1e6,
                    (gelu - plain) / double(M * N) * 1e9);
      }
    }
    // A gated MLP's activation (glu_rows, LLaMA's SiLU) at M = 192 rows of F = 2816, against
    // the scalar loop over activate() it replaced.
    {
      const int64_t M = 192, F = 2816;
      std::vector<float> in(M * 2 * F), out(M * F);
      for (auto& v : in) v = 2.0f * d(rng);
      for (Activation act : {Activation::kSilu, Activation::kGeluTanh}) {
        const double vec_s = seconds_per_call(
            [&] { cpu::simd().glu_rows(in.data(), M, F, act, out.data()); }, seconds / 4);
        const double scalar_s = seconds_per_call(
            [&] {
              for (int64_t m = 0; m < M; ++m)
                for (int64_t i = 0; i < F; ++i)
                  out[m * F + i] = activate(act, in[m * 2 * F + i]) * in[m * 2 * F + F + i];
            },
            seconds / 4);
        std::printf("glu_rows %s M=%lld F=%lld, 1 thread: %.3f ns per element, the scalar loop "
                    "%.3f ns (%.1fx)\n", act == Activation::kSilu ? "silu" : "gelu_tanh",
                    (long long)M, (long long)F, vec_s / double(M * F) * 1e9,
                    scalar_s / double(M * F) * 1e9, scalar_s / vec_s);
      }
    }
    std::vector<float> logits(50257);
    for (auto& v : logits) v = 4.0f * d(rng);
    const double per = seconds_per_call([&] { cpu::simd().sum_exp(logits.data(), 50257, 20.0f); },
                                        seconds / 4);
    std::printf("sum_exp over 50257, 1 thread: %.2f us, %.3f ns per element\n", per * 1e6,
                per / 50257 * 1e9);
  }
  // LayerNorm / RMSNorm rows (simd_norm.inc), one thread: a decoding step runs 2 per layer
  // + 1 at M = 1; a prompt-lookup pass or a batch at M = a few; a prompt at M = its length.
  if (all || std::strcmp(section, "norm") == 0) {
    const auto& simd = cpu::simd();
    for (int64_t D : {256, 768, 4096})
      for (int64_t M : {1, 8, 128}) {
        std::vector<float> x(M * D), g(D), b(D), y(M * D);
        for (auto& v : x) v = d(rng);
        for (auto& v : g) v = d(rng);
        for (auto& v : b) v = d(rng);
        const double ln = seconds_per_call(
            [&] { simd.layer_norm_rows(x.data(), M, D, g.data(), b.data(), 1e-5f, y.data()); },
            seconds / 4);
        const double rms = seconds_per_call(
            [&] { simd.rms_norm_rows(x.data(), M, D, g.data(), 1e-6f, y.data()); }, seconds / 4);
        std::printf("norm rows D=%-4lld M=%lld, 1 thread: layer_norm %.3f us, rms_norm %.3f us\n",
                    (long long)D, (long long)M, ln * 1e6, rms * 1e6);
      }
  }
  if (!attention_section) return 0;
  // Attention over a prompt, one head: blocks of consecutive queries through
  // attend_queries, as attention() runs a prompt. GFLOP/s counts the causal work only
  // (q.k and p.v, 2 x Dh multiply-adds per query-key pair the mask keeps).
  {
    const auto& simd = cpu::simd();
    const int64_t Dh = 64, lanes = simd.attention_lanes();
    for (int64_t P : {32, 128, 512}) {
      std::vector<float> q(P * Dh), kv(2 * P * Dh), out(P * Dh), work((Dh + P) * lanes);
      for (auto& v : q) v = d(rng);
      for (auto& v : kv) v = d(rng);
      auto pass = [&] {
        for (int64_t n0 = 0; n0 < P; n0 += lanes)
          simd.attend_queries(q.data() + n0 * Dh, Dh, kv.data(), kv.data() + P * Dh, n0,
                              std::min(lanes, P - n0), Dh, 0.125f, out.data() + n0 * Dh, Dh,
                              work.data());
      };
      const double per = seconds_per_call(pass, seconds), pairs = 0.5 * P * (P + 1);
      std::printf("attend_queries prompt=%-4lld Dh=%lld one head, 1 thread: %8.3f ms  %6.2f GFLOP/s\n",
                  (long long)P, (long long)Dh, per * 1e3, 4.0 * Dh * pairs / per / 1e9);
    }
  }
  // A prompt-lookup pass's attention, one head: the newest token and T - 1 drafts after n0
  // cached positions, as one attend_queries block against T lone queries (dot_rows,
  // exp_shift, weighted_rows each), the two ways attention() can run them.
  {
    const auto& simd = cpu::simd();
    const int64_t lanes = simd.attention_lanes();
    for (int64_t Dh : {64, 128})
      for (int64_t n0 : {200, 1000}) {
        const int64_t n = n0 + lanes;
        std::vector<float> q(lanes * Dh), kv(2 * n * Dh), out(lanes * Dh), work((Dh + n) * lanes);
        for (auto& v : q) v = d(rng);
        for (auto& v : kv) v = d(rng);
        const float* K = kv.data();
        const float* V = kv.data() + n * Dh;
        std::printf("draft block n0=%-4lld Dh=%-3lld one head, 1 thread, us: T, block, lone:",
                    (long long)n0, (long long)Dh);
        for (int64_t T : {2, 3, 5, 8, 16}) {
          if (T > lanes) continue;
          const double block = seconds_per_call([&] {
            simd.attend_queries(q.data(), Dh, K, V, n0, T, Dh, 0.125f, out.data(), Dh, work.data());
          }, seconds / 8);
          const double lone = seconds_per_call([&] {
            for (int64_t t = 0; t < T; ++t)
              cpu::attend(q.data() + t * Dh, K, V, n0 + t + 1, Dh, 0.125f, out.data() + t * Dh,
                          work.data());
          }, seconds / 8);
          std::printf("  %lld: %.2f %.2f", (long long)T, block * 1e6, lone * 1e6);
        }
        std::printf("\n");
      }
  }
  // One decoding step's attention in a GPT-2-small-shaped model (12 layers x 12 heads of
  // 64) over a cache of n positions, float32 against float16 keys and values
  // (kv_cache_dtype): 2 threads, GB/s of cache read. At batch 1 these bytes come on top of
  // the weights; from n = 512 (37.7 MB in float32) the cache no longer fits in L3.
  {
    const ModelConfig c = attention_shape(12, 12, 1024);
    const int64_t H = 12, Dh = 64, S = 3 * H * Dh;
    for (int64_t n : {128, 512, 1024}) {
      double ms[2] = {0, 0};
      for (KVDtype kv : {KVDtype::kFloat32, KVDtype::kFloat16}) {
        Context ctx(cpu_backend(), 2);
        KVCache& cache = ctx.kv_cache();
        cache.allocate(c, 1, n, kv);
        std::vector<float> qkv(n * S), out(n * H * Dh);
        for (auto& v : qkv) v = d(rng);
        std::vector<TokenSlot> slots(n);
        for (int64_t j = 0; j < n; ++j) slots[j] = {0, j};
        for (int64_t l = 0; l < c.num_layers; ++l)  // the prompt fills every layer
          cpu_backend().attention(ctx, cache, l, H, qkv.data(), slots.data(), n, out.data());
        const TokenSlot last = {0, n - 1};
        const double per = seconds_per_call([&] {
          for (int64_t l = 0; l < c.num_layers; ++l)
            cpu_backend().attention(ctx, cache, l, H, qkv.data(), &last, 1, out.data());
        }, seconds);
        ms[kv == KVDtype::kFloat16] = per * 1e3;
        const double bytes = 2.0 * c.num_layers * n * H * Dh * (kv == KVDtype::kFloat16 ? 2 : 4);
        std::printf("decode attention n=%-4lld 12 layers x 12 heads, KV %s, 2 threads: %7.3f ms  "
                    "%6.2f GB/s of cache\n", (long long)n, kv_dtype_name(kv), per * 1e3,
                    bytes / per / 1e9);
      }
      std::printf("decode attention n=%-4lld float16 KV: %.2fx float32's speed\n", (long long)n,
                  ms[0] / ms[1]);
    }
  }
  // A prompt-lookup pass's attention: the newest token and its draft, 1 to 8 consecutive
  // queries of one row over a cache of 200 positions, all layers, 2 threads; the default
  // model's shape (4 layers x 4 heads of 64) and GPT-2-small's (12 x 12). Per extra query
  // is what a drafted token adds to the pass: below attention()'s block_min queries each
  // one costs its own pass over the keys; from there the block's lanes layout costs about
  // the same for any count up to the lanes.
  for (const int64_t shape : {4, 12}) {
    const ModelConfig c = attention_shape(shape, shape, 256);
    const int64_t H = shape, n0 = 200;
    AttentionRun run(c, rng);
    Context& ctx = run.ctx;
    const std::vector<float>& qkv = run.qkv;
    std::vector<float>& out = run.out;
    const std::vector<TokenSlot>& slots = run.slots;
    for (int64_t l = 0; l < c.num_layers; ++l)  // the prompt fills the cache
      cpu_backend().attention(ctx, ctx.kv_cache(), l, H, qkv.data(), slots.data(), n0, out.data());
    double one = 0;
    for (int64_t M = 1; M <= 8; ++M) {
      const double per = seconds_per_call([&] {
        for (int64_t l = 0; l < c.num_layers; ++l)
          cpu_backend().attention(ctx, ctx.kv_cache(), l, H, qkv.data(), slots.data() + n0, M,
                                  out.data());
      }, seconds / 4);
      if (M == 1) one = per;
      std::printf("draft attention %lld layers x %lld heads, cache %lld, %lld queries, 2 threads: "
                  "%7.2f us  (+%.2f us per query after the first)\n", (long long)shape,
                  (long long)shape, (long long)n0, (long long)M, per * 1e6,
                  M > 1 ? (per - one) / (M - 1) * 1e6 : 0.0);
    }
  }
  // A prompt's attention through the backend op, one layer of the default model's 4 heads
  // of 64, 2 threads: the K/V stores, then the (block, head) items split between the
  // threads by their query-key pairs.
  {
    AttentionRun run(attention_shape(1, 4, 512), rng);
    for (int64_t P : {25, 73, 147, 512}) {
      const double per = seconds_per_call([&] {
        cpu_backend().attention(run.ctx, run.ctx.kv_cache(), 0, 4, run.qkv.data(),
                                run.slots.data(), P, run.out.data());
      }, seconds / 4);
      std::printf("prompt attention P=%-3lld 4 heads of 64, 2 threads: %8.2f us\n", (long long)P,
                  per * 1e6);
    }
  }
  if (!all) return 0;
  // Sampling cost over a GPT-2 vocabulary.
  std::vector<float> logits(50257);
  for (auto& v : logits) v = d(rng) * 3;
  SamplerScratch scratch;
  // (top_k=50: transformers' default; logits N(0, 9): a broad distribution, a nucleus of
  // about 2600 tokens at top_p=0.9; then logits N(0, 0.09), near-flat as a random model's,
  // a nucleus of about 42000.)
  std::vector<float> flat(50257);
  for (auto& v : flat) v = d(rng) * 0.3f;
  // Greedy search's choice (the top logit's lowest id, max_first, then the log-softmax
  // mass for its log-probability), the top near the end: the default model's vocabulary
  // and GPT-2's.
  for (int64_t V : {4096, 50257}) {
    std::vector<float> x(logits.begin(), logits.begin() + V);
    x[V - 7] = 100.0f;
    const double per = seconds_per_call([&] { choose_greedy(x.data(), V); }, seconds / 4);
    std::printf("greedy choice over %lld logits, 1 thread: %.3f us\n", (long long)V, per * 1e6);
  }
  for (auto cfg : {std::pair<int64_t, float>{4, 1.0f}, {50, 1.0f}, {50, 0.95f}, {0, 0.9f}, {0, 1.0f},
                   {-1, 0.9f}}) {
    const bool near_flat = cfg.first < 0;
    if (near_flat) cfg.first = 0;
    const int n = 200;
    const auto t0 = Clock::now();
    GenerationOptions o;
    o.decode_strategy = DecodeStrategy::kSampling;
    o.top_k = cfg.first;
    o.top_p = cfg.second;
    for (int i = 0; i < n; ++i)
      choose_sampled((near_flat ? flat : logits).data(), 50257, o, 0.5, scratch);
    const double per = std::chrono::duration<double>(Clock::now() - t0).count() / n;
    std::printf("sample top_k=%lld top_p=%.2f over 50257%s: %.3f ms\n", (long long)cfg.first,
                cfg.second, near_flat ? " near-flat logits" : "", per * 1e3);
  }
  return 0;
}
