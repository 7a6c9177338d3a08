// IEEE 754 half <-> float conversions in portable C++ (the scalar reference and
// the generic path; the AVX2/AVX-512 paths convert in hardware with F16C).
#pragma once

#include <cstdint>
#include <cstring>

namespace fastergpt {
namespace cpu {

static inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // +-0
  } else {  // subnormal half: normalise
    exp = 113;
    while (!(mant & 0x400)) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// The float16 nearest to f (ties to even), as F16C's vcvtps2ph rounds: NaN stays a
// quiet NaN with the top of its payload, beyond the largest finite half is infinity.
static inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return sign | 0x7E00 | static_cast<uint16_t>((ax >> 13) & 0x3FF);  // NaN
  if (ax >= 0x477FF000u) return sign | 0x7C00;  // >= 65520: rounds to infinity
  if (ax >= 0x38800000u) {  // a normal half (>= 2^-14): rebias the exponent, round at bit 13
    return sign | static_cast<uint16_t>((ax - 0x38000000u + 0xFFFu + ((ax >> 13) & 1u)) >> 13);
  }
  // A subnormal half (or zero): the count of 2^-24 units, rounded to nearest even. The
  // scaling by 2^24 is exact, and 1024 units is the smallest normal half's bit pattern.
  float units;
  std::memcpy(&units, &ax, sizeof(units));
  units *= 16777216.0f;
  const uint32_t whole = static_cast<uint32_t>(units);
  const float rest = units - static_cast<float>(whole);
  const uint32_t n = whole + ((rest > 0.5f || (rest == 0.5f && (whole & 1u))) ? 1u : 0u);
  return sign | static_cast<uint16_t>(n);
}

// float_to_half after clamping to +-65504, the largest finite half (what a float16 KV
// cache stores: a key beyond the range keeps its sign and the largest magnitude).
static inline uint16_t float_to_half_clamped(float f) {
  const float c = f > 65504.0f ? 65504.0f : (f < -65504.0f ? -65504.0f : f);  // NaN passes
  return float_to_half(c);
}

}  // namespace cpu
}  // namespace fastergpt
