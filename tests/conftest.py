"""Fixtures shared by test modules."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory):
    """infer/cpp built once per run (gpt_infer, bpe_tokenize)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    build = tmp_path_factory.mktemp("cpp_build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    for cmd in (["cmake", "-S", str(ROOT / "infer/cpp"), "-B", str(build), *gen,
                 f"-DPython3_EXECUTABLE={sys.executable}"],
                ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return build


@pytest.fixture(scope="session")
def cpp_build_sanitized(tmp_path_factory):
    """infer/cpp built with AddressSanitizer + UndefinedBehaviorSanitizer (gpt_infer's own
    code: arguments, JSON, tokenizer, settings; Paddle and the operator library are not
    instrumented). Returns (build directory, the environment to run it in)."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    build = tmp_path_factory.mktemp("cpp_build_asan")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    flags = "-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
    for cmd in (["cmake", "-S", str(ROOT / "infer/cpp"), "-B", str(build), *gen,
                 f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                 f"-DCMAKE_CXX_FLAGS={flags}", "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined"],
                ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return build, _sanitized_env()


def _sanitized_env() -> dict:
    """The environment a sanitized gpt_infer runs in. Paddle's own findings are set
    aside: an operator new[]/delete mismatch in its custom-op registration, and what
    libpaddle.so leaves allocated at exit; everything else aborts the run. ASan's
    dlopen interceptor loses libpaddle.so's RUNPATH, so its libs/ go on the path."""
    import os

    import paddle

    paddle_dir = os.path.dirname(paddle.__file__)
    supp = ROOT / "tests" / "lsan_paddle.supp"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [f"{paddle_dir}/libs", f"{paddle_dir}/base",
                                                           env.get("LD_LIBRARY_PATH")]))
    env["ASAN_OPTIONS"] = "alloc_dealloc_mismatch=0:abort_on_error=0:exitcode=99"
    env["LSAN_OPTIONS"] = f"suppressions={supp}:print_suppressions=0"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1:exitcode=99"
    return env
