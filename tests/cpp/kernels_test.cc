// The kernel harness: every Backend operation (csrc/core/kernels.h) of every
// backend this build has, at 1 and 2 threads, and every ISA's inner loops,
// against a plain scalar reference over a sweep of shapes (odd sizes, sizes
// below and above the SIMD width), with a tolerance per weight format.
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "../../csrc/core/activation_math.h"
#include "../../csrc/core/context.h"
#include "../../csrc/core/kernels.h"
#include "../../csrc/cpu/half.h"
#include "../../csrc/cpu/cpu_ops.h"
#include "../../csrc/cpu/simd_kernels.h"
#include "check.h"
#include "test_data.h"

using namespace fastergpt;
using fgpt_test::half_bits;
using fgpt_test::random_vec;

// A packed matrix in each weight format, with its exact float values (what
// the kernels must compute with) for the scalar reference.
struct Packed {
  WeightFormat format;
  std::vector<float> f32, scales, exact;
  std::vector<uint16_t> f16;   // float16, or bfloat16 (kPairBlocks16)
  std::vector<int8_t> i8;
  std::vector<uint16_t> params;  // int4: float16 scales and zero points
  std::vector<int8_t> q8;        // int8: the values, [N, K] (i8 holds them packed)
  std::vector<uint8_t> q4;       // int4: the 4-bit values, [N, K]
  std::vector<float> q4_scale;   // int4: [N, groups]
  std::vector<int32_t> q4_zero;  // int4: [N, groups]
  int64_t groups = 0;
  Matrix matrix(int64_t N, int64_t K) const {
    const void* data = format == WeightFormat::kF32   ? static_cast<const void*>(f32.data())
                       : format == WeightFormat::kF16 || format == WeightFormat::kBF16
                           ? static_cast<const void*>(f16.data())
                           : static_cast<const void*>(i8.data());
    Matrix m{format, data, scales.empty() ? nullptr : scales.data()};
    m.rows = N;
    m.cols = K;
    if (format == WeightFormat::kI4) {
      m.group_params = params.data();
      m.groups = groups;
      m.group_size = q4_group_size(K, groups);
    }
    return m;
  }
};

// int4 written from the layout's description in csrc/core/matrix.h (independently of
// fastergpt/int4.py): asymmetric groups of G columns over [min(w, 0), max(w, 0)].
static void pack_int4(Packed& p, const std::vector<float>& w, int64_t N, int64_t K, int64_t G) {
  const int64_t groups = (K + G - 1) / G, Kp = q4_padded_cols(K);
  p.groups = groups;
  p.i8.assign(q4_blocks(N) * 8 * Kp, 0);
  p.params.assign(q4_blocks(N) * groups * 32, 0);
  p.q4.assign(N * K, 0);
  p.q4_scale.assign(N * groups, 0);
  p.q4_zero.assign(N * groups, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < groups; ++g) {
      float lo = 0, hi = 0;
      for (int64_t k = g * G; k < std::min(K, (g + 1) * G); ++k) {
        lo = std::min(lo, w[n * K + k]);
        hi = std::max(hi, w[n * K + k]);
      }
      if (lo == hi) hi = 1;
      const float scale = cpu::half_to_float(half_bits((hi - lo) / 15.0f));
      const int32_t zero = std::min(15, std::max(0, int(std::lround(-lo / scale))));
      p.q4_scale[n * groups + g] = scale;
      p.q4_zero[n * groups + g] = zero;
      const int64_t b = n / 16, r = n % 16;
      p.params[(b * groups + g) * 32 + r] = half_bits(scale);
      p.params[(b * groups + g) * 32 + 16 + r] = half_bits(float(zero));
      for (int64_t k = g * G; k < std::min(K, (g + 1) * G); ++k) {
        const int32_t q = std::min(15, std::max(0, int(std::lround(w[n * K + k] / scale)) + zero));
        p.q4[n * K + k] = uint8_t(q);
        p.exact[n * K + k] = scale * float(q - zero);
        uint8_t& byte = reinterpret_cast<uint8_t&>(p.i8[b * 8 * Kp + (k / 8) * 64 + 4 * r + k % 4]);
        byte |= (k % 8) < 4 ? uint8_t(q) : uint8_t(q << 4);
      }
    }
}

// Element (n, k) of a float matrix in csrc/core/matrix.h's kFloatBlocks16 words: block
// n / 16, column k, row n % 16 (written here independently of fastergpt/quantize.py).
static size_t float_block_index(int64_t n, int64_t k, int64_t K) {
  return size_t((n / 16) * 16 * K + k * 16 + n % 16);
}

// The float a bfloat16 holds (its bits are a float32's upper half).
static float bf16_value(uint16_t h) {
  const uint32_t b = uint32_t(h) << 16;
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

static Packed pack(const std::vector<float>& w, int64_t N, int64_t K, WeightFormat f,
                   int64_t group_size = 32) {
  Packed p{f, {}, {}, w, {}, {}};
  if (f == WeightFormat::kI4) pack_int4(p, w, N, K, group_size);
  if (f == WeightFormat::kF32) {
    p.f32.assign(q4_blocks(N) * 16 * K, 0.0f);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) p.f32[float_block_index(n, k, K)] = w[n * K + k];
  } else if (f == WeightFormat::kF16) {
    p.f16.assign(q4_blocks(N) * 16 * K, 0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const uint16_t bits = half_bits(w[n * K + k]);
        p.f16[float_block_index(n, k, K)] = bits;
        p.exact[n * K + k] = cpu::half_to_float(bits);
      }
  } else if (f == WeightFormat::kBF16) {
    // Packed as csrc/core/matrix.h describes kPairBlocks16 (independently of
    // fastergpt/quantize.py): per block of 16 rows and pair of columns s, element
    // 32s + 2r + c = W[r, 2s + c]; the values rounded to nearest even.
    const int64_t Kp = bf16_padded_cols(K);
    p.f16.assign(q4_blocks(N) * 16 * Kp, 0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const uint16_t h = fgpt_test::bfloat16_bits(w[n * K + k]);
        p.f16[(n / 16) * 16 * Kp + (k / 2) * 32 + 2 * (n % 16) + k % 2] = h;
        p.exact[n * K + k] = bf16_value(h);
      }
  } else if (f == WeightFormat::kI8) {
    // Packed as csrc/core/matrix.h describes kByteBlocks16 (independently of
    // fastergpt/quantize.py): blocks of 16 rows, steps of 4 columns, byte 4r + c.
    const int64_t Kp = q8_padded_cols(K);
    p.i8.assign(q4_blocks(N) * 16 * Kp, 0);
    for (int64_t n = 0; n < N; ++n) {
      float mx = 0;
      for (int64_t k = 0; k < K; ++k) mx = std::max(mx, std::fabs(w[n * K + k]));
      const float scale = mx > 0 ? mx / 127.0f : 1.0f;
      p.scales.push_back(scale);
      for (int64_t k = 0; k < K; ++k) {
        const int8_t q = static_cast<int8_t>(std::lround(w[n * K + k] / scale));
        p.q8.push_back(q);
        p.i8[(n / 16) * 16 * Kp + (k / 4) * 64 + 4 * (n % 16) + k % 4] = q;
        p.exact[n * K + k] = q * scale;
      }
    }
  }
  return p;
}

// Relative tolerance of linear() per weight format against float64 on the
// format's exact weights (times sqrt(K)); int8 also quantises activations.
static double linear_tolerance(WeightFormat f) {
  switch (f) {
    case WeightFormat::kF32: return 2e-5;
    case WeightFormat::kF16: return 2e-5;
    case WeightFormat::kI8: return 2e-2;
    case WeightFormat::kI4: return 3e-2;  // the same activation rounding; larger int4 steps
    case WeightFormat::kBF16: return 2e-5;
  }
  return 0;
}

static void test_linear(Context& ctx) {
  std::mt19937 rng(1);
  const int64_t shapes[][3] = {{1, 1, 1},   {1, 7, 5},    {3, 17, 33},  {4, 64, 16},
                               {5, 80, 67}, {8, 768, 40}, {37, 96, 130}, {70, 33, 9}};
  const Epilogue eps[] = {Epilogue::kStore, Epilogue::kGeluTanh, Epilogue::kGeluErf,
                          Epilogue::kAccumulate};
  for (const auto& s : shapes) {
    const int64_t M = s[0], K = s[1], N = s[2];
    auto x = random_vec(M * K, rng), w0 = random_vec(N * K, rng), b = random_vec(N, rng);
    for (const WeightFormatInfo& format : kWeightFormats)
    for (Epilogue ep : eps) {
      const Packed p = pack(w0, N, K, format.format);
      const std::vector<float>& w = p.exact;
      auto y = random_vec(M * N, rng);
      std::vector<float> ref = y;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double acc = b[n];
          for (int64_t k = 0; k < K; ++k) acc += double(x[m * K + k]) * w[n * K + k];
          const float v = static_cast<float>(acc);
          float& r = ref[m * N + n];
          r = ep == Epilogue::kStore      ? v
              : ep == Epilogue::kGeluTanh ? cpu::gelu_tanh(v)
              : ep == Epilogue::kGeluErf  ? cpu::gelu_erf(v)
                                          : r + v;
        }
      ctx.backend().linear(ctx, x.data(), M, p.matrix(N, K), b.data(), ep, y.data());
      const double tol = linear_tolerance(format.format) * std::sqrt(double(K));
      for (int64_t i = 0; i < M * N; ++i) CHECK_NEAR(y[i], ref[i], tol);
    }
  }
}

// Every ISA's inner loops agree with the scalar reference.
static void test_simd_paths() {
  std::mt19937 rng(2);
  for (const char* name : cpu::kIsaNames) {
    const cpu::SimdKernels* k = cpu::simd_by_name(name);
    if (!k) {
      std::printf("ISA %s not available here, skipped\n", name);
      continue;
    }
    for (int64_t n : {1, 3, 8, 16, 17, 31, 64, 100}) {
      auto a = random_vec(n, rng), b = random_vec(n, rng), y = random_vec(n, rng);
      double ref = 0;
      for (int64_t i = 0; i < n; ++i) ref += double(a[i]) * b[i];
      CHECK_NEAR(k->dot(a.data(), b.data(), n), ref, 1e-5);
      std::vector<float> yr = y;
      for (int64_t i = 0; i < n; ++i) yr[i] += 0.5f * a[i];
      k->axpy(0.5f, a.data(), y.data(), n);
      for (int64_t i = 0; i < n; ++i) CHECK_NEAR(y[i], yr[i], 1e-6);
      const int64_t M = 3, N = 5;
      auto x = random_vec(M * n, rng), w = random_vec(N * n, rng);
      std::vector<float> out(M * N, 0.0f);
      const Packed p = pack(w, N, n, WeightFormat::kF32);
      k->of(WeightFormat::kF32).float_rows(x.data(), M, p.matrix(N, n), 0, N, nullptr,
                                           Epilogue::kStore, out.data());
      for (int64_t m = 0; m < M; ++m)
        for (int64_t j = 0; j < N; ++j) {
          double r = 0;
          for (int64_t i = 0; i < n; ++i) r += double(x[m * n + i]) * w[j * n + i];
          CHECK_NEAR(out[m * N + j], r, 1e-5);
        }
    }
  }
}

// float32/float16 linear and every format's row dequantisation against the
// scalar reference on the exact (dequantised) weights, for every ISA this CPU has.
static void test_weight_formats() {
  std::mt19937 rng(6);
  const int64_t shapes[][3] = {{1, 5, 3}, {1, 33, 17}, {3, 64, 20}, {8, 100, 9}, {5, 768, 12}};
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kI8, WeightFormat::kI4}) {
    for (const char* isa : cpu::kIsaNames) {
      const cpu::SimdKernels* k = cpu::simd_by_name(isa);
      if (!k) continue;
      for (const auto& s : shapes) {
        const int64_t M = s[0], K = s[1], N = s[2];
        auto x = random_vec(M * K, rng), w = random_vec(N * K, rng), b = random_vec(N, rng);
        const Packed p = pack(w, N, K, f);
        const Matrix W = p.matrix(N, K);
        std::vector<float> row(K);
        for (int64_t n : {int64_t(0), N / 2, N - 1}) {
          k->of(f).dequantize_row(W, n, row.data());
          for (int64_t i = 0; i < K; ++i) CHECK_NEAR(row[i], p.exact[n * K + i], 1e-6);
        }
        if (f == WeightFormat::kI8 || f == WeightFormat::kI4) continue;  // test_int8/int4_linear
        std::vector<float> y(M * N);
        k->of(f).float_rows(x.data(), M, W, 0, N, b.data(), Epilogue::kStore, y.data());
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double r = b[n];
            for (int64_t i = 0; i < K; ++i) r += double(x[m * K + i]) * p.exact[n * K + i];
            CHECK_NEAR(y[m * N + n], r, 2e-5 * std::sqrt(double(K)));
          }
      }
    }
  }
}

// float32 / float16 in 16-row blocks: every output is one FMA chain over k in order, so a
// token row gives the same bits alone or inside any tile of rows, in any thread's share,
// and on AVX2 as on AVX-512.
static void test_float_blocks_are_bit_identical() {
  std::mt19937 rng(9);
  const int64_t shapes[][3] = {{1, 33, 70}, {3, 64, 16}, {9, 100, 130}, {37, 17, 33}, {70, 48, 50}};
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16}) {
    for (const auto& s : shapes) {
      const int64_t M = s[0], K = s[1], N = s[2];
      auto x = random_vec(M * K, rng), w = random_vec(N * K, rng), b = random_vec(N, rng);
      const Packed p = pack(w, N, K, f);
      const Matrix W = p.matrix(N, K);
      std::vector<float> first;
      for (const char* isa : cpu::kIsaNames) {
        // (generic rounds the product and the sum apart: it has no FMA to agree with)
        const cpu::SimdKernels* k = std::strcmp(isa, "generic") ? cpu::simd_by_name(isa) : nullptr;
        if (!k) continue;
        std::vector<float> all(M * N), one(M * N), split(M * N);
        k->of(f).float_rows(x.data(), M, W, 0, N, b.data(), Epilogue::kStore, all.data());
        for (int64_t m = 0; m < M; ++m)
          k->of(f).float_rows(x.data() + m * K, 1, W, 0, N, b.data(), Epilogue::kStore,
                              one.data() + m * N);
        const int64_t half = N > 16 ? 16 : N;
        k->of(f).float_rows(x.data(), M, W, 0, half, b.data(), Epilogue::kStore, split.data());
        if (half < N)
          k->of(f).float_rows(x.data(), M, W, half, N, b.data(), Epilogue::kStore, split.data());
        for (int64_t i = 0; i < M * N; ++i) CHECK(all[i] == one[i] && all[i] == split[i]);
        if (first.empty()) first = all;
        for (int64_t i = 0; i < M * N; ++i) CHECK(all[i] == first[i]);
      }
    }
  }
}

// int8 weights: activations quantised per row (symmetric, 127 levels), exact
// int32 dot products. Checked against a scalar reference of that definition,
// bit for bit across every ISA (VNNI or not), and against float within the
// quantisation error.
static void test_int8_linear() {
  std::mt19937 rng(7);
  // Tiles of 1..8 token rows, chunks of 64, 1, 2 and 4 blocks at a time, partial
  // blocks, K not a multiple of 4 (padded columns).
  const int64_t shapes[][3] = {{1, 5, 3},    {1, 64, 17},  {2, 130, 9},   {4, 768, 8},
                               {9, 200, 13}, {32, 3, 1},   {32, 64, 16},  {33, 131, 33},
                               {40, 768, 40}, {64, 70, 17}, {32, 260, 20}, {1, 96, 80},
                               {2, 33, 130}, {3, 8, 64},   {70, 20, 50},  {130, 12, 33}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], K = s[1], N = s[2];
    auto x = random_vec(M * K, rng), w = random_vec(N * K, rng), b = random_vec(N, rng);
    const Packed p = pack(w, N, K, WeightFormat::kI8);
    std::vector<float> ref(M * N);
    for (int64_t m = 0; m < M; ++m) {
      float amax = 0;
      for (int64_t i = 0; i < K; ++i) amax = std::max(amax, std::fabs(x[m * K + i]));
      const float sx = amax > 0 ? amax / 127.0f : 1.0f;
      for (int64_t n = 0; n < N; ++n) {
        int32_t dot = 0;
        for (int64_t i = 0; i < K; ++i) {
          const float q = std::max(-127.0f, std::min(127.0f, std::nearbyint(x[m * K + i] * (1.0f / sx))));
          dot += int32_t(q) * int32_t(p.q8[n * K + i]);
        }
        ref[m * N + n] = float(dot) * sx * p.scales[n] + b[n];
        double exact = b[n];
        for (int64_t i = 0; i < K; ++i) exact += double(x[m * K + i]) * w[n * K + i];
        CHECK_NEAR(ref[m * N + n], exact, 0.05 * std::sqrt(double(K)));  // quantisation error
      }
    }
    for (const char* isa : cpu::kIsaNames) {
      const cpu::SimdKernels* k = cpu::simd_by_name(isa);
      if (!k) continue;
      std::vector<int8_t> xs(M * K);
      std::vector<float> sx(M), y(M * N);
      k->quantize_rows(x.data(), M, K, nullptr, xs.data(), sx.data());
      const Matrix W = p.matrix(N, K);
      k->of(WeightFormat::kI8).int8_rows(xs.data(), sx.data(), M, W, 0, N, b.data(),
                                         Epilogue::kStore, y.data());
      for (int64_t i = 0; i < M * N; ++i) CHECK(y[i] == ref[i]);
      if (N > 16) {  // two threads' shares: rows [0, 16) and [16, N)
        std::vector<float> y2(M * N);
        k->of(WeightFormat::kI8).int8_rows(xs.data(), sx.data(), M, W, 0, 16, b.data(),
                                           Epilogue::kStore, y2.data());
        k->of(WeightFormat::kI8).int8_rows(xs.data(), sx.data(), M, W, 16, N, b.data(),
                                           Epilogue::kStore, y2.data());
        for (int64_t i = 0; i < M * N; ++i) CHECK(y2[i] == ref[i]);
      }
    }
  }
}

// int4 weights: int8 activations per row, exact int32 sums per group, the groups'
// float steps in order (csrc/cpu/simd_int4.inc). Bit for bit on every ISA against a
// scalar reference of that definition, for one token row and for tiles of many, every
// group size, K not a multiple of 8 and N not a multiple of 16.
static void test_int4_linear() {
  std::mt19937 rng(12);
  const int64_t shapes[][4] = {{1, 5, 3, 8},     {1, 64, 17, 32},   {2, 130, 9, 64},
                               {4, 768, 40, 128}, {9, 200, 33, 32}, {1, 768, 16, 768},
                               {13, 96, 20, 16},  {32, 260, 20, 128}, {1, 3072, 24, 128},
                               {17, 42, 18, 8},   {1, 256, 70, 32},  {2, 130, 130, 64},
                               {1, 768, 64, 128}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], K = s[1], N = s[2], G = s[3];
    auto x = random_vec(M * K, rng), w = random_vec(N * K, rng, 0.05f), b = random_vec(N, rng);
    const Packed p = pack(w, N, K, WeightFormat::kI4, G);
    const Matrix W = p.matrix(N, K);
    CHECK(W.group_size == G || p.groups == 1);
    std::vector<float> ref(M * N);
    for (int64_t m = 0; m < M; ++m) {
      float amax = 0;
      for (int64_t i = 0; i < K; ++i) amax = std::max(amax, std::fabs(x[m * K + i]));
      const float sx = amax > 0 ? amax / 127.0f : 1.0f;
      std::vector<int32_t> xq(K);
      for (int64_t i = 0; i < K; ++i)
        xq[i] = int32_t(std::max(-127.0f, std::min(127.0f, std::nearbyint(x[m * K + i] * (1.0f / sx)))));
      for (int64_t n = 0; n < N; ++n) {
        float acc = 0;
        for (int64_t g = 0; g < p.groups; ++g) {
          int32_t dot = 0, xsum = 0;
          for (int64_t k = g * G; k < std::min(K, (g + 1) * G); ++k) {
            dot += int32_t(p.q4[n * K + k]) * xq[k];
            xsum += xq[k];
          }
          acc = std::fma(p.q4_scale[n * p.groups + g], float(dot - p.q4_zero[n * p.groups + g] * xsum), acc);
        }
        ref[m * N + n] = acc * sx + b[n];
        double exact = b[n];
        for (int64_t i = 0; i < K; ++i) exact += double(x[m * K + i]) * p.exact[n * K + i];
        CHECK_NEAR(ref[m * N + n], exact, 0.01 * std::sqrt(double(K)));  // activation rounding
      }
    }
    for (const char* isa : cpu::kIsaNames) {
      const cpu::SimdKernels* k = cpu::simd_by_name(isa);
      if (!k) continue;
      std::vector<int8_t> xs(M * K);
      std::vector<float> sx(M), y(M * N);
      k->quantize_rows(x.data(), M, K, nullptr, xs.data(), sx.data());
      // in two shares, as two threads split N
      const int64_t half = N > 16 ? 16 : N;
      k->of(WeightFormat::kI4).int8_groups(xs.data(), sx.data(), M, W, 0, half, b.data(),
                                           Epilogue::kStore, y.data());
      k->of(WeightFormat::kI4).int8_groups(xs.data(), sx.data(), M, W, half, N, b.data(),
                                           Epilogue::kStore, y.data());
      int64_t bad = 0;
      for (int64_t i = 0; i < M * N; ++i) bad += y[i] != ref[i];
      if (bad) std::fprintf(stderr, "int4 %s M=%lld K=%lld N=%lld G=%lld: %lld differ\n", isa,
                            (long long)M, (long long)K, (long long)N, (long long)G, (long long)bad);
      CHECK(bad == 0);
    }
  }
}

// An act-order int4 matrix (matrix.h: stored column k multiplies x[columns[k]]): linear()
// gives exactly the plain matrix's result on x gathered into that order, and that is the
// product with the matrix whose column columns[k] is stored column k.
static void test_int4_column_order(Context& ctx) {
  std::mt19937 rng(14);
  const int64_t shapes[][4] = {{1, 64, 17, 32}, {3, 130, 33, 64}, {1, 768, 40, 128}, {9, 96, 20, 16}};
  for (const auto& s : shapes) {
    const int64_t M = s[0], K = s[1], N = s[2], G = s[3];
    auto x = random_vec(M * K, rng), w = random_vec(N * K, rng, 0.05f), b = random_vec(N, rng);
    const Packed p = pack(w, N, K, WeightFormat::kI4, G);
    std::vector<int32_t> columns(K);
    for (int64_t k = 0; k < K; ++k) columns[k] = int32_t(k);
    std::shuffle(columns.begin(), columns.end(), rng);
    Matrix ordered = p.matrix(N, K);
    ordered.columns = columns.data();
    std::vector<float> y(M * N), want(M * N), gathered(M * K);
    ctx.backend().linear(ctx, x.data(), M, ordered, b.data(), Epilogue::kStore, y.data());
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) gathered[m * K + k] = x[m * K + columns[k]];
    ctx.backend().linear(ctx, gathered.data(), M, p.matrix(N, K), b.data(), Epilogue::kStore,
                         want.data());
    int64_t bad = 0;
    for (int64_t i = 0; i < M * N; ++i) bad += y[i] != want[i];
    CHECK(bad == 0);
    // Every ISA's quantize_rows reads through the order to the bytes of the gathered rows.
    for (const char* isa : cpu::kIsaNames) {
      const cpu::SimdKernels* k = cpu::simd_by_name(isa);
      if (!k) continue;
      std::vector<int8_t> xs(M * K), want_xs(M * K);
      std::vector<float> sx(M), want_sx(M);
      k->quantize_rows(x.data(), M, K, columns.data(), xs.data(), sx.data());
      k->quantize_rows(gathered.data(), M, K, nullptr, want_xs.data(), want_sx.data());
      CHECK(xs == want_xs && sx == want_sx);
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double exact = b[n];
        for (int64_t k = 0; k < K; ++k) exact += double(x[m * K + columns[k]]) * p.exact[n * K + k];
        CHECK_NEAR(y[m * N + n], exact, 0.01 * std::sqrt(double(K)));
      }
  }
}

// Results must not depend on the number of rows processed together (compressed
// weights are widened once per chunk of rows when M > 4) or on threads.
static void test_linear_deterministic() {
  std::mt19937 rng(3);
  const int64_t K = 77, N = 45, M = 37;
  auto x = random_vec(M * K, rng), w = random_vec(N * K, rng);
  Context one(cpu_backend(), 1), two(cpu_backend(), 2);
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kI8, WeightFormat::kI4}) {
    const auto p = pack(w, N, K, f);
    const Matrix W = p.matrix(N, K);
    std::vector<float> all(M * N), single(N);
    cpu_backend().linear(two, x.data(), M, W, nullptr, Epilogue::kStore, all.data());
    int64_t mismatches = 0;
    for (int64_t m = 0; m < M; ++m) {
      cpu_backend().linear(one, x.data() + m * K, 1, W, nullptr, Epilogue::kStore, single.data());
      for (int64_t n = 0; n < N; ++n) mismatches += single[n] != all[m * N + n];
    }
    if (mismatches) std::fprintf(stderr, "format %d: %lld results depend on M\n", int(f), (long long)mismatches);
    CHECK(mismatches == 0);
  }
}

static void test_sum_exp() {
  std::mt19937 rng(8);
  for (const char* isa : {"generic", "avx2", "avx512"}) {
    const cpu::SimdKernels* k = cpu::simd_by_name(isa);
    if (!k) continue;
    for (int64_t n : {1, 7, 16, 100, 50257}) {
      auto x = random_vec(n, rng, 8.0f);
      if (n > 1) x[0] = -INFINITY;  // a masked logit contributes nothing
      float mx = -INFINITY;
      for (float v : x) mx = std::max(mx, v);
      double ref = 0;
      for (float v : x) ref += std::exp(double(v) - mx);
      CHECK_NEAR(k->sum_exp(x.data(), n, mx), ref, 1e-6);
    }
  }
}

// max_first on every ISA against a scalar scan: the largest value (NaNs skipped) and the
// lowest index holding it, with ties inside one lane, across lanes and in the tail,
// NaNs before and after the top, -inf everywhere, NaN everywhere and nothing at all.
static void test_max_first() {
  std::mt19937 rng(12);
  auto reference = [](const std::vector<float>& x, int64_t* first) {
    float top = -INFINITY;
    for (float v : x) top = v > top ? v : top;
    *first = -1;
    for (size_t i = 0; i < x.size(); ++i)
      if (x[i] == top) {
        *first = static_cast<int64_t>(i);
        break;
      }
    return top;
  };
  for (const char* isa : cpu::kIsaNames) {
    const cpu::SimdKernels* k = cpu::simd_by_name(isa);
    if (!k) continue;
    std::vector<std::vector<float>> cases = {{}, {std::nanf("")}, {-INFINITY, -INFINITY},
                                             std::vector<float>(37, std::nanf(""))};
    for (int64_t n : {1, 15, 16, 17, 33, 100, 4096, 50257}) {
      auto x = random_vec(n, rng, 3.0f);
      cases.push_back(x);
      for (int64_t at : {int64_t(0), n / 2, n - 1}) {  // a tie with a later equal value
        auto t = x;
        t[at] = 50.0f;
        for (int64_t later : {at + 1, at + 16, at + 17, n - 1})
          if (later > at && later < n) t[later] = 50.0f;
        cases.push_back(t);
        if (at > 0) {  // NaNs before and after the top
          t[at - 1] = std::nanf("");
          if (at + 2 < n) t[at + 2] = std::nanf("");
          cases.push_back(t);
        }
      }
      cases.push_back(std::vector<float>(n, -INFINITY));
      cases.push_back(std::vector<float>(n, 1.0f));  // every one the top: index 0
    }
    for (const auto& x : cases) {
      int64_t got_i = -7, want_i = -7;
      const float got = k->max_first(x.data(), static_cast<int64_t>(x.size()), &got_i);
      const float want = reference(x, &want_i);
      CHECK(std::memcmp(&got, &want, sizeof(float)) == 0);
      CHECK(got_i == want_i);
    }
  }
}

// The vector exp, gelu_tanh, silu and gelu_erf (simd_kernels.inc's exp_vec, gelu_tanh_vec,
// silu_vec and gelu_erf_vec) on every ISA against double precision over their whole range.
// exp through sum_exp of 16 equal values (16 exp(x), the lane sums exact) and exp_floats:
// within 4 ulp.
// The GELUs through a float32 linear with K = 1 and weight 1 (its epilogue sees x itself),
// silu through glu_rows with up = 1: within 4 ulp (gelu_erf 8) of the result plus what one
// ulp of their argument does to it (tanhf and erff have that sensitivity too), or 1e-30
// (the vector paths return 0 far below zero), and exactly x or 0 in the tails; glu_rows'
// gelu_tanh and gelu_erf the epilogues' bits.
static void test_exp_gelu_accuracy() {
  std::vector<float> xs;
  for (float x = -30.0f; x <= 30.0f; x += 0.0137f) xs.push_back(x);
  for (float x : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-6f, -1e-6f, 87.0f, -87.0f, 1e4f, -1e4f, 3e38f,
                  -3e38f, INFINITY, -INFINITY})
    xs.push_back(x);
  for (const char* isa : cpu::kIsaNames) {
    const cpu::SimdKernels* k = cpu::simd_by_name(isa);
    if (!k) continue;
    double worst_exp = 0;
    for (float x = -87.0f; x <= 0.0f; x += 0.00731f) {
      std::vector<float> same(16, x);
      const double got = k->sum_exp(same.data(), 16, 0.0f) / 16.0, want = std::exp(double(x));
      worst_exp = std::max(worst_exp, std::fabs(got - want) / (want * 0x1p-23));
    }
    // exp_floats (the sampler's weights) in place, 1001 values: a partial last vector too
    std::vector<float> e(1001);
    for (size_t i = 0; i < e.size(); ++i) e[i] = -87.0f * float(i) / 1000.0f;
    const std::vector<float> args = e;
    k->exp_floats(e.data(), int64_t(e.size()));
    for (size_t i = 0; i < e.size(); ++i) {
      const double want = std::exp(double(args[i]));
      worst_exp = std::max(worst_exp, std::fabs(e[i] - want) / (want * 0x1p-23));
    }
    CHECK(worst_exp <= 4.0);
    // The worst error of got[i] over xs against f(x) = {value, slope}, in units of `ulps`
    // ulp of the value plus twice `slope` (what one ulp of the input does to the value)
    // plus 1e-30, and where; the tails (|x| > 1e3, inf) exactly x (x > 0) or 0.
    struct Worst {
      double error = 0, at = 0;
    };
    auto worst_of = [&](const std::vector<float>& got, double ulps, auto f) {
      Worst w;
      for (size_t i = 0; i < xs.size(); ++i) {
        const double x = xs[i];
        if (std::isinf(x) || std::fabs(x) > 1e3) {
          CHECK(x > 0 ? got[i] == xs[i] : got[i] == 0.0f);
          continue;
        }
        const auto [want, slope] = f(x);
        const double e = std::fabs(got[i] - want) /
                         (ulps * std::fabs(want) * 0x1p-23 + 2.0 * slope + 1e-30);
        if (e > w.error) w = {e, x};
      }
      return w;
    };
    const float one = 1.0f;
    const Packed p = pack(std::vector<float>{one}, 1, 1, WeightFormat::kF32);
    auto through_epilogue = [&](Epilogue ep) {
      std::vector<float> y(xs.size());
      k->of(WeightFormat::kF32).float_rows(xs.data(), int64_t(xs.size()), p.matrix(1, 1), 0, 1,
                                           nullptr, ep, y.data());
      return y;
    };
    // gelu_tanh: 0.5 (1 + tanh u) = s and 0.5 (1 - tanh^2 u) = 2 s (1 - s), s = 1 / (1 +
    // exp(-2u)), written so that neither cancels where tanh u is near -1; one ulp of u.
    const std::vector<float> gelu = through_epilogue(Epilogue::kGeluTanh);
    const Worst tanh_w = worst_of(gelu, 4.0, [](double x) {
      const double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
      const double s = 1.0 / (1.0 + std::exp(-2.0 * u)), rest = 1.0 / (1.0 + std::exp(2.0 * u));
      return std::pair<double, double>{x * s, std::fabs(2.0 * x * s * rest * u) * 0x1p-23};
    });
    // gelu_erf: x Phi(x), 8 ulp.
    const std::vector<float> erf = through_epilogue(Epilogue::kGeluErf);
    const Worst erf_w = worst_of(erf, 8.0, [](double x) {
      const double phi = 0.5 * std::erfc(-x / std::sqrt(2.0));
      const double density = std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI);
      return std::pair<double, double>{x * phi, std::fabs((phi + x * density) * x) * 0x1p-23};
    });
    // glu_rows with up = 1 is the activation itself: silu against double; gelu_tanh and
    // gelu_erf the epilogues' bits, relu exactly.
    const int64_t F = int64_t(xs.size());
    std::vector<float> in(2 * F, 1.0f), act(F);
    std::copy(xs.begin(), xs.end(), in.begin());
    k->glu_rows(in.data(), 1, F, Activation::kSilu, act.data());
    const Worst silu_w = worst_of(act, 4.0, [](double x) {
      const double s = 1.0 / (1.0 + std::exp(-x));
      return std::pair<double, double>{x * s, std::fabs(s * (1.0 + x * (1.0 - s)) * x) * 0x1p-23};
    });
    auto same = [](float a, float b) { return a == b || (a != a && b != b); };
    k->glu_rows(in.data(), 1, F, Activation::kGeluTanh, act.data());
    for (int64_t i = 0; i < F; ++i) CHECK(same(act[i], gelu[i]));
    k->glu_rows(in.data(), 1, F, Activation::kGeluErf, act.data());
    for (int64_t i = 0; i < F; ++i) CHECK(same(act[i], erf[i]));
    k->glu_rows(in.data(), 1, F, Activation::kRelu, act.data());
    for (int64_t i = 0; i < F; ++i) CHECK(act[i] == (xs[i] > 0.0f ? xs[i] : 0.0f));
    std::printf("%s: exp within %.2f ulp; of their bounds gelu_tanh %.2f (worst at x = %g), "
                "gelu_erf %.2f (at %g), silu %.2f (at %g)\n", isa, worst_exp, tanh_w.error,
                tanh_w.at, erf_w.error, erf_w.at, silu_w.error, silu_w.at);
    CHECK(tanh_w.error <= 1.0);
    CHECK(erf_w.error <= 1.0);
    CHECK(silu_w.error <= 1.0);
  }
}

static void test_half_conversion() {
  const float values[] = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f,
                          0.33325195f, INFINITY};
  for (float v : values) {
    const _Float16 h = static_cast<_Float16>(v);
    uint16_t bits;
    std::memcpy(&bits, &h, 2);
    CHECK(cpu::half_to_float(bits) == static_cast<float>(h));
  }
  CHECK(std::isnan(cpu::half_to_float(0x7E00)));
}

static void test_layer_norm(Context& ctx) {
  std::mt19937 rng(4);
  for (int64_t D : {1, 5, 64, 769}) {
    const int64_t M = 3;
    auto x = random_vec(M * D, rng, 3.0f), g = random_vec(D, rng), b = random_vec(D, rng);
    std::vector<float> y(M * D);
    ctx.backend().layer_norm(ctx, x.data(), M, D, g.data(), b.data(), 1e-5f, y.data());
    for (int64_t m = 0; m < M; ++m) {
      double mean = 0, var = 0;
      for (int64_t i = 0; i < D; ++i) mean += x[m * D + i];
      mean /= D;
      for (int64_t i = 0; i < D; ++i) var += (x[m * D + i] - mean) * (x[m * D + i] - mean);
      var /= D;
      for (int64_t i = 0; i < D; ++i)
        CHECK_NEAR(y[m * D + i], (x[m * D + i] - mean) / std::sqrt(var + 1e-5) * g[i] + b[i], 1e-5);
    }
  }
}

// The norms' statistics as simd_norm.inc orders them: 8 lanes, lane j adds the terms
// i = j (mod 8) in order, then the lanes in a fixed tree (0+4, 1+5, 2+6, 3+7; 0+2, 1+3; 0+1).
static double norm_lane_sum(const std::vector<double>& terms) {
  double lane[8] = {};
  for (size_t i = 0; i < terms.size(); ++i) lane[i % 8] += terms[i];
  for (int width = 4; width >= 1; width /= 2)
    for (int i = 0; i < width; ++i) lane[i] += lane[i + width];
  return lane[0];
}

// Every ISA's LayerNorm / RMSNorm rows bit for bit against that scalar model (the output:
// float32 (x - mean) * inv * gamma + beta, gamma * (x * inv)), rows far from zero mean
// and rows with a partial last 8 included; and the model within 1e-5 of the plain
// formulas in long double. (Sums of float32 values in double are often exact in any
// order; what this catches is a lane past the row that adds a term, or an output formula
// that rounds differently: a broken tail mask failed 502 checks.)
static void test_norm_rows_bit_identical() {
  std::mt19937 rng(21);
  for (int64_t D : {1, 5, 8, 9, 64, 257, 768, 4099}) {
    const int64_t M = 7;  // a group of 4 rows (simd_norm.inc's kNormRows), then 3 alone
    auto x = random_vec(M * D, rng, 3.0f), g = random_vec(D, rng), b = random_vec(D, rng);
    for (int64_t i = D; i < 2 * D; ++i) x[i] += 1000.0f;  // rows 1 and 5: a large mean
    for (int64_t i = 5 * D; i < 6 * D; ++i) x[i] += 1000.0f;
    std::vector<float> ln(M * D), ln_nb(M * D), rms(M * D);
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x.data() + m * D;
      std::vector<double> terms(xr, xr + D);
      const double mean = norm_lane_sum(terms) / D;
      for (int64_t i = 0; i < D; ++i) terms[i] = (xr[i] - mean) * (xr[i] - mean);
      const float inv = static_cast<float>(1.0 / std::sqrt(norm_lane_sum(terms) / D + 1e-5f));
      const float mu = static_cast<float>(mean);
      for (int64_t i = 0; i < D; ++i) terms[i] = double(xr[i]) * xr[i];
      const float rinv = static_cast<float>(1.0 / std::sqrt(norm_lane_sum(terms) / D + 1e-6f));
      long double lmean = 0, lvar = 0, lsq = 0;
      for (int64_t i = 0; i < D; ++i) lmean += xr[i];
      lmean /= D;
      for (int64_t i = 0; i < D; ++i) {
        lvar += (xr[i] - lmean) * (xr[i] - lmean);
        lsq += (long double)xr[i] * xr[i];
      }
      // (x - mean in float32 loses what float32 cannot hold of x: more far from 0.)
      const double tol = m == 1 || m == 5 ? 2e-4 : 1e-5;
      for (int64_t i = 0; i < D; ++i) {
        const float v = (xr[i] - mu) * inv * g[i];
        ln_nb[m * D + i] = v;
        ln[m * D + i] = v + b[i];
        rms[m * D + i] = g[i] * (xr[i] * rinv);
        CHECK_NEAR(ln[m * D + i], (xr[i] - lmean) / std::sqrt(lvar / D + 1e-5L) * g[i] + b[i], tol);
        CHECK_NEAR(rms[m * D + i], g[i] * xr[i] / std::sqrt(lsq / D + 1e-6L), 1e-5);
      }
    }
    for (const char* name : cpu::kIsaNames) {
      const cpu::SimdKernels* k = cpu::simd_by_name(name);
      if (!k) continue;
      std::vector<float> y(M * D), y_nb(M * D), z(M * D);
      k->layer_norm_rows(x.data(), M, D, g.data(), b.data(), 1e-5f, y.data());
      k->layer_norm_rows(x.data(), M, D, g.data(), nullptr, 1e-5f, y_nb.data());
      k->rms_norm_rows(x.data(), M, D, g.data(), 1e-6f, z.data());
      CHECK(std::memcmp(y.data(), ln.data(), y.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(y_nb.data(), ln_nb.data(), y.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(z.data(), rms.data(), z.size() * sizeof(float)) == 0);
      std::vector<float> inplace = x;  // the decoder normalises in place too
      k->rms_norm_rows(inplace.data(), M, D, g.data(), 1e-6f, inplace.data());
      CHECK(std::memcmp(inplace.data(), rms.data(), z.size() * sizeof(float)) == 0);
    }
  }
}

static void test_attend() {
  std::mt19937 rng(5);
  for (int64_t Dh : {1, 16, 33, 80}) {
    for (int64_t n : {1, 2, 7, 65}) {
      auto q = random_vec(Dh, rng), K = random_vec(n * Dh, rng), V = random_vec(n * Dh, rng);
      std::vector<float> out(Dh), scores(n);
      const float scale = 1.0f / std::sqrt(float(Dh));
      cpu::attend(q.data(), K.data(), V.data(), n, Dh, scale, out.data(), scores.data());
      std::vector<double> s(n);
      double mx = -1e300, tot = 0;
      for (int64_t j = 0; j < n; ++j) {
        s[j] = 0;
        for (int64_t i = 0; i < Dh; ++i) s[j] += double(q[i]) * K[j * Dh + i];
        s[j] *= scale;
        mx = std::max(mx, s[j]);
      }
      for (int64_t j = 0; j < n; ++j) tot += (s[j] = std::exp(s[j] - mx));
      for (int64_t i = 0; i < Dh; ++i) {
        double r = 0;
        for (int64_t j = 0; j < n; ++j) r += s[j] / tot * V[j * Dh + i];
        CHECK_NEAR(out[i], r, 1e-5);
      }
    }
  }
}

// dot_rows scores each key as dot() does (what beam search's gathered attention uses,
// key by key), bit for bit, and returns the largest, on every ISA: whole and partial
// blocks of keys, heads with and without a tail, rows further apart than the head.
static void test_dot_rows_bit_identical() {
  std::mt19937 rng(22);
  for (const char* isa : cpu::kIsaNames) {
    const cpu::SimdKernels* k = cpu::simd_by_name(isa);
    if (!k) continue;
    for (int64_t Dh : {1, 16, 33, 64, 128}) {
      for (int64_t n : {1, 5, 16, 17, 40, 203}) {
        for (int64_t ld : {Dh, Dh + 3}) {
          auto q = random_vec(Dh, rng, 2.0f), K = random_vec(n * ld, rng, 2.0f);
          std::vector<float> scores(n + 1, -7.0f);
          const float scale = 0.37f;
          const float mx = k->dot_rows(q.data(), K.data(), ld, n, Dh, scale, scores.data());
          float want_max = -INFINITY;
          for (int64_t j = 0; j < n; ++j) {
            const float want = k->dot(q.data(), K.data() + j * ld, Dh) * scale;
            CHECK(std::memcmp(&want, &scores[j], sizeof(float)) == 0);
            want_max = std::max(want_max, want);
          }
          CHECK(mx == want_max);
          CHECK(scores[n] == -7.0f);  // nothing past the n scores is written
        }
      }
    }
  }
}

// A block of consecutive queries (attend_queries) gives, bit for bit, what the
// per-query kernels give each query alone, on every ISA: the prompt pass and decoding
// agree exactly. Head sizes with and without a tail, blocks at the start of a row and
// further in (from 40, blocks of keys that every query of the block sees, which are
// scored for several queries at once), every block length up to the lanes.
static void test_attend_queries_bit_identical() {
  std::mt19937 rng(21);
  for (const char* isa : cpu::kIsaNames) {
    const cpu::SimdKernels* k = cpu::simd_by_name(isa);
    if (!k) continue;
    const int64_t lanes = k->attention_lanes();
    for (int64_t Dh : {1, 16, 33, 64, 80, 128}) {
      for (int64_t n0 : {0, 1, 7, 40, 101}) {
        for (int64_t T = 1; T <= lanes; ++T) {
          const int64_t ldq = Dh + 3, ldo = Dh + 5, n = n0 + T;
          auto Q = random_vec(T * ldq, rng, 2.0f), K = random_vec(n * Dh, rng, 2.0f),
               V = random_vec(n * Dh, rng);
          const float scale = 1.0f / std::sqrt(float(Dh));
          std::vector<float> out(T * ldo, -7.0f), work((Dh + n) * lanes), scores(n), one(Dh);
          k->attend_queries(Q.data(), ldq, K.data(), V.data(), n0, T, Dh, scale, out.data(), ldo,
                            work.data());
          for (int64_t t = 0; t < T; ++t) {
            const int64_t keys = n0 + t + 1;
            const float mx = k->dot_rows(Q.data() + t * ldq, K.data(), Dh, keys, Dh, scale, scores.data());
            const float inv = static_cast<float>(1.0 / k->exp_shift(scores.data(), keys, mx));
            k->weighted_rows(scores.data(), inv, V.data(), Dh, keys, Dh, one.data());
            CHECK(std::memcmp(one.data(), out.data() + t * ldo, Dh * sizeof(float)) == 0);
            CHECK(out[t * ldo + Dh] == -7.0f);  // nothing past the row is written
          }
        }
      }
    }
  }
}

// The backend's attention op: K/V stored at each token's slot, then causal
// attention over its row, against a scalar computation from the same qkv;
// multi-head (KVH = H) and grouped-query (KVH < H) layouts.
static void test_attention(Context& ctx) {
  std::mt19937 rng(10);
  for (int64_t KVH : {3, 1}) {
    const ModelConfig c = fgpt_test::attention_config(2, 3, KVH, 11);
    const int64_t H = 3, Dh = 11, Q = H * Dh, S = (H + 2 * KVH) * Dh, rows = 2, P = 9;
    KVCache& cache = ctx.kv_cache();
    cache.allocate(c, rows, P);
    // Row 0 gets 5 tokens in one pass, row 1 gets 3; then one more token each.
    std::vector<TokenSlot> first, second = {{0, 5}, {1, 3}};
    for (int64_t j = 0; j < 5; ++j) first.push_back({0, j});
    for (int64_t j = 0; j < 3; ++j) first.push_back({1, j});
    std::vector<std::vector<float>> all_qkv(rows);  // per row: every token's qkv so far
    for (const auto* pass : {&first, &second}) {
      const int64_t M = static_cast<int64_t>(pass->size());
      auto qkv = random_vec(M * S, rng);
      std::vector<float> out(M * Q);
      ctx.backend().attention(ctx, cache, 1, H, qkv.data(), pass->data(), M, out.data());
      for (int64_t m = 0; m < M; ++m) {
        const TokenSlot s = (*pass)[m];
        auto& hist = all_qkv[s.row];
        hist.insert(hist.end(), qkv.begin() + m * S, qkv.begin() + (m + 1) * S);
        const int64_t n = s.slot + 1;
        for (int64_t h = 0; h < H; ++h) {
          const int64_t kv = h / (H / KVH);
          const float* q = hist.data() + s.slot * S + h * Dh;
          std::vector<double> w(n);
          double mx = -1e300, tot = 0;
          for (int64_t j = 0; j < n; ++j) {
            double d = 0;
            for (int64_t i = 0; i < Dh; ++i) d += double(q[i]) * hist[j * S + Q + kv * Dh + i];
            w[j] = d / std::sqrt(double(Dh));
            mx = std::max(mx, w[j]);
          }
          for (auto& v : w) tot += (v = std::exp(v - mx));
          for (int64_t i = 0; i < Dh; ++i) {
            double r = 0;
            for (int64_t j = 0; j < n; ++j)
              r += w[j] / tot * hist[j * S + Q + KVH * Dh + kv * Dh + i];
            CHECK_NEAR(out[m * Q + h * Dh + i], r, 1e-5);
          }
        }
      }
    }
  }
}

// The attention op's split between threads changes no bit: a prompt long enough to be
// shared out, then one more token, on 1, 2 and 3 threads, with key/value heads that the
// threads divide (each thread stores its own heads' keys and values) and that they do
// not (one thread stores them all first); every key and value lands in the cache.
static void test_attention_split_by_threads() {
  std::mt19937 rng(14);
  for (int64_t KVH : {4, 2, 1}) {
    const int64_t H = 4, Dh = 64, Q = H * Dh, S = (H + 2 * KVH) * Dh, P = 200;
    const ModelConfig c = fgpt_test::attention_config(1, H, KVH, Dh);
    const auto qkv = random_vec((P + 1) * S, rng);
    std::vector<TokenSlot> slots;
    for (int64_t j = 0; j <= P; ++j) slots.push_back({0, j});
    std::vector<float> first;
    for (int threads : {1, 2, 3}) {
      Context ctx(cpu_backend(), threads);
      KVCache& cache = ctx.kv_cache();
      cache.allocate(c, 1, P + 1);
      std::vector<float> out((P + 1) * Q);
      ctx.backend().attention(ctx, cache, 0, H, qkv.data(), slots.data(), P, out.data());
      ctx.backend().attention(ctx, cache, 0, H, qkv.data() + P * S, slots.data() + P, 1,
                              out.data() + P * Q);
      for (int64_t j = 0; j <= P; ++j)
        for (int64_t h = 0; h < KVH; ++h) {
          CHECK(std::equal(cache.key(0, 0, h, j), cache.key(0, 0, h, j) + Dh,
                           qkv.begin() + j * S + Q + h * Dh));
          CHECK(std::equal(cache.value(0, 0, h, j), cache.value(0, 0, h, j) + Dh,
                           qkv.begin() + j * S + Q + (KVH + h) * Dh));
        }
      if (first.empty())
        first = out;
      else
        CHECK(out == first);
    }
  }
}

// Attention over histories shared through the cache's source rows (beam search):
// row 2 reads its positions from rows [0, 1, 0, 2] and then its own new token;
// the result equals scalar attention over the gathered keys and values.
static void test_attention_sources(Context& ctx) {
  std::mt19937 rng(12);
  const ModelConfig c = fgpt_test::attention_config(1, 2, 1, 7);
  const int64_t H = 2, KVH = 1, Dh = 7, Q = H * Dh, S = (H + 2 * KVH) * Dh, rows = 3, P = 6;
  KVCache& cache = ctx.kv_cache();
  cache.allocate(c, rows, P);
  std::vector<TokenSlot> first;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < 4; ++j) first.push_back({r, j});
  auto qkv1 = random_vec(12 * S, rng);
  std::vector<float> out1(12 * Q);
  ctx.backend().attention(ctx, cache, 0, H, qkv1.data(), first.data(), 12, out1.data());
  cache.enable_sources();
  const int32_t from[5] = {0, 1, 0, 2, 2};
  std::copy(from, from + 5, cache.sources(2));
  const TokenSlot next = {2, 4};
  auto qkv2 = random_vec(S, rng);
  std::vector<float> out2(Q);
  ctx.backend().attention(ctx, cache, 0, H, qkv2.data(), &next, 1, out2.data());
  // Key/value j of the gathered history: row from[j]'s token at position j.
  auto kv = [&](int64_t j, int64_t part) -> const float* {
    const float* t = j < 4 ? qkv1.data() + (from[j] * 4 + j) * S : qkv2.data();
    return t + Q + part * KVH * Dh;
  };
  for (int64_t h = 0; h < H; ++h) {
    const float* q = qkv2.data() + h * Dh;
    std::vector<double> w(5);
    double mx = -1e300, tot = 0;
    for (int64_t j = 0; j < 5; ++j) {
      double d = 0;
      for (int64_t i = 0; i < Dh; ++i) d += double(q[i]) * kv(j, 0)[i];
      w[j] = d / std::sqrt(double(Dh));
      mx = std::max(mx, w[j]);
    }
    for (auto& v : w) tot += (v = std::exp(v - mx));
    for (int64_t i = 0; i < Dh; ++i) {
      double r = 0;
      for (int64_t j = 0; j < 5; ++j) r += w[j] / tot * kv(j, 1)[i];
      CHECK_NEAR(out2[h * Dh + i], r, 1e-5);
    }
  }
  cache.allocate(c, rows, P);  // a new call starts without sources
  CHECK(!cache.has_sources());
}

// RMSNorm, the gated MLP activation and rotary embeddings against scalar formulas.
static void test_norm_glu_rotary(Context& ctx) {
  std::mt19937 rng(12);
  const int64_t M = 3, D = 37, F = 19;
  auto x = random_vec(M * D, rng, 2.0f), g = random_vec(D, rng);
  std::vector<float> y(M * D);
  ctx.backend().rms_norm(ctx, x.data(), M, D, g.data(), 1e-6f, y.data());
  for (int64_t m = 0; m < M; ++m) {
    double sq = 0;
    for (int64_t i = 0; i < D; ++i) sq += double(x[m * D + i]) * x[m * D + i];
    for (int64_t i = 0; i < D; ++i)
      CHECK_NEAR(y[m * D + i], g[i] * x[m * D + i] / std::sqrt(sq / D + 1e-6), 1e-5);
  }
  auto in = random_vec(M * 2 * F, rng, 2.0f);
  std::vector<float> out(M * F);
  ctx.backend().glu(ctx, in.data(), M, F, Activation::kSilu, out.data());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < F; ++i) {
      const double gt = in[m * 2 * F + i], up = in[m * 2 * F + F + i];
      CHECK_NEAR(out[m * F + i], gt / (1 + std::exp(-gt)) * up, 1e-5);
    }
  // Rotary: 2 q heads + 1 k head of size 6, rotary dim 4, both pair layouts.
  const int64_t H = 2, KVH = 1, Dh = 6, half = 2, S = (H + 2 * KVH) * Dh;
  std::vector<float> cs = {1, 1, 0.6f, 0.8f}, sn = {0, 0, 0.8f, -0.6f};  // positions 0, 1
  for (bool interleaved : {false, true}) {
    const RotaryTable table{cs.data(), sn.data(), half, interleaved};
    auto qkv = random_vec(2 * S, rng);
    auto before = qkv;
    const TokenSlot slots[] = {{0, 1}, {0, 0}};
    ctx.backend().rotary(ctx, qkv.data(), slots, 2, H, KVH, Dh, table);
    for (int64_t m = 0; m < 2; ++m)
      for (int64_t h = 0; h < H + 2 * KVH; ++h) {
        const float* b = before.data() + m * S + h * Dh;
        const float* a = qkv.data() + m * S + h * Dh;
        std::vector<double> want(b, b + Dh);
        if (h < H + KVH)  // values are not rotated
          for (int64_t i = 0; i < half; ++i) {
            const int64_t i0 = interleaved ? 2 * i : i, i1 = interleaved ? 2 * i + 1 : i + half;
            const double c = cs[slots[m].slot * half + i], s = sn[slots[m].slot * half + i];
            want[i0] = b[i0] * c - b[i1] * s;
            want[i1] = b[i1] * c + b[i0] * s;
          }
        for (int64_t i = 0; i < Dh; ++i) CHECK_NEAR(a[i], want[i], 1e-6);
      }
  }
}

// The backend's embedding lookup: dequantised table row + position row.
static void test_embed(Context& ctx) {
  std::mt19937 rng(11);
  const int64_t V = 13, D = 37, P = 6;
  auto table = random_vec(V * D, rng), pos = random_vec(P * D, rng);
  const int64_t tokens[] = {0, 12, 5};
  const TokenSlot slots[] = {{0, 0}, {0, 5}, {1, 2}};
  for (const WeightFormatInfo& format : kWeightFormats) {
    const Packed p = pack(table, V, D, format.format);
    std::vector<float> x(3 * D);
    ctx.backend().embed(ctx, p.matrix(V, D), pos.data(), tokens, slots, 3, x.data());
    for (int64_t m = 0; m < 3; ++m)
      for (int64_t i = 0; i < D; ++i)
        CHECK_NEAR(x[m * D + i], p.exact[tokens[m] * D + i] + pos[slots[m].slot * D + i], 1e-6);
  }
}

// What the CUDA backend reads: the packing unpacked to plain rows (matrix.h).
static void test_unpack_float_blocks() {
  std::mt19937 rng(21);
  for (int64_t N : {1, 16, 37})
    for (int64_t K : {1, 5, 64}) {
      const auto w = random_vec(N * K, rng);
      const Packed p32 = pack(w, N, K, WeightFormat::kF32);
      std::vector<float> rows(N * K);
      unpack_float_blocks16(p32.f32.data(), N, K, rows.data());
      CHECK(rows == w);
      const Packed p16 = pack(w, N, K, WeightFormat::kF16);
      std::vector<uint16_t> halves(N * K);
      unpack_float_blocks16(p16.f16.data(), N, K, halves.data());
      for (int64_t i = 0; i < N * K; ++i) CHECK(cpu::half_to_float(halves[i]) == p16.exact[i]);
    }
}

// The element-wise math the GPU shares with the CPU (activation_math.h) against the
// CPU's vectorised epilogue and std:: functions.
static void test_shared_activation_math() {
  for (float v = -8.0f; v <= 8.0f; v += 0.37f) {
    CHECK_NEAR(gelu_erf_scalar(v), 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))), 1e-6);
    CHECK_NEAR(gelu_tanh_scalar(v),
               0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))),
               1e-6);
    CHECK_NEAR(silu_scalar(v), v / (1.0 + std::exp(-double(v))), 1e-6);
    CHECK(relu_scalar(v) == (v > 0 ? v : 0.0f));
    CHECK(epilogue_value(Epilogue::kAccumulate, v, 2.0f) == 2.0f + v);
    CHECK(epilogue_value(Epilogue::kStore, v, 2.0f) == v);
    CHECK(activate(Activation::kGeluErf, v) == gelu_erf_scalar(v));
  }
}

// ---- matmul_precision=bfloat16 ----------------------------------------------------------
// A scalar model of the arithmetic, from Intel's description of vcvtne2ps2bf16 and
// vdpbf16ps: a float rounds to bfloat16 to nearest even, denormals become (signed) zero and
// a NaN stays a quiet NaN; each vdpbf16ps lane adds the product of the odd pair and then of
// the even pair to its sum, each addition rounded to float32, a denormal result flushed.
static uint16_t bf16_model(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  const uint32_t exponent = (b >> 23) & 0xFF, mantissa = b & 0x7FFFFF;
  if (exponent == 0xFF && mantissa) return static_cast<uint16_t>((b >> 16) | 0x40);
  if (exponent == 0) return static_cast<uint16_t>((b >> 16) & 0x8000);
  return fgpt_test::bfloat16_bits(x);
}
static float flush_denormal(float v) {
  return std::fpclassify(v) == FP_SUBNORMAL ? std::copysign(0.0f, v) : v;
}
// y[m, n] = bias[n] + sum over pairs of x[m, :] . w[n, :] (w: the format's exact weights)
static float bf16_dot_model(const float* x, const float* w, int64_t K) {
  float acc = 0.0f;
  for (int64_t k = 0; k < K; k += 2) {
    const float x1 = k + 1 < K ? bf16_value(bf16_model(x[k + 1])) : 0.0f;
    const float w1 = k + 1 < K ? bf16_value(bf16_model(w[k + 1])) : 0.0f;
    acc = flush_denormal(std::fma(x1, w1, acc));
    acc = flush_denormal(std::fma(bf16_value(bf16_model(x[k])), bf16_value(bf16_model(w[k])), acc));
  }
  return acc;
}

static void test_bf16_matmul() {
  const cpu::SimdKernels* k = cpu::simd_by_name("avx512bf16");
  if (!k) {
    std::printf("no AVX-512 BF16 here: the bfloat16 kernels are not tested\n");
    return;
  }
  std::mt19937 rng(7);
  // The activations' conversion, special values included, for every length up to 70.
  std::vector<float> special = {0.0f, -0.0f, 1.0f, 1.00390625f /* a tie */, 1.01171875f /* a tie, odd */,
                                3.4e38f /* rounds to inf */, -INFINITY, INFINITY, NAN, -NAN,
                                1e-40f /* denormal */, -1e-39f, 1.17549435e-38f /* FLT_MIN */};
  for (int64_t K = 1; K <= 70; ++K) {
    std::vector<float> x = random_vec(2 * K, rng);
    for (size_t i = 0; i < special.size() && i < x.size(); ++i) x[(i * 7) % x.size()] = special[i];
    const int64_t Kp = (K + 1) / 2;
    std::vector<uint32_t> got(2 * Kp + 1, 0xDEADBEEF);
    k->to_bf16_pairs(x.data(), 2, K, got.data());
    for (int64_t m = 0; m < 2; ++m)
      for (int64_t j = 0; j < Kp; ++j) {
        const uint32_t lo = bf16_model(x[m * K + 2 * j]);
        const uint32_t hi = 2 * j + 1 < K ? bf16_model(x[m * K + 2 * j + 1]) : 0;
        CHECK(got[m * Kp + j] == (lo | hi << 16));
      }
    CHECK(got[2 * Kp] == 0xDEADBEEF);  // nothing written past the rows
  }
  // The kernels against the model, bit for bit, for both float formats, shapes below and
  // above a tile, odd K, partial blocks, a bias or none, a store or the residual add; and
  // through the backend at 1 and 2 threads, where every row must equal its result alone.
  const int64_t shapes[][3] = {{1, 1, 1}, {1, 7, 5},   {3, 17, 33},  {5, 80, 67},
                               {8, 768, 40}, {9, 33, 17}, {37, 96, 130}, {70, 64, 9}};
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], K = sh[1], N = sh[2];
    auto x = random_vec(M * K, rng), w0 = random_vec(N * K, rng), b = random_vec(N, rng);
    x[0] = 1e-39f;  // a denormal activation: flushed
    for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16, WeightFormat::kBF16}) {
      const Packed p = pack(w0, N, K, f);
      for (bool with_bias : {false, true})
        for (Epilogue ep : {Epilogue::kStore, Epilogue::kAccumulate}) {
          const float* bias = with_bias ? b.data() : nullptr;
          const auto y0 = random_vec(M * N, rng);
          std::vector<float> ref = y0;
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              float v = bf16_dot_model(x.data() + m * K, p.exact.data() + n * K, K);
              if (bias) v += bias[n];
              ref[m * N + n] = ep == Epilogue::kStore ? v : y0[m * N + n] + v;
            }
          std::vector<uint32_t> pairs(M * bf16_pair_words(K));
          k->to_bf16_pairs(x.data(), M, K, pairs.data());
          std::vector<float> y = y0;
          k->of(f).bf16_rows(pairs.data(), M, p.matrix(N, K), 0, N, bias, ep, y.data());
          CHECK(std::memcmp(y.data(), ref.data(), y.size() * 4) == 0);
          if (cpu::simd().to_bf16_pairs != k->to_bf16_pairs) continue;  // not the chosen ISA
          for (int threads : {1, 2}) {
            Context ctx(cpu_backend(), threads);
            ctx.set_matmul_precision(MatmulPrecision::kBFloat16);
            y = y0;
            ctx.backend().linear(ctx, x.data(), M, p.matrix(N, K), bias, ep, y.data());
            CHECK(std::memcmp(y.data(), ref.data(), y.size() * 4) == 0);
          }
        }
      // Close to the float64 product: bfloat16 keeps 8 bits of each factor.
      std::vector<uint32_t> pairs(M * bf16_pair_words(K));
      k->to_bf16_pairs(x.data(), M, K, pairs.data());
      std::vector<float> y(M * N);
      k->of(f).bf16_rows(pairs.data(), M, p.matrix(N, K), 0, N, nullptr, Epilogue::kStore, y.data());
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double acc = 0;
          for (int64_t j = 0; j < K; ++j) acc += double(x[m * K + j]) * p.exact[n * K + j];
          CHECK_NEAR(y[m * N + n], acc, 1e-2 * std::sqrt(double(K)));
        }
    }
  }
  // Sums that reach the denormal range are flushed, as the model says.
  {
    const int64_t K = 2, N = 16;
    std::vector<float> x = {1e-20f, 1e-19f}, w(N * K, 1e-19f);
    const Packed p = pack(w, N, K, WeightFormat::kF32);
    std::vector<uint32_t> pairs(1);
    k->to_bf16_pairs(x.data(), 1, K, pairs.data());
    std::vector<float> y(N, 1.0f);
    k->of(WeightFormat::kF32).bf16_rows(pairs.data(), 1, p.matrix(N, K), 0, N, nullptr,
                                        Epilogue::kStore, y.data());
    CHECK(y[0] == bf16_dot_model(x.data(), p.exact.data(), K));
    CHECK(y[0] == 0.0f);
  }
}

// A backend without bfloat16 kernels refuses the setting by name.
static void test_bf16_refusal() {
  Backend no_bf16 = cpu_backend();
  no_bf16.name = "emulated";
  no_bf16.bf16_matmul = false;
  Context ctx(no_bf16, 1);
  CHECK_THROWS_WITH(ctx.set_matmul_precision(MatmulPrecision::kBFloat16),
                    "matmul_precision=bfloat16: the emulated backend cannot multiply in it");
  ctx.set_matmul_precision(MatmulPrecision::kFloat32);
  CHECK(ctx.matmul_precision() == MatmulPrecision::kFloat32);
  CHECK(cpu_backend().bf16_matmul == (cpu::simd_by_name("avx512bf16") != nullptr));
}

int main() {
  std::printf("CPU kernels use %s\n", cpu_isa_name());
  for (const Backend* backend : {&cpu_backend()}) {
    for (int threads : {1, 2}) {
      std::printf("backend %s, %d thread(s)\n", backend->name, threads);
      Context ctx(*backend, threads);
      test_linear(ctx);
      if (backend->host_memory) test_int4_column_order(ctx);
      test_layer_norm(ctx);
      test_attention(ctx);
      test_attention_sources(ctx);
      test_norm_glu_rotary(ctx);
      test_embed(ctx);
    }
  }
  test_simd_paths();
  test_attention_split_by_threads();
  test_linear_deterministic();
  test_attend();
  test_norm_rows_bit_identical();
  test_dot_rows_bit_identical();
  test_attend_queries_bit_identical();
  test_half_conversion();
  test_sum_exp();
  test_max_first();
  test_exp_gelu_accuracy();
  test_int8_linear();
  test_float_blocks_are_bit_identical();
  test_int4_linear();
  test_weight_formats();
  test_unpack_float_blocks();
  test_shared_activation_math();
  test_bf16_matmul();
  test_bf16_refusal();
  TEST_MAIN_END();
}
