"""Finds or builds the native libraries and loads them into this process.

Order: a library built by ``pip install .`` into ``fastergpt/_lib`` (used when
its Paddle version matches and, in a source checkout, when its key matches the
sources), else a JIT build in the user cache (see :mod:`fastergpt.ops.build`).
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

from fastergpt.ops import build

_lock = threading.Lock()
_lib_dir: Path | None = None
_registered: Path | None = None  # the op library registered with Paddle in this process
_engine_module = None


def _prebuilt_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "_lib"


def library_dir() -> Path:
    """Directory holding libfastergpt_ops.so and the _engine module, building if needed."""
    global _lib_dir
    with _lock:
        if _lib_dir is not None:
            return _lib_dir
        src = build.source_root()
        running = build.installed_paddle_version()
        pre = _prebuilt_dir()
        info = build.read_build_info(pre)
        if info and info.get("paddle") == running and (
                src is None or info.get("key") == build.build_key(src)):
            _lib_dir = pre
        elif src is not None:
            _lib_dir = build.jit_build(src)
        else:
            raise build.BuildError(
                f"no usable prebuilt fastergpt library in {pre} (built for paddle "
                f"{info.get('paddle') if info else 'none'}, running {running}) and no "
                "sources to build from; reinstall fastergpt (`pip install .`) against this Paddle")
        return _lib_dir


def op_library_path() -> Path:
    build.paddle_version()  # the op is built only where Paddle is installed: say so
    return library_dir() / build.OP_LIBRARY


def library_sha256(path: Path) -> str:
    """The SHA-256 of a library file: how an export records which build it holds."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def register_library(path: Path) -> Path:
    """Registers the operator from `path` unless one is registered already (Paddle
    keeps one definition per op name per process); returns the library in use.
    A different build already registered is an error, not a silent substitute."""
    global _registered
    with _lock:
        if _registered is None:
            if not Path(path).is_file():
                raise FileNotFoundError(f"operator library {path} is missing")
            from paddle.utils.cpp_extension.extension_utils import load_op_meta_info_and_register_op

            load_op_meta_info_and_register_op(str(path))
            _registered = Path(path)
        elif Path(path) != _registered and library_sha256(path) != library_sha256(_registered):
            raise RuntimeError(f"operator library {path} differs from {_registered}, which this "
                               "process has registered already (one build per process)")
        return _registered


def load_ops() -> Path:
    """Registers the `fastergpt_generate` operator with Paddle (once per process)."""
    if _registered is not None:
        return _registered
    return register_library(op_library_path())


def engine_module():
    """The pybind11 module `_engine` (the engine from NumPy)."""
    global _engine_module
    lib = library_dir()
    with _lock:
        if _engine_module is None:
            candidates = sorted(p for p in os.listdir(lib) if p.startswith("_engine") and p.endswith(".so"))
            if not candidates:
                raise build.BuildError(f"the _engine module is missing from {lib}")
            spec = importlib.util.spec_from_file_location("fastergpt._engine", lib / candidates[0])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _engine_module = module
    return _engine_module
