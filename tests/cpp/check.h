// A minimal test harness for the C++ unit tests: CHECK records a failure with
// its location and keeps going; main returns non-zero if anything failed.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace fgpt_test {
inline int& failures() {
  static int n = 0;
  return n;
}
}  // namespace fgpt_test

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++fgpt_test::failures();                                             \
    }                                                                      \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                               \
  do {                                                                                      \
    const double a_ = (a), b_ = (b);                                                        \
    if (!(std::fabs(a_ - b_) <= (tol) * (1.0 + std::fabs(b_)))) {                           \
      std::fprintf(stderr, "%s:%d: %s = %.8g vs %s = %.8g (tol %g)\n", __FILE__, __LINE__, \
                   #a, a_, #b, b_, static_cast<double>(tol));                               \
      ++fgpt_test::failures();                                                              \
    }                                                                                       \
  } while (0)

// `expr` must throw fastergpt::Error (an argument check).
#define CHECK_THROWS(expr)                                                         \
  do {                                                                             \
    bool thrown_ = false;                                                          \
    try {                                                                          \
      expr;                                                                        \
    } catch (const fastergpt::Error&) {                                            \
      thrown_ = true;                                                              \
    }                                                                              \
    if (!thrown_) {                                                                \
      std::fprintf(stderr, "%s:%d: no Error from %s\n", __FILE__, __LINE__, #expr); \
      ++fgpt_test::failures();                                                     \
    }                                                                              \
  } while (0)

// `expr` throws fastergpt::Error with `text` in its message.
#define CHECK_THROWS_WITH(expr, text)                                       \
  do {                                                                      \
    bool named_ = false;                                                    \
    try {                                                                   \
      expr;                                                                 \
    } catch (const fastergpt::Error& e_) {                                  \
      named_ = std::strstr(e_.what(), text) != nullptr;                     \
      if (!named_) std::fprintf(stderr, "message: %s\n", e_.what());        \
    }                                                                       \
    CHECK(named_ && #expr);                                                 \
  } while (0)

#define TEST_MAIN_END()                                                          \
  do {                                                                           \
    if (fgpt_test::failures()) {                                                 \
      std::fprintf(stderr, "%d check(s) failed\n", fgpt_test::failures());       \
      return 1;                                                                  \
    }                                                                            \
    std::printf("all checks passed\n");                                          \
    return 0;                                                                    \
  } while (0)
