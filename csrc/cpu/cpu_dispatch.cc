// Picks the widest instruction set this CPU supports, once per process.
#include <cstring>
#include <iterator>

#include "cpu_ops.h"
#include "simd_kernels.h"

namespace fastergpt {
namespace cpu {
namespace {

// Rows in kWeightFormats order: float32, float16, int8, int4, bfloat16.
static_assert(kNumWeightFormats == 5, "a new weight format needs its kernels here");
// f32_bf16, f16_bf16, bf16_bf16, bf16_pairs: the matmul_precision=bfloat16 kernels, or nullptr.
#define FGPT_KERNELS(ns, f32_bf16, f16_bf16, bf16_bf16, bf16_pairs)                   \
  SimdKernels {                                                                       \
    #ns,                                                                              \
        {{ns::linear_f32_rows, nullptr, nullptr, ns::dequantize_f32_row, f32_bf16},   \
         {ns::linear_f16_rows, nullptr, nullptr, ns::dequantize_f16_row, f16_bf16},   \
         {nullptr, ns::linear_q8_rows, nullptr, ns::dequantize_i8_row, nullptr},      \
         {nullptr, nullptr, ns::linear_q4_rows, ns::dequantize_i4_row, nullptr},      \
         {ns::linear_bf16_rows, nullptr, nullptr, ns::dequantize_bf16_row, bf16_bf16}}, \
        ns::dot, ns::axpy, ns::sum_exp, ns::max_first, ns::dot_rows, ns::exp_shift,  \
        ns::exp_floats,                                                               \
        ns::weighted_rows, ns::attend_queries, ns::attention_lanes,                  \
        ns::quantize_rows, ns::store_half, ns::dot_f16, ns::axpy_f16,                \
        ns::dot_rows_f16, ns::weighted_rows_f16, ns::attend_queries_f16, bf16_pairs, \
        ns::layer_norm_rows, ns::rms_norm_rows, ns::glu_rows                         \
  }
#define FGPT_KERNELS_NO_BF16(ns) FGPT_KERNELS(ns, nullptr, nullptr, nullptr, nullptr)

bool cpu_has(const char* name) {
#if defined(FGPT_X86_ISAS)
  if (std::strcmp(name, "avx512bf16") == 0)
    return cpu_has("avx512vnni") && __builtin_cpu_supports("avx512bf16");
  if (std::strcmp(name, "avx512vnni") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
  if (std::strcmp(name, "avx512") == 0) return __builtin_cpu_supports("avx512f");
  if (std::strcmp(name, "avx2") == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#endif
  return std::strcmp(name, "generic") == 0;
}

}  // namespace

const SimdKernels* simd_by_name(const char* name) {
  static const SimdKernels generic_k = FGPT_KERNELS_NO_BF16(generic);
#if defined(FGPT_X86_ISAS)
  static const SimdKernels avx2_k = FGPT_KERNELS_NO_BF16(avx2);
  static const SimdKernels avx512_k = FGPT_KERNELS_NO_BF16(avx512);
  static const SimdKernels avx512vnni_k = FGPT_KERNELS_NO_BF16(avx512vnni);
  static const SimdKernels avx512bf16_k =
      FGPT_KERNELS(avx512bf16, avx512bf16::linear_f32_rows_bf16, avx512bf16::linear_f16_rows_bf16,
                   avx512bf16::linear_bf16_rows_bf16, avx512bf16::to_bf16_pairs);
  if (std::strcmp(name, "avx512bf16") == 0 && cpu_has(name)) return &avx512bf16_k;
  if (std::strcmp(name, "avx512vnni") == 0 && cpu_has(name)) return &avx512vnni_k;
  if (std::strcmp(name, "avx512") == 0 && cpu_has(name)) return &avx512_k;
  if (std::strcmp(name, "avx2") == 0 && cpu_has(name)) return &avx2_k;
#endif
  if (std::strcmp(name, "generic") == 0) return &generic_k;
  return nullptr;
}

const SimdKernels& simd() {
  static const SimdKernels* chosen = [] {
    // The widest first: kIsaNames runs from generic (every CPU has it) to the widest.
    for (int i = static_cast<int>(std::size(kIsaNames)) - 1; i > 0; --i)
      if (const SimdKernels* k = simd_by_name(kIsaNames[i])) return k;
    return simd_by_name("generic");
  }();
  return *chosen;
}

bool has_bf16_matmul() { return simd().to_bf16_pairs != nullptr; }

}  // namespace cpu

const char* cpu_isa_name() { return cpu::simd().name; }

}  // namespace fastergpt
