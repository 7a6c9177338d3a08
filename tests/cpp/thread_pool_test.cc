// The thread pool (csrc/core/thread_pool.h): every index of a region is run exactly once,
// and workers that went to sleep between regions are woken for the next one.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <random>
#include <thread>
#include <vector>

#include "../../csrc/core/thread_pool.h"
#include "check.h"

using namespace fastergpt;

// Workers that went to sleep between regions (after their 2 ms spin) are woken for the
// next one, whatever the gap: a lost wake-up would leave parallel_for waiting forever, so
// the regions run on a thread of their own, watched with a deadline.
static void test_wakes_sleepers() {
  auto body = [] {
    ThreadPool pool(3);
    std::mt19937 rng(5);
    const int gaps_us[] = {0, 50, 1900, 2000, 2100, 3000};
    int64_t wrong = 0;
    for (int i = 0; i < 120; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(gaps_us[rng() % 6]));
      std::vector<int> hits(96, 0);
      pool.parallel_for(96, 8, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) ++hits[j];
      });
      for (int h : hits) wrong += h != 1;
    }
    return wrong;
  };
  auto result = std::async(std::launch::async, body);
  if (result.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::fprintf(stderr, "thread pool: a parallel_for never returned (a lost wake-up)\n");
    std::_Exit(1);
  }
  CHECK(result.get() == 0);
}

// Shares of every size: each index once, whatever the thread count and grain.
static void test_shares_cover_once() {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 7, 16, 100, 1000})
      for (int64_t grain : {1, 3, 16, 64}) {
        std::vector<int> hits(n, 0);
        pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
          CHECK(b % grain == 0);
          for (int64_t j = b; j < e; ++j) ++hits[j];
        });
        for (int h : hits) CHECK(h == 1);
      }
  }
}

int main() {
  test_shares_cover_once();
  test_wakes_sleepers();
  TEST_MAIN_END();
}
