// The CUDA backend's operations against the CPU backend's (which kernels_test
// checks against a scalar reference), on random inputs over a sweep of shapes:
// float32 within GEMM rounding, float16 within half-precision activations.
// Exits 77 (ctest: skipped) where no GPU is visible, saying so.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../../csrc/core/context.h"
#include "../../csrc/core/error.h"
#include "../../csrc/core/kernels.h"
#include "check.h"
#include "test_data.h"

using namespace fastergpt;
using fgpt_test::half_bits;
using fgpt_test::random_vec;

namespace {

// Device copies of host vectors, freed at the end of a test.
struct OnGpu {
  const Backend& gpu = cuda_backend();
  std::vector<void*> owned;
  ~OnGpu() {
    for (void* p : owned) gpu.deallocate(p);
  }
  template <class T>
  T* put(const std::vector<T>& v) {
    void* p = gpu.allocate(static_cast<int64_t>(std::max<size_t>(1, v.size()) * sizeof(T)));
    owned.push_back(p);
    gpu.copy(p, v.data(), static_cast<int64_t>(v.size() * sizeof(T)), CopyKind::kHostToDevice);
    return static_cast<T*>(p);
  }
  std::vector<float> get(const float* p, int64_t n) {
    std::vector<float> v(n);
    gpu.copy(v.data(), p, n * 4, CopyKind::kDeviceToHost);
    return v;
  }
};

void check_close(const std::vector<float>& got, const std::vector<float>& want, double tol,
                 const char* what) {
  CHECK(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) {
    const double d = std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i]));
    if (!(d <= worst)) worst = d;  // NaN too (std::max would skip it)
  }
  if (!(worst <= tol)) {
    std::fprintf(stderr, "%s: worst relative difference %.3g over tolerance %.3g\n", what, worst, tol);
    ++fgpt_test::failures();
  }
}

// A weight matrix packed as kFloatBlocks16 (matrix.h), float32 or float16.
struct HostMatrix {
  std::vector<float> f32;
  std::vector<uint16_t> f16;
  Matrix matrix(WeightFormat f, int64_t N, int64_t K) const {
    Matrix m{f, f == WeightFormat::kF32 ? static_cast<const void*>(f32.data()) : f16.data()};
    m.rows = N;
    m.cols = K;
    return m;
  }
};
HostMatrix pack(const std::vector<float>& w, int64_t N, int64_t K) {
  HostMatrix p;
  p.f32.assign(q4_blocks(N) * 16 * K, 0.0f);
  p.f16.assign(q4_blocks(N) * 16 * K, 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      p.f32[(n / 16) * 16 * K + 16 * k + n % 16] = w[n * K + k];
      p.f16[(n / 16) * 16 * K + 16 * k + n % 16] = half_bits(w[n * K + k]);
    }
  return p;
}

void test_linear(Context& cpu, Context& gpu) {
  std::mt19937 rng(1);
  const Epilogue epilogues[] = {Epilogue::kStore, Epilogue::kGeluTanh, Epilogue::kGeluErf,
                                Epilogue::kAccumulate, Epilogue::kRelu};
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16})
    for (int64_t M : {1, 3, 17, 64})
      for (int64_t N : {1, 40, 129})
        for (int64_t K : {7, 70, 256})
          for (Epilogue e : epilogues)
            for (bool with_bias : {false, true}) {
              OnGpu d;
              const auto w = random_vec(N * K, rng, 0.2f), x = random_vec(M * K, rng);
              const auto bias = random_vec(N, rng), y0 = random_vec(M * N, rng);
              const HostMatrix p = pack(w, N, K);
              std::vector<DeviceBlock> keep;
              const Matrix gw = d.gpu.bind_matrix(p.matrix(f, N, K), &keep);
              std::vector<float> want = y0;
              cpu.backend().linear(cpu, x.data(), M, p.matrix(f, N, K),
                                   with_bias ? bias.data() : nullptr, e, want.data());
              float* y = d.put(y0);
              gpu.backend().linear(gpu, d.put(x), M, gw, with_bias ? d.put(bias) : nullptr, e, y);
              // float16 at more than 8 rows: the GPU rounds the activations to half for the
              // tensor cores; at up to 8 (its GEMV) they stay float32, as on the CPU.
              const bool half_inputs = f == WeightFormat::kF16 && M > 8;
              check_close(d.get(y, M * N), want, half_inputs ? 2e-2 : 1e-4,
                          f == WeightFormat::kF32 ? "linear float32" : "linear float16");
            }
}

// Activations beyond half's range (65504) saturate on the float16 tensor-core path
// instead of turning the row into infinities and NaN.
void test_float16_large_activations(Context& gpu) {
  std::mt19937 rng(5);
  for (int64_t M : {2, 33}) {
    OnGpu d;
    const int64_t N = 24, K = 40;
    auto x = random_vec(M * K, rng, 1e5f);
    const HostMatrix p = pack(random_vec(N * K, rng, 1e-3f), N, K);
    std::vector<DeviceBlock> keep;
    const Matrix gw = d.gpu.bind_matrix(p.matrix(WeightFormat::kF16, N, K), &keep);
    float* y = d.put(std::vector<float>(M * N));
    gpu.backend().linear(gpu, d.put(x), M, gw, nullptr, Epilogue::kStore, y);
    for (float v : d.get(y, M * N)) CHECK(std::isfinite(v));
  }
}

void test_norms_and_elementwise(Context& cpu, Context& gpu) {
  std::mt19937 rng(2);
  for (int64_t M : {1, 5})
    for (int64_t D : {8, 300, 1024}) {
      OnGpu d;
      const auto x = random_vec(M * D, rng, 3.0f), gamma = random_vec(D, rng);
      const auto beta = random_vec(D, rng);
      std::vector<float> want(M * D);
      float* y = d.put(want);
      cpu.backend().layer_norm(cpu, x.data(), M, D, gamma.data(), beta.data(), 1e-5f, want.data());
      gpu.backend().layer_norm(gpu, d.put(x), M, D, d.put(gamma), d.put(beta), 1e-5f, y);
      check_close(d.get(y, M * D), want, 1e-5, "layer_norm");
      cpu.backend().layer_norm(cpu, x.data(), M, D, gamma.data(), nullptr, 1e-5f, want.data());
      gpu.backend().layer_norm(gpu, d.put(x), M, D, d.put(gamma), nullptr, 1e-5f, y);
      check_close(d.get(y, M * D), want, 1e-5, "layer_norm without beta");
      cpu.backend().rms_norm(cpu, x.data(), M, D, gamma.data(), 1e-6f, want.data());
      gpu.backend().rms_norm(gpu, d.put(x), M, D, d.put(gamma), 1e-6f, y);
      check_close(d.get(y, M * D), want, 1e-5, "rms_norm");
      float* inplace = d.put(x);  // y may be x
      gpu.backend().rms_norm(gpu, inplace, M, D, d.put(gamma), 1e-6f, inplace);
      check_close(d.get(inplace, M * D), want, 1e-5, "rms_norm in place");

      const auto src = random_vec(M * D, rng);
      std::vector<float> sum = x;
      cpu.backend().add(cpu, src.data(), M * D, sum.data());
      float* dst = d.put(x);
      gpu.backend().add(gpu, d.put(src), M * D, dst);
      check_close(d.get(dst, M * D), sum, 0, "add");
    }
  for (Activation a : {Activation::kGeluTanh, Activation::kGeluErf, Activation::kRelu, Activation::kSilu}) {
    OnGpu d;
    const int64_t M = 3, F = 77;
    const auto in = random_vec(M * 2 * F, rng, 2.0f);
    std::vector<float> want(M * F);
    float* out = d.put(want);
    cpu.backend().glu(cpu, in.data(), M, F, a, want.data());
    gpu.backend().glu(gpu, d.put(in), M, F, a, out);
    check_close(d.get(out, M * F), want, 1e-5, "glu");
  }
}

void test_positions_embed_rotary(Context& cpu, Context& gpu) {
  std::mt19937 rng(3);
  const int64_t V = 19, D = 24, P = 9;
  const std::vector<int64_t> tokens = {0, 12, 5, 18};
  const std::vector<TokenSlot> slots = {{0, 0}, {0, 5}, {1, 2}, {1, 8}};
  const int64_t M = 4;
  for (WeightFormat f : {WeightFormat::kF32, WeightFormat::kF16}) {
    OnGpu d;
    const auto table = random_vec(V * D, rng), pos = random_vec(P * D, rng);
    const HostMatrix p = pack(table, V, D);
    std::vector<DeviceBlock> keep;
    const Matrix gt = d.gpu.bind_matrix(p.matrix(f, V, D), &keep);
    for (bool with_positions : {false, true}) {
      std::vector<float> want(M * D);
      float* x = d.put(want);
      cpu.backend().embed(cpu, p.matrix(f, V, D), with_positions ? pos.data() : nullptr,
                          tokens.data(), slots.data(), M, want.data());
      gpu.backend().embed(gpu, gt, with_positions ? d.put(pos) : nullptr, tokens.data(),
                          slots.data(), M, x);
      check_close(d.get(x, M * D), want, 0, "embed");
    }
  }
  {
    OnGpu d;
    const auto pos = random_vec(P * D, rng), x0 = random_vec(M * D, rng);
    std::vector<float> want = x0;
    cpu.backend().add_positions(cpu, pos.data(), slots.data(), M, D, want.data());
    float* x = d.put(x0);
    gpu.backend().add_positions(gpu, d.put(pos), slots.data(), M, D, x);
    check_close(d.get(x, M * D), want, 0, "add_positions");
  }
  for (bool interleaved : {false, true}) {
    OnGpu d;
    const int64_t H = 4, KVH = 2, Dh = 16, half = 6;  // a partial rotary (GPT-J, NeoX)
    const auto cos = random_vec(P * half, rng), sin = random_vec(P * half, rng);
    const auto qkv = random_vec(M * (H + 2 * KVH) * Dh, rng);
    std::vector<float> want = qkv;
    cpu.backend().rotary(cpu, want.data(), slots.data(), M, H, KVH, Dh,
                         {cos.data(), sin.data(), half, interleaved});
    float* g = d.put(qkv);
    gpu.backend().rotary(gpu, g, slots.data(), M, H, KVH, Dh,
                         {d.put(cos), d.put(sin), half, interleaved});
    check_close(d.get(g, static_cast<int64_t>(qkv.size())), want, 1e-5, "rotary");
  }
}

// Two passes (a prompt of several tokens per row, then one token each) over both
// caches, with grouped KV heads; then the same with beam search's source tables; and
// with the first pass's K/V stored alone (store_kv, as a prompt's last layer does), which
// the second pass then reads.
void test_attention(Context& cpu, Context& gpu) {
  std::mt19937 rng(4);
  for (int64_t KVH : {4, 2, 1})
    for (int64_t Dh : {16, 64, 128})
      for (int variant = 0; variant < 3; ++variant) {
        const bool sources = variant == 1, store_first = variant == 2;
        const ModelConfig c = fgpt_test::attention_config(2, 4, KVH, Dh);
        const int64_t H = 4, rows = 3, L = 40;
        cpu.kv_cache().allocate(c, rows, L);
        gpu.kv_cache().allocate(c, rows, L);
        std::vector<TokenSlot> first, second = {{0, 30}, {1, 3}, {2, 11}};
        for (int64_t j = 0; j < 31; ++j) first.push_back({0, j});
        for (int64_t j = 0; j < 3; ++j) first.push_back({1, j});
        for (int64_t j = 0; j < 11; ++j) first.push_back({2, j});
        int pass_index = 0;
        for (const auto* pass : {&first, &second}) {
          if (sources && pass_index == 1) {  // rows 1 and 2 take over row 0's history
            for (KVCache* cache : {&cpu.kv_cache(), &gpu.kv_cache()}) {
              cache->enable_sources();
              for (int64_t r : {1, 2})
                for (int64_t p = 0; p < 3; ++p) cache->sources(r)[p] = 0;
            }
          }
          ++pass_index;
          OnGpu d;
          const int64_t M = static_cast<int64_t>(pass->size());
          const auto qkv = random_vec(M * (H + 2 * KVH) * Dh, rng);
          std::vector<float> want(M * H * Dh);
          float* out = d.put(want);
          if (store_first && pass == &first) {
            cpu.backend().store_kv(cpu, cpu.kv_cache(), 1, H, qkv.data(), pass->data(), M);
            gpu.backend().store_kv(gpu, gpu.kv_cache(), 1, H, d.put(qkv), pass->data(), M);
            continue;
          }
          cpu.backend().attention(cpu, cpu.kv_cache(), 1, H, qkv.data(), pass->data(), M, want.data());
          gpu.backend().attention(gpu, gpu.kv_cache(), 1, H, d.put(qkv), pass->data(), M, out);
          check_close(d.get(out, M * H * Dh), want, 1e-5, "attention");
        }
      }
}

void test_unsupported_formats_are_errors() {
  std::vector<int8_t> q(16 * 8, 1);
  std::vector<float> scales(16, 1.0f);
  Matrix m{WeightFormat::kI8, q.data(), scales.data()};
  m.rows = 16;
  m.cols = 8;
  std::vector<DeviceBlock> keep;
  CHECK_THROWS(cuda_backend().bind_matrix(m, &keep));
}

}  // namespace

int main() {
  if (!cuda_built() || cuda_device_count() == 0) {
    std::printf("skipped: %s\n", cuda_built() ? "no CUDA GPU is visible"
                                              : "this build has no CUDA backend");
    return 77;
  }
  Context cpu(cpu_backend(), 1), gpu(cuda_backend(), 1);
  test_linear(cpu, gpu);
  test_float16_large_activations(gpu);
  test_norms_and_elementwise(cpu, gpu);
  test_positions_embed_rotary(cpu, gpu);
  test_attention(cpu, gpu);
  test_unsupported_formats_are_errors();
  TEST_MAIN_END();
}
