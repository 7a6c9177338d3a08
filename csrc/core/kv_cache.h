// The key/value cache of one generate() call, allocated once for the longest
// row (prompt + max_new_tokens) so decoding steps never allocate.
// Layout per layer: [rows, kv heads, max_length, head_size], so one head's keys
// for a row are contiguous and attention streams them.
//
// Beam search shares history between rows without copying it: with sources
// on, position p of row r is read from row sources(r)[p] (the row that wrote
// it), so a beam that takes over another's history copies that row's small
// table of row indices, not its keys and values.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "model_config.h"

namespace fastergpt {

class KVCache {
 public:
  void allocate(const ModelConfig& c, int64_t rows, int64_t max_length) {
    layers_ = c.num_layers;
    rows_ = rows;
    heads_ = c.kv_heads();
    head_size_ = c.head_dim();
    max_length_ = max_length;
    const int64_t per_layer = rows * heads_ * max_length * head_size_;
    // Grow only: the cache is reused by later calls.
    if (static_cast<int64_t>(keys_.size()) < layers_ * per_layer) {
      keys_.resize(layers_ * per_layer);
      values_.resize(layers_ * per_layer);
    }
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

  int64_t max_length() const { return max_length_; }
  int64_t bytes() const {
    return static_cast<int64_t>((keys_.capacity() + values_.capacity()) * sizeof(float));
  }
  void release() { *this = KVCache(); }
  int64_t heads() const { return heads_; }
  int64_t head_size() const { return head_size_; }

  // Copies the first n slots of row src into row dst, in every layer and head
  // (the prompt of a sequence shared by several return sequences).
  void copy_prefix(int64_t src, int64_t dst, int64_t n) {
    for (int64_t l = 0; l < layers_; ++l)
      for (int64_t h = 0; h < heads_; ++h) {
        std::copy(key(l, src, h, 0), key(l, src, h, 0) + n * head_size_, key(l, dst, h, 0));
        std::copy(value(l, src, h, 0), value(l, src, h, 0) + n * head_size_, value(l, dst, h, 0));
      }
  }
  float* key(int64_t layer, int64_t row, int64_t head, int64_t slot) {
    return keys_.data() + offset(layer, row, head, slot);
  }
  float* value(int64_t layer, int64_t row, int64_t head, int64_t slot) {
    return values_.data() + offset(layer, row, head, slot);
  }

 private:
  int64_t offset(int64_t layer, int64_t row, int64_t head, int64_t slot) const {
    return (((layer * rows_ + row) * heads_ + head) * max_length_ + slot) * head_size_;
  }

  int64_t layers_ = 0, rows_ = 0, heads_ = 0, head_size_ = 0, max_length_ = 0;
  std::vector<float> keys_, values_;
  std::vector<int32_t> sources_;  // [rows, max_length] when on, else empty
};

}  // namespace fastergpt
