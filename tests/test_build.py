"""The native build: cached by content, reused across processes, loud on failure."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastergpt.ops import build, loader

ROOT = Path(__file__).resolve().parents[1]


def test_second_process_reuses_the_build():
    lib = loader.library_dir()  # builds once if needed
    code = (
        "import fastergpt.ops.build as b\n"
        "def no_build(*a, **k): raise AssertionError('rebuilt although a matching build exists')\n"
        "b.run_cmake = no_build\n"
        "import fastergpt.ops as o\n"
        "print(o.library_dir()); o.load_ops(); print(o.engine_module().cpu_isa())\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0] == str(lib)


def _copy_sources(dst: Path) -> Path:
    shutil.copy(ROOT / "CMakeLists.txt", dst / "CMakeLists.txt")
    shutil.copytree(ROOT / "csrc", dst / "csrc")
    return dst


def test_key_follows_content_not_mtime(tmp_path):
    src = _copy_sources(tmp_path)
    key = build.build_key(src)
    target = src / "csrc/core/model_config.cc"
    os.utime(target, (1, 1))
    assert build.build_key(src) == key
    target.write_text(target.read_text() + "\n// a change\n")
    assert build.build_key(src) != key


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_broken_source_raises_with_compiler_error(tmp_path):
    (tmp_path / "src_tree").mkdir()
    src = _copy_sources(tmp_path / "src_tree")
    bad = src / "csrc/core/model_config.cc"
    bad.write_text(bad.read_text() + "\nint deliberately_broken = undeclared_symbol_xyz;\n")
    with pytest.raises(build.BuildError) as info:
        build.jit_build(src, cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert "undeclared_symbol_xyz" in msg  # the compiler's own message is quoted
    log = msg.split("Full log: ")[-1].strip()
    assert Path(log).is_file() and "undeclared_symbol_xyz" in Path(log).read_text()
    # Nothing half-built is left where a later load would pick it up.
    assert not list((tmp_path / "cache").rglob(build.BUILD_INFO))
