// The CPU row of the device seam: the Backend table filled with csrc/cpu's ops.
#include "cpu_ops.h"

namespace fastergpt {

const Backend& cpu_backend() {
  static const Backend backend{
      "cpu",           /*host_memory=*/true, /*half_kv_cache=*/true,
      /*bf16_matmul=*/cpu::has_bf16_matmul(),
      cpu::allocate,   cpu::deallocate,
      cpu::copy,       cpu::bind_matrix,     cpu::bind_vector, cpu::place_weights, cpu::add,
      cpu::add_positions, cpu::linear,       cpu::embed,       cpu::layer_norm,
      cpu::rms_norm,   cpu::rotary,          cpu::glu,         cpu::store_kv,
      cpu::attention};
  return backend;
}

}  // namespace fastergpt
