// Where a step's time goes: the wall time of each op the decoder runs, by op and by the
// number of token rows it ran on, for whoever tunes the kernels. Off unless the process
// starts with FASTERGPT_PROFILE=1 in its environment (then an op costs one branch more);
// on, the table goes to stderr when the process exits (op_profile.cc says what it holds).
// A GPU backend's kernels run asynchronously: there the figures are launch times.
#pragma once

#include <chrono>
#include <cstdint>

namespace fastergpt {

class OpTimer {
 public:
  // `op`: a string literal (its address keys the table).
  OpTimer(const char* op, int64_t rows) : op_(enabled() ? op : nullptr), rows_(rows) {
    if (op_) start_ = std::chrono::steady_clock::now();
  }
  ~OpTimer() {
    if (op_) record(op_, rows_, std::chrono::steady_clock::now() - start_);
  }
  OpTimer(const OpTimer&) = delete;
  OpTimer& operator=(const OpTimer&) = delete;

  static bool enabled();

 private:
  static void record(const char* op, int64_t rows, std::chrono::steady_clock::duration d);

  const char* op_;
  int64_t rows_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace fastergpt
