"""Weight formats on the Python side: how a float32 matrix is packed for each
format the engine reads (csrc/core/matrix.h has the same table in C++), and
back to float32 for reference checks. Applied once, at load or export.

| format  | stored                 | scales               | kernel                     |
|---------|------------------------|----------------------|----------------------------|
| float32 | float32 [N, K]         | -                    | fp32 FMA                   |
| float16 | IEEE half [N, K]       | -                    | F16C convert, fp32 FMA     |
| int8    | int8 [N, K], symmetric | float32 [N] per row  | int8 -> fp32, fp32 FMA, x scale |
"""
from __future__ import annotations

import numpy as np

WEIGHT_FORMATS = ("float32", "float16", "int8")
DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "float": "float32", "half": "float16"}


def normalize_dtype(dtype: str) -> str:
    d = DTYPE_ALIASES.get(dtype, dtype)
    if d not in WEIGHT_FORMATS:
        raise ValueError(f"dtype {dtype!r} is not supported; expected one of {', '.join(WEIGHT_FORMATS)}")
    return d


def quantize_int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: w[n] ~= scale[n] * q[n], q in [-127, 127]."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def pack_matrix(w: np.ndarray, fmt: str) -> list[np.ndarray]:
    """The arrays the engine takes for one [N, K] matrix: [data] or [data, scales]."""
    if fmt == "float32":
        return [np.ascontiguousarray(w, dtype=np.float32)]
    if fmt == "float16":
        return [np.ascontiguousarray(w, dtype=np.float16)]
    if fmt == "int8":
        q, scale = quantize_int8_rows(w)
        return [np.ascontiguousarray(q), scale]
    raise ValueError(f"unknown weight format {fmt!r}")


def unpack_matrix(data: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """float32 values of a packed matrix (what the kernels compute with)."""
    w = np.asarray(data).astype(np.float32)
    return w * scales[:, None] if scales is not None else w
