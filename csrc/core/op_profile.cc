// The op profile's table: per op (in the order the decoder first ran them) and per count
// of token rows (1 to 8 exactly, then up to the next power of two), the calls, their total
// and mean wall time, and the share of all ops' time. Printed to stderr at exit.
#include "op_profile.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace fastergpt {
namespace {

struct Entry {
  int64_t calls = 0;
  double seconds = 0;
};

// Rows 1..8 as they are (decoding, prompt-lookup passes, small batches); more rounded up to
// a power of two (prompts).
int64_t row_bucket(int64_t rows) {
  if (rows <= 8) return rows;
  int64_t b = 16;
  while (b < rows) b *= 2;
  return b;
}

class Table {
 public:
  void add(const char* op, int64_t rows, double seconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t i = 0;
    while (i < ops_.size() && ops_[i] != op) ++i;
    if (i == ops_.size()) ops_.push_back(op);
    Entry& e = entries_[{i, row_bucket(rows)}];
    ++e.calls;
    e.seconds += seconds;
  }

  ~Table() {
    double total = 0;
    for (const auto& kv : entries_) total += kv.second.seconds;
    if (entries_.empty() || total <= 0) return;
    std::fprintf(stderr, "fastergpt op profile (FASTERGPT_PROFILE): wall time per op\n");
    std::fprintf(stderr, "%-12s %8s %9s %11s %10s %7s\n", "op", "rows", "calls", "total ms",
                 "mean us", "share");
    for (const auto& kv : entries_) {
      const int64_t b = kv.first.second;
      char rows[32];
      if (b <= 8)
        std::snprintf(rows, sizeof(rows), "%lld", static_cast<long long>(b));
      else
        std::snprintf(rows, sizeof(rows), "%lld-%lld", static_cast<long long>(b / 2 + 1),
                      static_cast<long long>(b));
      const Entry& e = kv.second;
      std::fprintf(stderr, "%-12s %8s %9lld %11.2f %10.2f %6.1f%%\n", ops_[kv.first.first], rows,
                   static_cast<long long>(e.calls), e.seconds * 1e3, e.seconds / e.calls * 1e6,
                   100.0 * e.seconds / total);
    }
  }

 private:
  std::mutex mutex_;
  std::vector<const char*> ops_;
  std::map<std::pair<size_t, int64_t>, Entry> entries_;  // (op index, row bucket)
};

Table& table() {
  static Table t;
  return t;
}

}  // namespace

bool OpTimer::enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FASTERGPT_PROFILE");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}

void OpTimer::record(const char* op, int64_t rows, std::chrono::steady_clock::duration d) {
  table().add(op, rows, std::chrono::duration<double>(d).count());
}

}  // namespace fastergpt
