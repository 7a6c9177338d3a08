// Devices by name: what the front ends' `device` argument selects.
#include <string>

#include "error.h"
#include "kernels.h"

namespace fastergpt {

const Backend& backend_for_device(const std::string& device) {
  if (device == "cpu") return cpu_backend();
  if (device == "gpu" || device == "cuda") return cuda_backend();
  throw Error("device must be \"cpu\" or \"gpu\", got \"" + device + "\"");
}

}  // namespace fastergpt
