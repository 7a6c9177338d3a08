// The one thing tensor parallelism needs from a communication library: a model split
// over `size` processes (each holding the attention heads and MLP columns of its shard,
// see docs/tensor-parallel.md) sums each sublayer's partial output over the processes.
// The engine names no library: an adapter implements this over one (the NumPy module
// over a Python callable, e.g. torch.distributed with gloo; NCCL or MPI in C++).
#pragma once

#include <cstdint>

namespace fastergpt {

class Collective {
 public:
  virtual ~Collective() = default;
  virtual int rank() const = 0;  // this process, in [0, size)
  virtual int size() const = 0;  // processes holding a shard
  // data[n] = the sum over the processes of their data[n]: the same bits on every one
  // of them (so their logits, and the tokens they choose, stay equal). Throws Error.
  virtual void all_reduce_sum(float* data, int64_t n) = 0;
};

}  // namespace fastergpt
