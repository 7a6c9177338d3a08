// Philox-4x32-10 (Salmon et al., SC'11): a counter-based RNG. A draw is a pure
// function of (key, counter), so row r at step t gets the same number whatever
// the thread count, the batch composition or the order rows are processed in.
#pragma once

#include <cstdint>

namespace fastergpt {

struct Philox4x32 {
  uint32_t v[4];
};

inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform double in [0, 1) with 53 random bits, for (seed, stream, step).
inline double philox_uniform(uint64_t seed, uint64_t stream, uint64_t step) {
  const Philox4x32 r = philox4x32_10(static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32),
                                     static_cast<uint32_t>(stream),
                                     static_cast<uint32_t>(stream >> 32),
                                     static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  const uint64_t bits = (static_cast<uint64_t>(r.v[0]) << 21) ^ (r.v[1] >> 11);
  return static_cast<double>(bits & ((uint64_t{1} << 53) - 1)) * (1.0 / 9007199254740992.0);
}

}  // namespace fastergpt
