// A persistent pool of worker threads for the engine's parallel loops.
//
// Generation runs ~5 parallel regions per layer per token, so waking threads
// must be cheap: workers spin briefly on an atomic generation counter before
// sleeping on a condition variable. Work is split statically into contiguous
// ranges, one per thread, and every output element is computed by exactly one
// thread with a fixed reduction order, so results do not depend on the thread
// count.
#pragma once

#include <atomic>
#include <exception>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace fastergpt {

// A non-owning reference to a callable `void(int64_t begin, int64_t end)`:
// unlike std::function it never allocates, so parallel loops inside the
// decoding loop cost no heap traffic.
class RangeFn {
 public:
  template <typename F>
  RangeFn(F& f)  // NOLINT: implicit by design, as std::function is
      : object_(&f), call_([](void* o, int64_t b, int64_t e) { (*static_cast<F*>(o))(b, e); }) {}
  void operator()(int64_t b, int64_t e) const { call_(object_, b, e); }

 private:
  void* object_;
  void (*call_)(void*, int64_t, int64_t);
};

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on disjoint ranges covering [0, n), at most one range
  // per thread, ranges aligned to `grain`. Returns when all ranges are done; an
  // exception thrown in a range is rethrown here then (the first, if several).
  void parallel_for(int64_t n, int64_t grain, RangeFn fn);

  // The grain that gives parallel_for(n, grain) as many threads as a grain of
  // `min_grain` would, in shares as even as `align` allows. (With 2 threads, 768 rows
  // at a grain of 256 went 512 to one thread and 256 to the other; at 384, 384 each.)
  int64_t even_grain(int64_t n, int64_t min_grain, int64_t align = 1) const;
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    auto& f = fn;
    parallel_for(n, grain, RangeFn(f));
  }

 private:
  void worker_loop(int index);
  void run_share(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};  // workers waiting on wake_ (or about to)
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;  // the first exception a share threw in this parallel_for
  // The current job, published before generation_ is bumped.
  const RangeFn* job_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_grain_ = 1;
};

// Hardware threads available to this process.
int default_num_threads();

}  // namespace fastergpt
