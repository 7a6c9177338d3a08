#include "thread_pool.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <system_error>

#include "error.h"

#ifdef __linux__
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastergpt {
namespace {

// How long an idle worker spins before it sleeps: long enough to bridge the
// gap between the kernels of one decoding step, short enough not to burn a
// core after generation ends.
constexpr auto kSpin = std::chrono::microseconds(2000);
// Spin iterations before a waiting thread starts yielding its core: when the
// machine is oversubscribed the thread it waits for may not be running, and
// spinning on would only keep it off the core. Long enough (a pause is ~25 ns on
// AMD Zen 5, ~40 ns on recent Intel: 50-80 us) to outlast the serial gaps of a
// decoding step: at 256 (~6 us) the threads of a small model yielded between
// kernels, and each sched_yield delayed the next hand-off (the default model
// decoded 3.6-3.9k tokens/s on 2 threads at 256, 4.0-4.2k at 1024 and 2048).
constexpr int kSpinBeforeYield = 2048;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

inline void relax_or_yield(int& spins) {
  if (++spins < kSpinBeforeYield) {
    cpu_relax();
  } else {
    std::this_thread::yield();
  }
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  try {
    for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::system_error& e) {
    // The destructor will not run: stop and join the workers started so far, then report.
    const size_t started = workers_.size();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    fail("num_threads: could start only ", started + 1, " of ", num_threads_, " threads (",
         e.what(), ")");
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run_share(int index) {
  const int64_t n = job_n_, grain = job_grain_;
  const int64_t units = (n + grain - 1) / grain;
  const int64_t per = units / num_threads_, extra = units % num_threads_;
  const int64_t first = index * per + std::min<int64_t>(index, extra);
  const int64_t count = per + (index < extra ? 1 : 0);
  const int64_t begin = std::min(n, first * grain);
  const int64_t end = std::min(n, (first + count) * grain);
  if (begin >= end) return;
  // An exception must not end a worker thread (std::terminate) nor leave
  // parallel_for before every share is done: keep the first, rethrow it after.
  try {
    (*job_)(begin, end);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const auto spin_until = std::chrono::steady_clock::now() + kSpin;
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && !stop_.load()) {
      relax_or_yield(spins);
      // Reading the clock costs more than a pause: look at it now and then.
      if ((spins & 63) == 0 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1);  // before the predicate's look: see parallel_for
        wake_.wait(lock, [&] { return generation_.load() != seen || stop_.load(); });
        sleepers_.fetch_sub(1);
        break;
      }
    }
    if (stop_.load()) return;
    seen = generation_.load(std::memory_order_acquire);
    run_share(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, RangeFn fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (num_threads_ == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  job_ = &fn;
  job_n_ = n;
  job_grain_ = grain;
  pending_.store(num_threads_ - 1, std::memory_order_release);
  // Spinning workers see the new generation by themselves; the mutex and the condition
  // variable are for sleeping ones only. Both sides are sequentially consistent: either
  // this load sees a sleeper's count (and the notify below, after the mutex, reaches it
  // in its wait), or that worker's predicate, checked after its count, sees this bump.
  generation_.fetch_add(1);
  if (sleepers_.load() > 0) {
    // Taking the mutex waits until a counted sleeper is inside wait() (which releases it)
    // or has seen the new generation: the notify cannot come between its look and its wait.
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
  }
  run_share(0);
  int spins = 0;
  while (pending_.load(std::memory_order_acquire) != 0) relax_or_yield(spins);
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    std::swap(error, error_);
  }
  if (error) std::rethrow_exception(error);
}

int64_t ThreadPool::even_grain(int64_t n, int64_t min_grain, int64_t align) const {
  min_grain = std::max<int64_t>(1, min_grain);
  align = std::max<int64_t>(1, align);
  if (n <= 0) return min_grain;
  const int64_t shares = std::min<int64_t>(num_threads_, (n + min_grain - 1) / min_grain);
  const int64_t share = (n + shares - 1) / shares;
  return (share + align - 1) / align * align;
}

int default_num_threads() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace fastergpt
