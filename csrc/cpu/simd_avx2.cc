// The SIMD inner loops compiled for avx2 (flags set in CMakeLists.txt).
#define FGPT_ISA avx2
#define FGPT_VEC_FLOATS 8
#define FGPT_VNNI 0
#include "simd_kernels.inc"
