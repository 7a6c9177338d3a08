// The SIMD inner loops compiled for AVX-512 VNNI + BF16 (flags set in CMakeLists.txt): the
// avx512vnni kernels, plus the matmul_precision=bfloat16 ones (vdpbf16ps).
#define FGPT_ISA avx512bf16
#define FGPT_VEC_FLOATS 16
#define FGPT_VNNI 1
#define FGPT_BF16 1
#include "simd_kernels.inc"
