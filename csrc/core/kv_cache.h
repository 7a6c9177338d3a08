// The key/value cache of one generate() call, allocated once for the longest
// row (prompt + max_new_tokens) so decoding steps never allocate.
// Layout per layer: [rows, kv heads, max_length, head_size], so one head's keys
// for a row are contiguous and attention streams them.
//
// Beam search shares history between rows without copying it: with sources
// on, position p of row r is read from row sources(r)[p] (the row that wrote
// it), so a beam that takes over another's history copies that row's small
// table of row indices, not its keys and values.
//
// Keys and values live in the backend's memory; the source tables stay on the
// host (the generator writes them), and a device's attention copies them over.
//
// Elements are float32, or float16 (kv_cache_dtype=float16: half the memory, and half
// the bytes attention reads per step, which at batch 1 come on top of the weights).
// The arrays hold bytes, so a later call of the other type reuses them; key() / value()
// point at float32 elements, key_half() / value_half() at float16 ones, each checking
// that the cache holds that type.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "device_array.h"
#include "error.h"
#include "generation_options.h"
#include "model_config.h"

namespace fastergpt {

class KVCache {
 public:
  explicit KVCache(const Backend& backend) : backend_(&backend), keys_(&backend), values_(&backend) {}

  void allocate(const ModelConfig& c, int64_t rows, int64_t max_length,
                KVDtype dtype = KVDtype::kFloat32) {
    FGPT_CHECK(dtype == KVDtype::kFloat32 || backend_->half_kv_cache, "kv_cache_dtype=float16: "
               "the ", backend_->name, " backend keeps its KV cache in float32");
    dtype_ = dtype;
    layers_ = c.num_layers;
    rows_ = rows;
    heads_ = c.kv_heads();
    head_size_ = c.head_dim();
    max_length_ = max_length;
    const int64_t per_layer = rows * heads_ * max_length * head_size_;
    // Grow only: the cache is reused by later calls.
    keys_.grow(layers_ * per_layer * kv_element_bytes(dtype));
    values_.grow(layers_ * per_layer * kv_element_bytes(dtype));
    sources_.clear();
  }

  // Turns on per-position source rows, each row reading itself to begin with.
  void enable_sources() {
    sources_.resize(rows_ * max_length_);
    for (int64_t r = 0; r < rows_; ++r)
      std::fill(sources_.begin() + r * max_length_, sources_.begin() + (r + 1) * max_length_,
                static_cast<int32_t>(r));
  }
  bool has_sources() const { return !sources_.empty(); }
  // Row r's table: sources(r)[p] is the row holding position p of row r's history.
  int32_t* sources(int64_t row) { return sources_.data() + row * max_length_; }
  const int32_t* sources() const { return sources_.data(); }  // [rows, max_length]
  int64_t rows() const { return rows_; }

  int64_t max_length() const { return max_length_; }
  KVDtype dtype() const { return dtype_; }
  int64_t bytes() const { return keys_.bytes() + values_.bytes(); }
  void release() {
    keys_.release();
    values_.release();
    sources_ = std::vector<int32_t>();
    layers_ = rows_ = heads_ = head_size_ = max_length_ = 0;
  }
  int64_t heads() const { return heads_; }
  int64_t head_size() const { return head_size_; }

  // Copies the first n slots of row src into row dst, in every layer and head
  // (the prompt of a sequence shared by several return sequences).
  void copy_prefix(int64_t src, int64_t dst, int64_t n) {
    const int64_t element = kv_element_bytes(dtype_), bytes = n * head_size_ * element;
    for (int64_t l = 0; l < layers_; ++l)
      for (int64_t h = 0; h < heads_; ++h)
        for (DeviceArray<uint8_t>* a : {&keys_, &values_})
          backend_->copy(a->data() + offset(l, dst, h, 0) * element,
                         a->data() + offset(l, src, h, 0) * element, bytes,
                         CopyKind::kDeviceToDevice);
  }
  float* key(int64_t layer, int64_t row, int64_t head, int64_t slot) {
    return element<float>(keys_, "key", layer, row, head, slot);
  }
  float* value(int64_t layer, int64_t row, int64_t head, int64_t slot) {
    return element<float>(values_, "value", layer, row, head, slot);
  }
  uint16_t* key_half(int64_t layer, int64_t row, int64_t head, int64_t slot) {
    return element<uint16_t>(keys_, "key_half", layer, row, head, slot);
  }
  uint16_t* value_half(int64_t layer, int64_t row, int64_t head, int64_t slot) {
    return element<uint16_t>(values_, "value_half", layer, row, head, slot);
  }

 private:
  int64_t offset(int64_t layer, int64_t row, int64_t head, int64_t slot) const {
    return (((layer * rows_ + row) * heads_ + head) * max_length_ + slot) * head_size_;
  }
  // The element at (layer, row, head, slot) as a T, which must be the cache's type.
  template <typename T>
  T* element(DeviceArray<uint8_t>& a, const char* accessor, int64_t layer, int64_t row,
             int64_t head, int64_t slot) {
    static_assert(sizeof(T) == 2 || sizeof(T) == 4, "float16 or float32 elements");
    FGPT_CHECK(kv_element_bytes(dtype_) == static_cast<int64_t>(sizeof(T)), "KVCache::", accessor,
               ": the cache holds ", kv_dtype_name(dtype_));
    return reinterpret_cast<T*>(a.data()) + offset(layer, row, head, slot);
  }

  const Backend* backend_;
  KVDtype dtype_ = KVDtype::kFloat32;
  int64_t layers_ = 0, rows_ = 0, heads_ = 0, head_size_ = 0, max_length_ = 0;
  DeviceArray<uint8_t> keys_, values_;  // the backend's memory, elements of dtype_
  std::vector<int32_t> sources_;  // [rows, max_length] when on, else empty
};

}  // namespace fastergpt
