"""The device argument and the CUDA build, checked on any machine: a device that does
not exist is named; asking for the GPU where it cannot run says why (never a silent
CPU run); and wherever nvcc and cuBLAS are found, the build holds the CUDA backend,
so CI compiles it on machines without a GPU. The GPU's own tests: tests/test_gpu.py."""
import numpy as np
import pytest

from fastergpt.engine import Engine, check_device, cuda_available
from fastergpt.ops import build, engine_module


def test_devices_are_named():
    assert check_device("cpu") == "cpu"
    assert check_device("GPU") == check_device("cuda") == "gpu"
    for bad in ("tpu", "", None, 0):
        with pytest.raises(ValueError, match="device must be one of cpu, gpu"):
            check_device(bad)
    with pytest.raises(ValueError, match="device must be one of"):
        Engine.from_pretrained(None, device="tpu")


def test_the_gpu_where_none_can_run_is_an_error_saying_why():
    ok, why = cuda_available()
    if ok:
        pytest.skip("a GPU is visible: tests/test_gpu.py runs there")
    with pytest.raises(ValueError, match="no CUDA backend|no CUDA GPU is visible") as e:
        Engine.from_pretrained(None, device="gpu")
    print(e.value, "|", why)
    # and the CPU engine is unaffected
    out = Engine.from_pretrained(None).generate(np.array([[5, 6, 7]]), max_new_tokens=4)
    assert out["ids"].shape == (1, 4)


def test_the_build_holds_the_cuda_backend_wherever_nvcc_and_cublas_are_found():
    if build.cuda_setting() == "OFF":
        pytest.skip("FASTERGPT_CUDA=OFF")
    nvcc, cublas = build.nvcc_path(), build.cublas_dir()
    if not (nvcc and cublas):
        pytest.skip(f"no CUDA toolchain here (nvcc: {nvcc}, cuBLAS wheel: {cublas}); "
                    "the build has no CUDA backend")
    assert engine_module().cuda_built(), "nvcc and cuBLAS were found but the CUDA backend was not built"


def test_a_bad_cuda_setting_is_named(monkeypatch):
    monkeypatch.setenv("FASTERGPT_CUDA", "maybe")
    with pytest.raises(build.BuildError, match="FASTERGPT_CUDA must be AUTO, ON or OFF"):
        build.cuda_setting()
    for value, want in (("off", "OFF"), ("1", "ON"), ("auto", "AUTO")):
        monkeypatch.setenv("FASTERGPT_CUDA", value)
        assert build.cuda_setting() == want


def test_tensor_parallel_shards_stay_on_the_cpu():
    ok, _ = cuda_available()
    if not ok:
        pytest.skip("needs a GPU to make a GPU model")
    from fastergpt.pretrained import load_packed

    config, packed, dtype = load_packed(None, None)
    with pytest.raises(ValueError, match="tensor parallelism runs on the CPU"):
        Engine(config, dtype=dtype, packed=packed, all_reduce=lambda a: a, rank=0, size=1,
               device="gpu")
