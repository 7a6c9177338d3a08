// The CPU row of the device seam: the Backend table filled with csrc/cpu's ops.
#include "cpu_ops.h"

namespace fastergpt {

const Backend& cpu_backend() {
  static const Backend backend{"cpu",       cpu::linear, cpu::embed,    cpu::layer_norm,
                               cpu::rms_norm, cpu::rotary, cpu::glu, cpu::attention};
  return backend;
}

}  // namespace fastergpt
