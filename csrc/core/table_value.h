// The one conversion between a table field (a setting, an architecture field) and
// the float64 its table row reads and writes: enum fields go through their
// integer value, the others are cast.
#pragma once

#include <cstdint>
#include <type_traits>

namespace fastergpt {

template <typename T>
T from_double(double v) {
  if constexpr (std::is_enum_v<T>)
    return static_cast<T>(static_cast<int64_t>(v));
  else
    return static_cast<T>(v);
}

template <typename T>
double to_double(T v) {
  if constexpr (std::is_enum_v<T>)
    return static_cast<double>(static_cast<int64_t>(v));
  else
    return static_cast<double>(v);
}

}  // namespace fastergpt
