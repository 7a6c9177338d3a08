// A growable array in a backend's memory (host memory on the CPU, GPU memory
// on CUDA): the activations and the KV cache. It only grows, keeping its
// contents and zero-filling the rest, so buffers reserved once serve every
// later call without allocating.
#pragma once

#include <cstdint>
#include <utility>

#include "kernels.h"

namespace fastergpt {

template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(const Backend* backend = nullptr) : backend_(backend) {}
  ~DeviceArray() { release(); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept { *this = std::move(o); }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      release();
      backend_ = o.backend_;
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  int64_t bytes() const { return size_ * static_cast<int64_t>(sizeof(T)); }

  // At least n elements: the first size() keep their values, the rest are zero.
  void grow(int64_t n) {
    if (n <= size_) return;
    T* fresh = static_cast<T*>(backend_->allocate(n * static_cast<int64_t>(sizeof(T))));
    if (size_ > 0) backend_->copy(fresh, data_, bytes(), CopyKind::kDeviceToDevice);
    release();
    data_ = fresh;
    size_ = n;
  }
  void release() {
    if (data_) backend_->deallocate(data_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  const Backend* backend_ = nullptr;
  T* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace fastergpt
