#!/usr/bin/env bash
# Everything the CUDA backend needs a GPU for, in one run (about 5 minutes on an H100):
# the CUDA ops against the CPU's (C++), the GPU tests (pytest -m gpu), the same under
# compute-sanitizer's memcheck, and the speed against transformers. Needs Python with
# numpy, pybind11, torch, transformers, tokenizers and safetensors, cmake and nvcc; no
# Paddle. Results go to ${OUT:-gpu_check}/.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_check}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
export FASTERGPT_CUDA=ON FASTERGPT_CACHE_DIR="$out/cache"
status=0
cmake -S . -B "$out/build" -DFASTERGPT_CUDA=ON -DFASTERGPT_BUILD_TESTS=ON >"$out/cmake.log" 2>&1 &&
  cmake --build "$out/build" -j "$(nproc)" --target cuda_kernels_test kernels_test >>"$out/cmake.log" 2>&1 ||
  { echo "C++ build failed: $out/cmake.log"; tail -30 "$out/cmake.log"; status=1; }
if [ -x "$out/build/cuda_kernels_test" ]; then
  "$out/build/cuda_kernels_test" 2>&1 | tail -40 | tee "$out/cuda_kernels_test.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
python -m pytest -q tests/test_gpu.py tests/test_devices.py -x 2>&1 | tail -40 |
  tee "$out/pytest_gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 3 python -m pytest -q -m gpu \
    tests/test_gpu.py -k "gpt2 or llama-gqa" 2>&1 | tail -20 | tee "$out/memcheck.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
python benchmarks/bench_gpu.py --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
exit $status
