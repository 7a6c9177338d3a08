"""Building, loading and calling fastergpt's native operator."""
from fastergpt.ops.build import BuildError
from fastergpt.ops.loader import engine_module, library_dir, load_ops, op_library_path, register_library
from fastergpt.ops.generate_op import fastergpt_generate, op_error_to_value_error
from fastergpt.settings import SETTING_NAMES

__all__ = ["BuildError", "engine_module", "library_dir", "load_ops", "op_library_path", "register_library",
           "SETTING_NAMES", "fastergpt_generate",
           "op_error_to_value_error"]
