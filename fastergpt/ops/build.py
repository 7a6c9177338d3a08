"""Builds the native libraries (Paddle op + pybind11 module) with the project's CMake.

Used ahead of time by ``setup.py`` and just in time by :mod:`fastergpt.ops.loader`.
A JIT build lands in ``<cache>/<key>/`` where the key hashes the sources, the
compilers (nvcc too: the CUDA backend is built where nvcc and cuBLAS are found,
see ``FASTERGPT_CUDA``), the CMake flags and the Paddle and Python versions (never mtimes), and
a file lock serialises processes that build at the same time. No network is
used. A failed build raises :class:`BuildError` quoting the compiler's errors
and naming the full log: there is no slower fallback to drop to silently.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

BUILD_INFO = "build_info.json"
OP_LIBRARY = "libfastergpt_ops.so"


class BuildError(RuntimeError):
    """The native build failed; the message quotes the errors and the log path."""


def source_root() -> Path | None:
    """The checkout holding CMakeLists.txt and csrc/, when running from source."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "CMakeLists.txt").is_file() and (root / "csrc").is_dir() else None


def default_cache_dir() -> Path:
    env = os.environ.get("FASTERGPT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastergpt"


def _paddle_dir() -> str:
    # Found without importing paddle, so the NumPy path never loads it.
    import importlib.util

    spec = importlib.util.find_spec("paddle")
    if spec is None or not spec.origin:
        raise BuildError("paddle is not installed: pip install paddlepaddle==3.3.1")
    return os.path.dirname(spec.origin)


def installed_paddle_version() -> str | None:
    """Paddle's version, or None where it is not installed: then only the NumPy module
    (`fastergpt.Engine`) is built, and the Paddle op says it needs Paddle."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("paddlepaddle", "paddlepaddle-gpu"):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    return None


def paddle_version() -> str:
    v = installed_paddle_version()
    if v is None:
        raise BuildError("paddle is not installed: pip install paddlepaddle==3.3.1")
    return v


def _pybind11_cmake_dir() -> str:
    import pybind11

    return pybind11.get_cmake_dir()


def cuda_setting() -> str:
    """FASTERGPT_CUDA from the environment: AUTO (the default: the CUDA backend is built
    where nvcc and cuBLAS are found), ON (fail without them) or OFF."""
    value = os.environ.get("FASTERGPT_CUDA", "AUTO").strip().upper()
    aliases = {"1": "ON", "TRUE": "ON", "YES": "ON", "0": "OFF", "FALSE": "OFF", "NO": "OFF"}
    value = aliases.get(value, value)
    if value not in ("AUTO", "ON", "OFF"):
        raise BuildError(f"FASTERGPT_CUDA must be AUTO, ON or OFF, got {os.environ['FASTERGPT_CUDA']!r}")
    return value


def nvcc_path() -> str | None:
    """nvcc on PATH, else the toolkit's under CUDA_HOME (or /usr/local/cuda)."""
    found = shutil.which("nvcc")
    if found:
        return found
    home = Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda")
    return str(home / "bin" / "nvcc") if (home / "bin" / "nvcc").is_file() else None


def cublas_dir() -> str | None:
    """The `nvidia-cublas` wheel's directory (include/cublas_v2.h, lib/libcublas.so.*)."""
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    for base in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("cu13", "cu12", "cublas"):
            d = Path(base) / sub
            if (d / "include" / "cublas_v2.h").is_file():
                return str(d)
    return None


def _cuda_args() -> list[str]:
    setting = cuda_setting()
    args = [f"-DFASTERGPT_CUDA={setting}"]
    if setting == "OFF":
        return args
    nvcc, cublas = nvcc_path(), cublas_dir()
    if nvcc:
        args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if cublas:
        args.append(f"-DFASTERGPT_CUBLAS_DIR={cublas}")
    return args


def _nvcc_id() -> str:
    nvcc = nvcc_path() if cuda_setting() != "OFF" else None
    if not nvcc:
        return "no nvcc"
    try:
        return subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"{nvcc}: {e}"


def cmake_args(output_dir: Path) -> list[str]:
    return [
        "-DCMAKE_BUILD_TYPE=Release",
        "-DFASTERGPT_BUILD_TESTS=OFF",
        "-DFASTERGPT_BUILD_PYTHON=ON",
        *([f"-DFASTERGPT_PADDLE_DIR={_paddle_dir()}"] if installed_paddle_version() else []),
        f"-DFASTERGPT_PYTHON_INCLUDE={sysconfig.get_paths()['include']}",
        f"-Dpybind11_DIR={_pybind11_cmake_dir()}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DFASTERGPT_OUTPUT_DIR={output_dir}",
        *_cuda_args(),
    ]


def _compiler_id() -> str:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return f"{cxx}\n{out.stdout}"
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"no C++ compiler found ({cxx}: {e}); install g++ to build fastergpt") from e


def build_key(src: Path) -> str:
    """Hash of everything that changes the built libraries."""
    h = hashlib.sha256()
    files = [src / "CMakeLists.txt"] + sorted(p for p in (src / "csrc").rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(src)).encode())
        h.update(f.read_bytes())
    h.update(_compiler_id().encode())
    h.update(_nvcc_id().encode())
    h.update(" ".join(cmake_args(Path("OUT"))).encode())
    h.update(f"paddle={installed_paddle_version()} python={sys.version}".encode())
    return h.hexdigest()[:16]


def _first_errors(log: str, limit: int = 25) -> str:
    lines = [l for l in log.splitlines() if "error" in l.lower() or "Error" in l]
    return "\n".join(lines[:limit]) or "\n".join(log.splitlines()[-limit:])


def run_cmake(src: Path, build_dir: Path, output_dir: Path, log_path: Path) -> None:
    """Configure and build into output_dir; raise BuildError on any failure."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise BuildError("cmake not found on PATH; install it (e.g. `pip install cmake`) to build fastergpt")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    jobs = str(max(1, os.cpu_count() or 1))
    steps = [
        [cmake, "-S", str(src), "-B", str(build_dir), *generator, *cmake_args(output_dir)],
        [cmake, "--build", str(build_dir), "--target",
         *(["fastergpt_ops"] if installed_paddle_version() else []), "_engine", "-j", jobs],
    ]
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        for cmd in steps:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                text = log_path.read_text(errors="replace")
                raise BuildError(
                    f"building fastergpt's native libraries failed (exit {proc.returncode}).\n"
                    f"{_first_errors(text)}\nFull log: {log_path}")


def jit_build(src: Path, cache_dir: Path | None = None) -> Path:
    """Build (once) the libraries for the sources in src; return the directory holding them."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = build_key(src)
    out = cache_dir / key
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key
        if (out / BUILD_INFO).is_file():
            return out
        tmp = cache_dir / f"{key}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        lib_dir = tmp / "lib"
        log_path = cache_dir / f"{key}.build.log"
        run_cmake(src, tmp / "build", lib_dir, log_path)
        shutil.rmtree(out, ignore_errors=True)
        lib_dir.rename(out)
        shutil.copy(log_path, out / "build.log")
        write_build_info(out, key)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_build_info(lib_dir: Path, key: str) -> None:
    info = {"key": key, "paddle": installed_paddle_version(), "python": sys.version.split()[0]}
    (lib_dir / BUILD_INFO).write_text(json.dumps(info, indent=1))


def read_build_info(lib_dir: Path) -> dict | None:
    try:
        return json.loads((lib_dir / BUILD_INFO).read_text())
    except (OSError, ValueError):
        return None
