// A float16 KV cache (kv_cache_dtype=float16): what it stores for a float, against the
// compiler's own float -> _Float16 conversion (round to nearest even) after the clamp
// to +-65504; the float16 attention kernels of every ISA, bit for bit what the float32
// ones give over the floats the halves hold; and the backend's attention op over a
// float16 cache, bit for bit the float32 cache's result when the keys and values are
// half-representable (prompt blocks, single tokens, grouped heads, gathered histories).
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "../../csrc/core/context.h"
#include "../../csrc/core/error.h"
#include "../../csrc/core/kernels.h"
#include "../../csrc/cpu/half.h"
#include "../../csrc/cpu/simd_kernels.h"
#include "check.h"
#include "test_data.h"

using namespace fastergpt;
using fgpt_test::random_vec;

// The reference: clamp, then the compiler's conversion.
static uint16_t reference_half(float v) {
  return fgpt_test::half_bits(std::isnan(v) ? v : std::fmax(-65504.0f, std::fmin(65504.0f, v)));
}

static float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

static void test_store_half() {
  std::vector<float> values = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 65519.0f, 65520.0f, 70000.0f,
                               -1e30f, 1e-8f, -3e-8f, 2.98023224e-08f /* half the least half */,
                               5.9604645e-08f, 8.940697e-08f /* 1.5 units: ties to even */,
                               6.1035156e-05f, 6.1e-05f, 0.33325195f, INFINITY, -INFINITY,
                               std::numeric_limits<float>::denorm_min()};
  // Every half and the midpoints between neighbours (ties), and random bit patterns.
  for (uint32_t h = 0; h < 0x7C00; ++h) {
    const float a = cpu::half_to_float(static_cast<uint16_t>(h));
    values.push_back(a);
    values.push_back(-a);
    if (h + 1 < 0x7C00) {
      const float b = cpu::half_to_float(static_cast<uint16_t>(h + 1));
      values.push_back(static_cast<float>((static_cast<double>(a) + b) / 2));
    }
  }
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) {
    const float v = from_bits(static_cast<uint32_t>(rng()));
    if (!std::isnan(v)) values.push_back(v);
  }
  const int64_t n = static_cast<int64_t>(values.size());
  for (int64_t i = 0; i < n; ++i)
    CHECK(cpu::float_to_half_clamped(values[i]) == reference_half(values[i]));
  for (const char* isa : cpu::kIsaNames) {
    const cpu::SimdKernels* k = cpu::simd_by_name(isa);
    if (!k) continue;
    std::vector<uint16_t> out(n + 1, 0xABCD);
    k->store_half(values.data(), n, out.data());
    for (int64_t i = 0; i < n; ++i) CHECK(out[i] == reference_half(values[i]));
    CHECK(out[n] == 0xABCD);  // nothing past n is written
    const float nan = std::numeric_limits<float>::quiet_NaN();
    uint16_t h = 0;
    k->store_half(&nan, 1, &h);
    CHECK(std::isnan(cpu::half_to_float(h)));
  }
  CHECK(std::isnan(cpu::half_to_float(cpu::float_to_half_clamped(std::nanf("")))));
}

static std::vector<uint16_t> to_halves(const cpu::SimdKernels& k, const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  k.store_half(x.data(), static_cast<int64_t>(x.size()), h.data());
  return h;
}

static std::vector<float> to_floats(const std::vector<uint16_t>& h) {
  std::vector<float> x(h.size());
  for (size_t i = 0; i < h.size(); ++i) x[i] = cpu::half_to_float(h[i]);
  return x;
}

static bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, n * sizeof(float)) == 0;
}

static void test_half_kernels_match_float() {
  std::mt19937 rng(8);
  for (const char* isa : cpu::kIsaNames) {
    const cpu::SimdKernels* k = cpu::simd_by_name(isa);
    if (!k) continue;
    const int64_t lanes = k->attention_lanes();
    for (int64_t Dh : {1, 16, 33, 64, 80}) {
      for (int64_t n : {1, 5, 40}) {
        auto q = random_vec(Dh, rng, 2.0f);
        const auto Kh = to_halves(*k, random_vec(n * Dh, rng, 2.0f));
        const auto Vh = to_halves(*k, random_vec(n * Dh, rng));
        const auto Kf = to_floats(Kh), Vf = to_floats(Vh);
        const float scale = 1.0f / std::sqrt(float(Dh));
        // dot / axpy (beam search's gathered keys)
        const float d16 = k->dot_f16(q.data(), Kh.data(), Dh), d32 = k->dot(q.data(), Kf.data(), Dh);
        CHECK(same_bits(&d16, &d32, 1));
        std::vector<float> y16 = q, y32 = q;
        k->axpy_f16(0.37f, Vh.data(), y16.data(), Dh);
        k->axpy(0.37f, Vf.data(), y32.data(), Dh);
        CHECK(same_bits(y16.data(), y32.data(), Dh));
        // dot_rows / weighted_rows (one query)
        std::vector<float> s16(n), s32(n), o16(Dh), o32(Dh);
        const float m16 = k->dot_rows_f16(q.data(), Kh.data(), Dh, n, Dh, scale, s16.data());
        const float m32 = k->dot_rows(q.data(), Kf.data(), Dh, n, Dh, scale, s32.data());
        CHECK(same_bits(&m16, &m32, 1) && same_bits(s16.data(), s32.data(), n));
        const float inv = static_cast<float>(1.0 / k->exp_shift(s32.data(), n, m32));
        k->weighted_rows_f16(s32.data(), inv, Vh.data(), Dh, n, Dh, o16.data());
        k->weighted_rows(s32.data(), inv, Vf.data(), Dh, n, Dh, o32.data());
        CHECK(same_bits(o16.data(), o32.data(), Dh));
        // attend_queries (a block of a prompt)
        for (int64_t T : {int64_t(1), std::min<int64_t>(n, 3), std::min<int64_t>(n, lanes)}) {
          const int64_t n0 = n - T;
          auto Q = random_vec(T * Dh, rng, 2.0f);
          std::vector<float> a16(T * Dh), a32(T * Dh), work((Dh + n) * lanes);
          k->attend_queries_f16(Q.data(), Dh, Kh.data(), Vh.data(), n0, T, Dh, scale, a16.data(),
                                Dh, work.data());
          k->attend_queries(Q.data(), Dh, Kf.data(), Vf.data(), n0, T, Dh, scale, a32.data(), Dh,
                            work.data());
          CHECK(same_bits(a16.data(), a32.data(), T * Dh));
        }
      }
    }
  }
}

// The same passes through a float32 and a float16 cache: a prompt pass (blocks), a
// decoding step, then a step over gathered histories (beam search's source rows).
static void test_attention_op(Context& ctx32, Context& ctx16) {
  std::mt19937 rng(11);
  for (int64_t KVH : {4, 2}) {
    const ModelConfig c = fgpt_test::attention_config(2, 4, KVH, 24);
    const int64_t H = 4, Dh = 24, Q = H * Dh, S = (H + 2 * KVH) * Dh, rows = 3, P = 40;
    KVCache& a = ctx32.kv_cache();
    KVCache& b = ctx16.kv_cache();
    a.allocate(c, rows, P, KVDtype::kFloat32);
    b.allocate(c, rows, P, KVDtype::kFloat16);
    CHECK(b.dtype() == KVDtype::kFloat16 && b.bytes() * 2 == a.bytes());
    auto run = [&](const std::vector<TokenSlot>& slots) {
      const int64_t M = static_cast<int64_t>(slots.size());
      auto qkv = random_vec(M * S, rng, 3.0f);
      for (int64_t m = 0; m < M; ++m)  // keys and values half-representable
        for (int64_t i = Q; i < S; ++i)
          qkv[m * S + i] = cpu::half_to_float(cpu::float_to_half_clamped(qkv[m * S + i]));
      std::vector<float> o32(M * Q), o16(M * Q);
      ctx32.backend().attention(ctx32, a, 1, H, qkv.data(), slots.data(), M, o32.data());
      ctx16.backend().attention(ctx16, b, 1, H, qkv.data(), slots.data(), M, o16.data());
      CHECK(same_bits(o32.data(), o16.data(), M * Q));
    };
    std::vector<TokenSlot> prompt;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < 21 + r; ++j) prompt.push_back({r, j});
    run(prompt);
    run({{0, 21}, {1, 22}, {2, 23}});
    for (KVCache* cache : {&a, &b}) {
      cache->enable_sources();
      const int32_t from[23] = {0, 1, 0, 2, 2, 1, 1, 0, 0, 0, 2, 1, 0, 1, 2, 0, 0, 0, 1, 1, 2, 0, 1};
      std::copy(from, from + 23, cache->sources(2));
    }
    run({{2, 23}});
    // Copying a prompt to another row (num_return_sequences) copies halves.
    b.copy_prefix(0, 1, 5);
    CHECK(std::memcmp(b.key_half(1, 1, 0, 0), b.key_half(1, 0, 0, 0), 5 * Dh * 2) == 0);
    CHECK(std::memcmp(b.value_half(0, 1, KVH - 1, 0), b.value_half(0, 0, KVH - 1, 0), 5 * Dh * 2) == 0);
  }
}

// A backend without a float16 cache refuses one by name, before any memory is used.
static void test_refusal() {
  Backend no_half = cpu_backend();
  no_half.name = "emulated";
  no_half.half_kv_cache = false;
  KVCache cache(no_half);
  const ModelConfig c = fgpt_test::attention_config(1, 1, 1, 8);
  CHECK_THROWS_WITH(cache.allocate(c, 1, 4, KVDtype::kFloat16),
                    "kv_cache_dtype=float16: the emulated backend keeps its KV cache in float32");
  cache.allocate(c, 1, 4, KVDtype::kFloat32);
  CHECK(cache.bytes() == 2 * 4 * 8 * 4);
  CHECK_THROWS_WITH(cache.key_half(0, 0, 0, 0), "the cache holds float32");
}

int main() {
  test_store_half();
  test_half_kernels_match_float();
  for (int threads : {1, 2}) {
    Context a(cpu_backend(), threads), b(cpu_backend(), threads);
    test_attention_op(a, b);
  }
  test_refusal();
  TEST_MAIN_END();
}
