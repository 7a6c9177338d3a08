// The one exception type the engine throws for bad input. Adapters (Paddle op,
// pybind11 module) turn it into their framework's error; the message always
// names the offending argument so a user can fix the call without reading C++.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace fastergpt {

class Error : public std::invalid_argument {
 public:
  explicit Error(const std::string& msg) : std::invalid_argument(msg) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// FGPT_CHECK(cond, "top_p must be in (0, 1], got ", top_p);
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  throw Error(os.str());
}

}  // namespace fastergpt

#define FGPT_CHECK(cond, ...)              \
  do {                                     \
    if (!(cond)) ::fastergpt::fail(__VA_ARGS__); \
  } while (0)
