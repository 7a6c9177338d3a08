// The SIMD inner loops compiled for avx512 (flags set in CMakeLists.txt).
#define FGPT_ISA avx512
#define FGPT_VEC_FLOATS 16
#define FGPT_VNNI 0
#include "simd_kernels.inc"
