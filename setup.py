"""Installs fastergpt and builds its native libraries ahead of time with CMake.

The build is the same CMake build the JIT loader runs (fastergpt/ops/build.py);
the libraries land in fastergpt/_lib with a build_info.json the loader checks.
Paddle and pybind11 must already be installed: use
`pip install --no-build-isolation .` (see README).
"""
import importlib.util
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


def _build_module():
    spec = importlib.util.spec_from_file_location("_fastergpt_build", ROOT / "fastergpt/ops/build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BuildWithCMake(build_py):
    def run(self):
        super().run()
        build = _build_module()
        lib_dir = Path(self.build_lib) / "fastergpt" / "_lib"
        lib_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(self.get_finalized_command("build").build_temp) / "cmake"
        build.run_cmake(ROOT, temp.resolve(), lib_dir.resolve(), lib_dir.resolve() / "build.log")
        build.write_build_info(lib_dir, build.build_key(ROOT))


setup(
    name="fastergpt",
    version="0.1.0",
    description="GPT text generation in one fused PaddlePaddle operator",
    packages=find_packages(include=["fastergpt", "fastergpt.*"]),
    python_requires=">=3.9",
    install_requires=["paddlepaddle==3.3.1", "numpy", "pybind11>=2.10", "tokenizers",
                      "safetensors", "fastapi", "uvicorn"],
    # paddlenlp: the pins of requirements-paddlenlp.txt (they conflict with transformers>=5).
    extras_require={"sentencepiece": ["sentencepiece"],
                    "paddlenlp": ["paddlenlp==2.8.1", "huggingface_hub<1.0", "aistudio-sdk<0.3",
                                  "datasets<3", "pyarrow<17"],
                    # ray: fastergpt serve --replicas (requirements-ray.txt)
                    "ray": ["ray[serve]>=2.60,<3"]},
    package_data={"fastergpt": ["default_model/*", "server/page.html"]},
    entry_points={"console_scripts": [
        "fastergpt-infer=fastergpt.cli.infer:main",
        "fastergpt-export=fastergpt.cli.export:main",
        "fastergpt=fastergpt.__main__:main",
    ]},
    cmdclass={"build_py": BuildWithCMake},
    zip_safe=False,
)
