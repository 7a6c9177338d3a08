"""Building, loading and calling fastergpt's native operator."""
from fastergpt.ops.build import BuildError
from fastergpt.ops.loader import engine_module, library_dir, load_ops, op_library_path
from fastergpt.ops.generate_op import SETTING_NAMES, fastergpt_generate

__all__ = ["BuildError", "engine_module", "library_dir", "load_ops", "op_library_path",
           "SETTING_NAMES", "fastergpt_generate"]
