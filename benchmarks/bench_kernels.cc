// Micro-benchmark of the CPU kernels: linear (the GEMV/GEMM that dominates
// decoding) at GPT-2-small shapes, reporting GB/s of weights streamed and
// GFLOP/s, for each instruction set this CPU has and 1..N threads.
// Usage: bench_kernels [seconds_per_case]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../csrc/core/kernels.h"
#include "../csrc/core/logits_processor.h"

using namespace fastergpt;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.5;
  std::printf("ISA: %s\n", cpu_isa_name());
  std::mt19937 rng(0);
  std::normal_distribution<float> d;
  struct Shape {
    const char* name;
    int64_t M, K, N;
  } shapes[] = {{"qkv   M=1", 1, 768, 2304},  {"fc    M=1", 1, 768, 3072},
                {"lmhead M=1", 1, 768, 50257}, {"lmhead M=8", 8, 768, 50257},
                {"fc    M=8", 8, 768, 3072},  {"fc  M=256", 256, 768, 3072}};
  for (int threads = 1; threads <= default_num_threads(); ++threads) {
    ThreadPool pool(threads);
    for (const Shape& s : shapes) {
      std::vector<float> x(s.M * s.K), w(s.N * s.K), y(s.M * s.N);
      for (auto& v : x) v = d(rng);
      for (auto& v : w) v = d(rng);
      Matrix W{WeightFormat::kF32, w.data(), nullptr, s.N, s.K};
      linear(x.data(), s.M, W, nullptr, Epilogue::kStore, y.data(), pool);
      int iters = 0;
      const auto t0 = Clock::now();
      double elapsed = 0;
      while (elapsed < seconds) {
        linear(x.data(), s.M, W, nullptr, Epilogue::kStore, y.data(), pool);
        ++iters;
        elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      }
      const double per = elapsed / iters;
      std::printf("linear %-11s threads=%d  %8.3f ms  %6.2f GB/s weights  %7.2f GFLOP/s\n",
                  s.name, threads, per * 1e3, s.N * s.K * 4.0 / per / 1e9,
                  2.0 * s.M * s.N * s.K / per / 1e9);
    }
  }
  // Sampling cost over a GPT-2 vocabulary.
  std::vector<float> logits(50257);
  for (auto& v : logits) v = d(rng) * 3;
  SamplerScratch scratch;
  for (auto cfg : {std::pair<int64_t, float>{4, 1.0f}, {0, 0.9f}, {0, 1.0f}}) {
    const int n = 200;
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) choose_sampled(logits.data(), 50257, cfg.first, cfg.second, 1.0f, 0.5, scratch);
    const double per = std::chrono::duration<double>(Clock::now() - t0).count() / n;
    std::printf("sample top_k=%lld top_p=%.2f over 50257: %.3f ms\n", (long long)cfg.first,
                cfg.second, per * 1e3);
  }
  return 0;
}
