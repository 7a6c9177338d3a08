"""Building, loading and calling fastergpt's native operator.

The Paddle-facing call (generate_op) is imported on first use, so the NumPy
path (engine_module) works without loading Paddle."""
from fastergpt.ops.build import BuildError
from fastergpt.ops.loader import (engine_module, library_dir, library_sha256, load_ops,
                                  op_library_path, register_library)

__all__ = ["BuildError", "engine_module", "library_dir", "library_sha256", "load_ops", "op_library_path",
           "register_library", "fastergpt_generate", "op_error_to_value_error"]


def __getattr__(name):
    if name in ("fastergpt_generate", "op_error_to_value_error"):
        from fastergpt.ops import generate_op

        return getattr(generate_op, name)
    raise AttributeError(f"module 'fastergpt.ops' has no attribute {name!r}")
