// Random inputs and models for the C++ tests: the kernel harnesses (kernels_test,
// cuda_kernels_test) and the engine tests (generator_test, device_seam_test).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "../../csrc/core/model.h"

namespace fgpt_test {

using namespace fastergpt;

inline std::vector<float> random_vec(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A model config for attention and KV-cache tests: `layers` layers of `heads` query
// heads and `kv_heads` KV heads of `head_dim`; nothing else is used (sizes 1).
inline ModelConfig attention_config(int64_t layers, int64_t heads, int64_t kv_heads,
                                    int64_t head_dim) {
  ModelConfig c;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.hidden_size = heads * head_dim;
  c.inner_size = c.vocab_size = c.max_positions = 1;
  return c;
}

// The IEEE half nearest v, as its bits.
inline uint16_t half_bits(float v) {
  const _Float16 h = static_cast<_Float16>(v);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

// The bfloat16 nearest v (to nearest even; v finite), as its bits.
inline uint16_t bfloat16_bits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

// Random weights of `config` in `format`, as an adapter hands them over: float
// weights and vectors N(0, 0.3), int8 / int4 storage uniform bytes, positive row scales,
// int4 groups of 32 columns with small scales and zero point 8, and (act_order) each
// matrix's column order a random permutation.
struct RandomWeights {
  std::vector<std::vector<uint8_t>> storage;
  std::vector<WeightView> views;
  RandomWeights(const ModelConfig& c, WeightFormat format, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    std::uniform_int_distribution<int> byte(-127, 127);
    int64_t cols = 0;  // of the last matrix: its group scales' shape follows from it
    for (const WeightSpec& s : weight_spec(c, format)) {
      std::vector<int64_t> shape = s.shape;
      if (s.matrix) cols = s.matrix_shape[1];
      const bool group_params = !s.matrix && s.dtype == ElementType::kF16;
      if (group_params) shape[1] = ((cols + 31) / 32) * 32;  // groups of 32 columns
      int64_t n = 1;
      for (int64_t v : shape) n *= v;
      storage.emplace_back(n * element_bytes(s.dtype));
      uint8_t* p = storage.back().data();
      if (group_params) {  // per block and group: 16 scales, then 16 zero points
        uint16_t* h = reinterpret_cast<uint16_t*>(p);
        for (int64_t i = 0; i < n; ++i) h[i] = half_bits(i % 32 < 16 ? 0.02f + 0.01f * (i % 7) : 8.0f);
      } else if (s.dtype == ElementType::kF32) {
        float* f = reinterpret_cast<float*>(p);
        const bool scale = s.name.size() > 6 && s.name.compare(s.name.size() - 6, 6, ".scale") == 0;
        for (int64_t i = 0; i < n; ++i) f[i] = scale ? 0.004f + 0.001f * (i % 5) : normal(rng);
      } else if (s.dtype == ElementType::kF16) {
        uint16_t* h = reinterpret_cast<uint16_t*>(p);
        for (int64_t i = 0; i < n; ++i) h[i] = half_bits(normal(rng));
      } else if (s.dtype == ElementType::kI32) {  // a column order: a permutation of 0..n-1
        int32_t* order = reinterpret_cast<int32_t*>(p);
        for (int64_t i = 0; i < n; ++i) order[i] = static_cast<int32_t>(i);
        std::shuffle(order, order + n, rng);
      } else if (s.dtype == ElementType::kBF16) {
        uint16_t* h = reinterpret_cast<uint16_t*>(p);
        for (int64_t i = 0; i < n; ++i) h[i] = bfloat16_bits(normal(rng));
      } else {
        int8_t* q = reinterpret_cast<int8_t*>(p);
        for (int64_t i = 0; i < n; ++i) q[i] = static_cast<int8_t>(byte(rng));
      }
      views.push_back({p, shape, s.dtype});
    }
  }
};

}  // namespace fgpt_test
