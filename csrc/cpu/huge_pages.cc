#include "huge_pages.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#if defined(__linux__)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace fastergpt {
namespace cpu {
namespace {

constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
#if defined(__linux__) && !defined(MADV_COLLAPSE)
constexpr int MADV_COLLAPSE = 25;  // Linux 6.1's value, for older headers
#endif

// Why nothing is asked on this system, or null (read once).
const char* system_off_reason() {
  static const char* const reason = []() -> const char* {
#if !defined(__linux__)
    return "not Linux";
#else
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string setting((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!f && setting.empty()) return "no transparent huge pages in this kernel";
    if (setting.find("[never]") != std::string::npos) return "transparent huge pages are set to never";
    return nullptr;
#endif
  }();
  return reason;
}

// ... or here and now: the environment is read at each binding, so that one process can
// bind one model with it and one without (benchmarks/bench_huge_pages.py).
const char* off_reason() {
  const char* env = std::getenv("FASTERGPT_HUGE_PAGES");
  if (env && std::strcmp(env, "0") == 0) return "FASTERGPT_HUGE_PAGES=0";
  return system_off_reason();
}

std::mutex mutex;
HugePageStats totals;
std::deque<size_t> recent;  // fingerprints of the range sets asked for lately

size_t fingerprint(const std::vector<HostBytes>& weights) {
  size_t h = weights.size();
  for (const auto& r : weights) {
    h = h * 1000003u ^ std::hash<const void*>()(r.data);
    h = h * 1000003u ^ static_cast<size_t>(r.bytes);
  }
  return h;
}

#if defined(__linux__)
// Whether any page of the 2 MB region at `p` is mapped by another process too (a forked
// server's copy-on-write weights): a collapse would give this process its own copy, so
// such a region is left as it is. /proc/self/pagemap's bit 56 marks a page mapped only
// here; an unreadable pagemap counts as not shared.
bool shared_with_another_process(int pagemap, uintptr_t p) {
  if (pagemap < 0) return false;
  constexpr size_t kPages = kHugePage / 4096;
  uint64_t entries[kPages];
  const off_t at = static_cast<off_t>(p / 4096 * sizeof(uint64_t));
  if (pread(pagemap, entries, sizeof(entries), at) != static_cast<ssize_t>(sizeof(entries)))
    return false;
  for (uint64_t e : entries)
    if ((e >> 63 & 1) && !(e >> 56 & 1)) return true;  // present, not exclusively mapped
  return false;
}
#endif

}  // namespace

void place_weights(const std::vector<HostBytes>& weights) {
  if (off_reason()) return;
#if defined(__linux__)
  const size_t key = fingerprint(weights);
  std::lock_guard<std::mutex> lock(mutex);
  if (std::find(recent.begin(), recent.end(), key) != recent.end()) return;
  recent.push_back(key);
  if (recent.size() > 16) recent.pop_front();
  // Each 2 MB region the weights touch, with how many of its bytes are weights. Only a
  // region at least half weights is asked for: a collapse makes the whole region
  // resident, and the small tensors (norms, biases) that share pages with other memory
  // cost the TLB little.
  std::map<uintptr_t, int64_t> covered;
  for (const auto& r : weights) {
    if (!r.data || r.bytes <= 0) continue;
    const uintptr_t begin = reinterpret_cast<uintptr_t>(r.data);
    const uintptr_t end = begin + static_cast<uintptr_t>(r.bytes);
    for (uintptr_t p = begin / kHugePage * kHugePage; p < end; p += kHugePage)
      covered[p] += static_cast<int64_t>(std::min(end, p + kHugePage) - std::max(begin, p));
  }
  std::vector<uintptr_t> regions;
  for (const auto& c : covered)
    if (c.second >= static_cast<int64_t>(kHugePage / 2)) regions.push_back(c.first);
  const auto start = std::chrono::steady_clock::now();
  const int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  for (uintptr_t p : regions) {
    void* at = reinterpret_cast<void*>(p);
    totals.asked_bytes += kHugePage;
    if (shared_with_another_process(pagemap, p)) {
      totals.shared_bytes += kHugePage;
      continue;
    }
    // MADV_HUGEPAGE first, so that the kernel keeps the region on 2 MB pages later
    // (khugepaged) if the collapse cannot be done now.
    madvise(at, kHugePage, MADV_HUGEPAGE);
    if (madvise(at, kHugePage, MADV_COLLAPSE) == 0) totals.huge_bytes += kHugePage;
  }
  if (pagemap >= 0) close(pagemap);
  totals.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
#endif
}

}  // namespace cpu

HugePageStats huge_page_stats() {
  std::lock_guard<std::mutex> lock(cpu::mutex);
  HugePageStats s = cpu::totals;
  s.off_reason = cpu::off_reason();
  return s;
}

}  // namespace fastergpt
