"""Reads a PaddleNLP `model_state.pdparams` (what `paddle.save` writes: a pickle of
a dict of numpy arrays) WITHOUT running code from it.

A pickle can name any importable callable and call it while it is read
(`os.system` included), so `paddle.load` / `pickle.load` on a file received from
someone else runs that file's code. This reader resolves only the few globals a
parameter file needs to rebuild numpy arrays (numpy's `_reconstruct`, `ndarray`,
`dtype`, `scalar`, and `OrderedDict`) and refuses any other, naming the file and
the global, before anything is called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"),
}
# paddle.save's bookkeeping entry (parameter -> structured name), not a weight.
_PADDLE_NAME_TABLE = "StructuredToParameterName@@"


class UnsafePickleError(ValueError):
    """The file is not a plain parameter file; the message names the file and why."""


class _ParameterUnpickler(pickle.Unpickler):
    def __init__(self, f, source: str):
        super().__init__(f)
        self._source = source

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refusing to load it: it references {module}.{name}, which a "
            "parameter file never needs (reading a pickle can run code; convert the checkpoint "
            "to safetensors, or load it only if you trust its source)")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source}: refusing to load it: it uses persistent ids")


def load_parameters(path) -> dict:
    """{name: numpy array} from a `paddle.save`d state dict; UnsafePickleError for
    anything else (other globals, a non-dict, non-array values)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        obj = _ParameterUnpickler(io.BytesIO(data), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as e:
        raise UnsafePickleError(f"{path} is corrupt or truncated: {e}") from None
    if not isinstance(obj, dict):
        raise UnsafePickleError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    obj = {k: v for k, v in obj.items() if k != _PADDLE_NAME_TABLE}
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise UnsafePickleError(f"{path}: entries {bad[:5]} are not named arrays")
    return obj
