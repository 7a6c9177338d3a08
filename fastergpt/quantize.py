"""Weight formats on the Python side: the list comes from the engine's format
table (csrc/core/matrix.h, through the pybind11 module); this file adds only
what Python does per format: pack a float32 matrix once (at load or export)
and unpack it back to float32 for reference checks. A format the engine lists
without a packer here is an error, not a silent skip.

| format  | stored                 | scales               | kernel                     |
|---------|------------------------|----------------------|----------------------------|
| float32 | float32 [N, K]         | -                    | fp32 FMA                   |
| float16 | IEEE half [N, K]       | -                    | F16C convert, fp32 FMA     |
| int8    | int8 [N, K], symmetric | float32 [N] per row  | int8 activations, int32 dot |
| int4    | 4-bit, 16-row blocks   | float16 scale + zero per group (fastergpt/int4.py) | int8 activations, int32 dot per group |

int4 from float weights is round-to-nearest in groups of 128 columns; GPTQ comes from a
quantized checkpoint (`fastergpt quantize`), whose groups the engine keeps.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def quantize_int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: w[n] ~= scale[n] * q[n], q in [-127, 127]."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def _to_float16(w: np.ndarray) -> np.ndarray:
    """Half precision; values beyond its range become inf (the packer reports them)."""
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(w, dtype=np.float16)


# format name -> pack: float32 [N, K] -> the arrays the engine takes ([data] or [data, scales]).
PACKERS = {
    "float32": lambda w: [np.ascontiguousarray(w, dtype=np.float32)],
    "float16": lambda w: [_to_float16(w)],
    "int8": lambda w: [np.ascontiguousarray(a) for a in quantize_int8_rows(w)],
    "int4": lambda w: _int4().pack_engine(_int4().quantize_rtn(w)),
}


def _int4():
    from fastergpt import int4

    return int4


@lru_cache(maxsize=None)
def weight_formats() -> tuple:
    """The engine's weight-format rows: ({name, alias, element, bits, scales, description}, ...)."""
    from fastergpt.ops import engine_module

    rows = tuple(engine_module().weight_formats())
    missing = [r["name"] for r in rows if r["name"] not in PACKERS]
    if missing:
        raise RuntimeError(f"weight format(s) {missing} have no packer in fastergpt/quantize.py")
    return rows


def format_names() -> list:
    return [r["name"] for r in weight_formats()]


def normalize_dtype(dtype: str) -> str:
    """A format's name from its name or alias; ValueError listing the formats otherwise."""
    for r in weight_formats():
        if dtype in (r["name"], r["alias"]) and dtype:
            return r["name"]
    raise ValueError(f"dtype {dtype!r} is not supported; expected one of {', '.join(format_names())}")


def pack_matrix(w: np.ndarray, fmt: str) -> list[np.ndarray]:
    """The arrays the engine takes for one [N, K] matrix: [data] or [data, scales]."""
    return PACKERS[normalize_dtype(fmt)](w)


def unpack_matrix(data: np.ndarray, scales: np.ndarray | None = None,
                  shape: tuple | None = None) -> np.ndarray:
    """float32 values of a packed matrix (what the kernels compute with); an int4 one
    (float16 group parameters) needs its [rows, cols] `shape`."""
    if scales is not None and scales.dtype == np.float16:
        return _int4().unpack_engine(data, scales, *shape).dequantize()
    w = np.asarray(data).astype(np.float32)
    return w * scales[:, None] if scales is not None else w
