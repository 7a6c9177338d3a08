// The thread pool (csrc/core/thread_pool.h): every index of a region is run exactly once,
// and workers that went to sleep between regions are woken for the next one.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
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

// even_grain: as many shares as the minimum grain gives, each a multiple of `align`,
// the largest at most `align` more than the smallest (bar a last short one that the
// alignment leaves), covering every index once.
static void test_even_grain() {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 12, 20, 300, 768, 2304, 50257})
      for (int64_t min_grain : {1, 5, 16, 96, 256, 100000})
        for (int64_t align : {1, 16}) {
          const int64_t grain = pool.even_grain(n, min_grain, align);
          CHECK(grain % align == 0);
          std::vector<int64_t> sizes;
          std::mutex m;
          std::vector<int> hits(n, 0);
          pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
            for (int64_t j = b; j < e; ++j) ++hits[j];
            std::lock_guard<std::mutex> lock(m);
            sizes.push_back(e - b);
          });
          for (int h : hits) CHECK(h == 1);
          const int64_t old_units = (n + min_grain - 1) / min_grain;
          CHECK(static_cast<int64_t>(sizes.size()) <= std::min<int64_t>(threads, old_units));
          const int64_t big = *std::max_element(sizes.begin(), sizes.end());
          CHECK(big <= (n + static_cast<int64_t>(sizes.size()) - 1) /
                           static_cast<int64_t>(sizes.size()) + align - 1);
        }
  }
  // The case that asked for it: 768 rows, a grain of 256, 2 threads: 384 each.
  ThreadPool two(2);
  CHECK(two.even_grain(768, 256, 16) == 384);
  CHECK(two.even_grain(12, 5) == 6);
  CHECK(two.even_grain(300, 1000) >= 300);  // one share: runs inline
}

int main() {
  test_shares_cover_once();
  test_even_grain();
  test_wakes_sleepers();
  TEST_MAIN_END();
}
