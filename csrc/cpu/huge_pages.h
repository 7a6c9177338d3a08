// Weights on 2 MB pages. Decoding at a small batch streams every weight once per token:
// GPT-2-small's 66-125 MB a token on 4 KB pages is 16-30 thousand pages, far more than
// a core's second-level TLB maps (about 12 MB of 4 KB pages on Zen 4/5), so every page
// costs a table walk each token. On 2 MB pages the same weights are 33-63 entries.
//
// Linux backs memory with 2 MB pages (transparent huge pages) only where a program
// asks for them when the system's setting is "madvise", the common default. The
// weights arrive in memory their owner allocated (NumPy arrays, Paddle tensors), already
// written, so asking is a collapse in place (MADV_COLLAPSE, Linux 6.1+): each 2 MB
// region that is mostly weights is copied into one huge page under the same addresses,
// once, when a model binds them (0.5-1 ms a region measured). Contents and addresses do
// not change; only the page size. A region another process maps too (a server forked
// after loading) is left alone: the collapse would give this process a copy of its own.
// Where the kernel lacks MADV_COLLAPSE, THP is "never", or FASTERGPT_HUGE_PAGES=0,
// nothing is asked and the memory stays on the pages it has. huge_page_stats()
// (kernels.h) says how much came to sit on 2 MB pages.
#pragma once

#include <cstdint>
#include <vector>

#include "../core/kernels.h"

namespace fastergpt {
namespace cpu {

// The CPU's Backend::place_weights: asks for each 2 MB region that the weights cover at
// least half of to sit on a 2 MB page. A set of weights seen lately (the same addresses and
// sizes: the Paddle op binds its model on every call) is not asked again. Never fails: a
// region the kernel refuses stays as it is, and counts in asked_bytes only.
void place_weights(const std::vector<HostBytes>& weights);

}  // namespace cpu
}  // namespace fastergpt
