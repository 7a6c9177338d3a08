// The CUDA row of the device seam: device memory, weights unpacked into the
// row-major layout cuBLAS reads, and the Backend table of csrc/cuda's ops.
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "../core/matrix.h"
#include "cuda_common.h"
#include "cuda_ops.h"

namespace fastergpt {
namespace cuda {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    cudaGetLastError();  // clears it: the next call's check must not report this one
    throw Error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) + " (" +
                cudaGetErrorString(status) + ")");
  }
}

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(status));
}

std::mutex& enqueue_mutex() {
  static std::mutex m;
  return m;
}

DeviceState& state() {
  static DeviceState s;
  static std::once_flag made;
  static std::string failure;
  std::call_once(made, [] {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      failure = std::string("device \"gpu\": no CUDA GPU is visible (cudaGetDeviceCount: ") +
                (e != cudaSuccess ? cudaGetErrorString(e) : "0 devices") + ")";
      return;
    }
    try {
      check(cudaGetDevice(&s.device), "cudaGetDevice");
      check(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
      check(cublasCreate(&s.blas), "cublasCreate");
      check(cublasSetStream(s.blas, s.stream), "cublasSetStream");
      // Default math: CUBLAS_COMPUTE_32F GEMMs stay float32 (no TF32: float32 results
      // differ from the CPU's only by summation order), and float16 operands may use the
      // tensor cores.
      check(cublasSetMathMode(s.blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    } catch (const Error& err) {
      failure = err.what();
    }
  });
  if (!failure.empty()) throw Error(failure);
  // The current device is per host thread: the calling thread may not have made it current.
  check(cudaSetDevice(s.device), "cudaSetDevice");
  return s;
}

namespace {
struct ScratchBuffer {
  void* data = nullptr;
  int64_t bytes = 0;
  std::vector<char> uploaded;  // what upload_bytes last put there (empty: unknown)
};
ScratchBuffer& scratch_buffer(Scratch which) {
  static ScratchBuffer buffers[static_cast<int>(Scratch::kCount)];
  return buffers[static_cast<int>(which)];
}
}  // namespace

void* scratch(Scratch which, int64_t bytes) {
  ScratchBuffer& b = scratch_buffer(which);
  b.uploaded.clear();  // the caller may write anything there
  if (b.bytes < bytes) {
    if (b.data) check(cudaFree(b.data), "cudaFree");  // waits for the kernels using it
    b.data = nullptr;
    b.bytes = 0;
    check(cudaMalloc(&b.data, static_cast<size_t>(bytes)), "allocating GPU scratch memory");
    b.bytes = bytes;
  }
  return b.data;
}

const void* upload_bytes(Scratch which, const void* host, int64_t bytes) {
  ScratchBuffer& b = scratch_buffer(which);
  const char* h = static_cast<const char*>(host);
  if (bytes > 0 && static_cast<int64_t>(b.uploaded.size()) == bytes &&
      std::memcmp(b.uploaded.data(), h, static_cast<size_t>(bytes)) == 0)
    return b.data;
  void* d = scratch(which, bytes);
  check(cudaMemcpyAsync(d, host, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, state().stream),
        "copying a pass's indices to the GPU");
  b.uploaded.assign(h, h + bytes);
  return d;
}

namespace {

void* allocate(int64_t bytes) {
  DeviceState& s = state();
  void* p = nullptr;
  if (bytes <= 0) return nullptr;
  const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(bytes));
  if (e != cudaSuccess) {
    cudaGetLastError();  // clears the error, so later calls do not see it
    throw Error("out of GPU memory: allocating " + std::to_string(bytes >> 20) + " MiB failed (" +
                cudaGetErrorString(e) + ")");
  }
  check(cudaMemsetAsync(p, 0, static_cast<size_t>(bytes), s.stream), "cudaMemset");
  return p;
}

void deallocate(void* p) {
  if (p) cudaFree(p);  // in a destructor: an error here has nobody to go to
}

void copy(void* dst, const void* src, int64_t bytes, CopyKind kind) {
  if (bytes <= 0 || dst == src) return;
  DeviceState& s = state();
  const cudaMemcpyKind k = kind == CopyKind::kHostToDevice   ? cudaMemcpyHostToDevice
                           : kind == CopyKind::kDeviceToHost ? cudaMemcpyDeviceToHost
                                                             : cudaMemcpyDeviceToDevice;
  check(cudaMemcpyAsync(dst, src, static_cast<size_t>(bytes), k, s.stream), "cudaMemcpy");
  if (kind == CopyKind::kDeviceToHost) check(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
}

// Device memory holding `bytes` of host data, owned by `keep`.
const void* upload_block(const void* host, int64_t bytes, std::vector<DeviceBlock>* keep) {
  void* d = allocate(bytes);
  keep->push_back(DeviceBlock(d, deallocate));
  copy(d, host, bytes, CopyKind::kHostToDevice);
  check(cudaStreamSynchronize(state().stream), "uploading weights");  // the host copy may go
  return d;
}

// The CPU's packing back to row-major [rows, cols], for cuBLAS.
template <class T>
std::vector<T> unpack_blocks16(const T* packed, int64_t rows, int64_t cols) {
  std::vector<T> out(static_cast<size_t>(rows * cols));
  unpack_float_blocks16(packed, rows, cols, out.data());
  return out;
}

Matrix bind_matrix(const Matrix& m, std::vector<DeviceBlock>* keep) {
  const WeightFormatInfo& f = format_info(m.format);
  FGPT_CHECK(f.layout == StorageLayout::kFloatBlocks16 && f.scales == ScaleLayout::kNone,
             "weight format ", f.name, " has no CUDA kernels; on the GPU use float32 or float16");
  Matrix d = m;
  const int64_t n = m.rows * m.cols;
  if (m.format == WeightFormat::kF32) {
    const std::vector<float> rows = unpack_blocks16(static_cast<const float*>(m.data), m.rows, m.cols);
    d.data = upload_block(rows.data(), n * 4, keep);
  } else {
    const std::vector<uint16_t> rows =
        unpack_blocks16(static_cast<const uint16_t*>(m.data), m.rows, m.cols);
    d.data = upload_block(rows.data(), n * 2, keep);
  }
  return d;
}

const float* bind_vector(const float* v, int64_t n, std::vector<DeviceBlock>* keep) {
  return static_cast<const float*>(upload_block(v, n * 4, keep));
}

void place_weights(const std::vector<HostBytes>&) {}  // the GPU reads its own copies

}  // namespace
}  // namespace cuda

bool cuda_built() { return true; }

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

const Backend& cuda_backend() {
  cuda::state();  // a clear error now, when no GPU is visible, rather than at the first kernel
  static const Backend backend{
      "cuda",           /*host_memory=*/false, /*half_kv_cache=*/false, /*bf16_matmul=*/false,
      cuda::allocate,   cuda::deallocate,
      cuda::copy,       cuda::bind_matrix,     cuda::bind_vector, cuda::place_weights, cuda::add,
      cuda::add_positions, cuda::linear,       cuda::embed,       cuda::layer_norm,
      cuda::rms_norm,   cuda::rotary,          cuda::glu,         cuda::store_kv,
      cuda::attention};
  return backend;
}

}  // namespace fastergpt
