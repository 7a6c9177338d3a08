// The element-wise math both devices compute, written once for the host and
// the GPU: the CPU's scalar paths and the CUDA kernels include this header, so
// the CPU tests exercise the very functions the GPU runs.
#pragma once

#include <math.h>

#include "kernels.h"
#include "model_config.h"

#if defined(__CUDACC__)
#define FGPT_HOST_DEVICE __host__ __device__
#else
#define FGPT_HOST_DEVICE
#endif

namespace fastergpt {

FGPT_HOST_DEVICE inline float gelu_tanh_scalar(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
FGPT_HOST_DEVICE inline float gelu_erf_scalar(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}
FGPT_HOST_DEVICE inline float silu_scalar(float x) { return x / (1.0f + expf(-x)); }
FGPT_HOST_DEVICE inline float relu_scalar(float x) { return x > 0.0f ? x : 0.0f; }

// A model's MLP activation of one value.
FGPT_HOST_DEVICE inline float activate(Activation a, float x) {
  switch (a) {
    case Activation::kSilu: return silu_scalar(x);
    case Activation::kRelu: return relu_scalar(x);
    case Activation::kGeluErf: return gelu_erf_scalar(x);
    case Activation::kGeluTanh: break;
  }
  return gelu_tanh_scalar(x);
}

// What linear()'s epilogue makes of one result v = (xW^T)[m, n] + bias[n], `old` being
// y[m, n] before the call.
FGPT_HOST_DEVICE inline float epilogue_value(Epilogue e, float v, float old) {
  switch (e) {
    case Epilogue::kGeluTanh: return gelu_tanh_scalar(v);
    case Epilogue::kGeluErf: return gelu_erf_scalar(v);
    case Epilogue::kAccumulate: return old + v;
    case Epilogue::kRelu: return relu_scalar(v);
    case Epilogue::kStore: break;
  }
  return v;
}

// Rotates one pair (a, b) of a head by the angle with cosine c and sine s.
FGPT_HOST_DEVICE inline void rotate_pair(float* a, float* b, float c, float s) {
  const float x = *a, y = *b;
  *a = x * c - y * s;
  *b = y * c + x * s;
}

}  // namespace fastergpt
