// The CUDA entry points of a build without CUDA (FASTERGPT_CUDA off: no nvcc or
// no cuBLAS where it was built). Asking for the GPU is an error that says so;
// nothing falls back to the CPU behind the caller's back.
#include "error.h"
#include "kernels.h"

namespace fastergpt {

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }

const Backend& cuda_backend() {
  throw Error("device \"gpu\": this build of fastergpt has no CUDA backend (it was built "
              "without nvcc or cuBLAS; install the CUDA toolkit's nvcc and `pip install "
              "nvidia-cublas`, then rebuild with FASTERGPT_CUDA=ON)");
}

}  // namespace fastergpt
