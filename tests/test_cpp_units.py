"""Builds the C++ unit tests (kernels vs scalar references, sampling, engine) with
the project's CMake and runs them through ctest: plain, and under AddressSanitizer
+ UndefinedBehaviorSanitizer (FASTERGPT_SANITIZE), where any finding fails."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
@pytest.mark.parametrize("sanitize", ["OFF", "ON"], ids=["plain", "asan+ubsan"])
def test_ctest_passes(tmp_path_factory, sanitize):
    build = tmp_path_factory.mktemp("ctest_build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    for cmd in (["cmake", "-S", str(ROOT), "-B", str(build), *gen, "-DFASTERGPT_BUILD_TESTS=ON",
                 f"-DFASTERGPT_SANITIZE={sanitize}"],
                ["cmake", "--build", str(build), "-j", "2"],
                ["ctest", "--test-dir", str(build), "--output-on-failure"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(proc.stdout[-4000:])
        assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
