// The SIMD inner loops compiled for avx512vnni (flags set in CMakeLists.txt).
#define FGPT_ISA avx512vnni
#define FGPT_VEC_FLOATS 16
#define FGPT_VNNI 1
#include "simd_kernels.inc"
