// The SIMD inner loops compiled for generic (flags set in CMakeLists.txt).
#define FGPT_ISA generic
#define FGPT_VEC_FLOATS 4
#define FGPT_VNNI 0
#include "simd_kernels.inc"
