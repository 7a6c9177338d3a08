"""Weight formats on the Python side: the list comes from the engine's format
table (csrc/core/matrix.h, through the pybind11 module); this file adds only
what Python does per format: pack a float32 matrix once (at load or export)
and unpack it back to float32 for reference checks. A format the engine lists
without a packer here is an error, not a silent skip.

| format  | stored                 | scales               | kernel                     |
|---------|------------------------|----------------------|----------------------------|
| float32 | float32, 16-row blocks | -                    | fp32 FMA                   |
| float16 | IEEE half, 16-row blocks | -                  | F16C convert, fp32 FMA     |
| int8    | int8, symmetric, 16-row blocks | float32 [N] per row | int8 activations, int32 dot |
| int4    | 4-bit, 16-row blocks   | float16 scale + zero per group (fastergpt/int4.py) | int8 activations, int32 dot per group |
| bfloat16 | bfloat16 (uint16 bits), 16 rows x 2 columns | - | widened exactly, fp32 FMA (vdpbf16ps under matmul_precision=bfloat16) |

float32 and float16 (csrc/core/matrix.h, StorageLayout::kFloatBlocks16): rows in blocks
of 16 (N padded with zero rows), [ceil(N/16), 16 * K], per block column after column:
element 16*k + r of block b is W[16b + r, k].

int8's layout (StorageLayout::kByteBlocks16; csrc/cpu/simd_int8.inc reads it): rows in blocks of 16 (N padded with zero rows), K padded to a multiple of 4;
int8 [ceil(N/16), 16 * Kp], per block and step of 4 columns 64 bytes, byte 4*r + c holding
q[16b + r, 4s + c]. One 64-byte load is 4 weights of 16 rows: the kernels keep output rows
in vector lanes and read W strictly in order, for one token or many.

bfloat16's (StorageLayout::kPairBlocks16): rows in blocks of 16, K padded to even; uint16
[ceil(N/16), 16 * Kp], per block and pair of columns s 64 bytes, element 32*s + 2*r + c
holding W[16b + r, 2s + c] rounded to nearest even (a bfloat16 checkpoint's values exactly):
each 32-bit word is one row's two weights, what vdpbf16ps multiplies.

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


BLOCK_ROWS = 16


def pack_int8_blocks(q: np.ndarray) -> np.ndarray:
    """int8 [N, K] values -> the engine's int8 layout, int8 [ceil(N/16), 16 * Kp]."""
    N, K = q.shape
    B, Kp = -(-N // BLOCK_ROWS), -(-K // 4) * 4
    padded = np.zeros((B * BLOCK_ROWS, Kp), dtype=np.int8)
    padded[:N, :K] = q
    blocks = padded.reshape(B, BLOCK_ROWS, Kp // 4, 4).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(blocks.reshape(B, BLOCK_ROWS * Kp))


def unpack_int8_blocks(data: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The engine's int8 layout -> int8 [rows, cols] values."""
    data = np.asarray(data)
    B, Kp = -(-rows // BLOCK_ROWS), -(-cols // 4) * 4
    if data.shape != (B, BLOCK_ROWS * Kp):
        raise ValueError(f"int8 matrix [{rows}, {cols}]: packed shape {data.shape}, expected "
                         f"{(B, BLOCK_ROWS * Kp)}")
    q = data.reshape(B, Kp // 4, BLOCK_ROWS, 4).transpose(0, 2, 1, 3).reshape(B * BLOCK_ROWS, Kp)
    return np.ascontiguousarray(q[:rows, :cols])


def pack_float_blocks(w: np.ndarray, dtype) -> np.ndarray:
    """float [N, K] -> the engine's float layout in `dtype`, [ceil(N/16), 16 * K]."""
    N, K = w.shape
    B = -(-N // BLOCK_ROWS)
    padded = np.zeros((B * BLOCK_ROWS, K), dtype=dtype)
    with np.errstate(over="ignore"):  # float16 overflow becomes inf (the packer reports it)
        padded[:N] = w
    return np.ascontiguousarray(padded.reshape(B, BLOCK_ROWS, K).transpose(0, 2, 1).reshape(B, BLOCK_ROWS * K))


def unpack_float_blocks(data: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The engine's float layout -> [rows, cols] in the stored dtype."""
    data = np.asarray(data)
    B = -(-rows // BLOCK_ROWS)
    if data.shape != (B, BLOCK_ROWS * cols):
        raise ValueError(f"float matrix [{rows}, {cols}]: packed shape {data.shape}, expected "
                         f"{(B, BLOCK_ROWS * cols)}")
    w = data.reshape(B, cols, BLOCK_ROWS).transpose(0, 2, 1).reshape(B * BLOCK_ROWS, cols)
    return np.ascontiguousarray(w[:rows])


# An engine element type's NumPy dtype: NumPy has no bfloat16, so its bits travel as uint16
# (as Paddle's do).
_NUMPY_ELEMENTS = {"float32": np.float32, "float16": np.float16, "int8": np.int8,
                   "bfloat16": np.uint16, "int32": np.int32}


def numpy_dtype(element: str) -> np.dtype:
    return np.dtype(_NUMPY_ELEMENTS[element])


def bfloat16_bits(w: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), rounded to nearest even; a NaN stays a (quiet) NaN."""
    bits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    rounded = ((bits.astype(np.uint64) + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(w)
    rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
    return rounded


def bfloat16_values(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (uint16) -> float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def pack_pair_blocks(w: np.ndarray) -> np.ndarray:
    """float [N, K] -> bfloat16's layout (uint16 bits), [ceil(N/16), 16 * Kp]."""
    N, K = w.shape
    B, Kp = -(-N // BLOCK_ROWS), K + K % 2
    padded = np.zeros((B * BLOCK_ROWS, Kp), dtype=np.uint16)
    padded[:N, :K] = bfloat16_bits(w)
    blocks = padded.reshape(B, BLOCK_ROWS, Kp // 2, 2).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(blocks.reshape(B, BLOCK_ROWS * Kp))


def unpack_pair_blocks(data: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """bfloat16's layout -> float32 [rows, cols]."""
    data = np.asarray(data)
    B, Kp = -(-rows // BLOCK_ROWS), cols + cols % 2
    if data.shape != (B, BLOCK_ROWS * Kp):
        raise ValueError(f"bfloat16 matrix [{rows}, {cols}]: packed shape {data.shape}, expected "
                         f"{(B, BLOCK_ROWS * Kp)}")
    w = data.reshape(B, Kp // 2, BLOCK_ROWS, 2).transpose(0, 2, 1, 3).reshape(B * BLOCK_ROWS, Kp)
    return bfloat16_values(np.ascontiguousarray(w[:rows, :cols]))


def _pack_int8(w: np.ndarray) -> list[np.ndarray]:
    q, scale = quantize_int8_rows(w)
    return [pack_int8_blocks(q), np.ascontiguousarray(scale)]


# format name -> pack: float32 [N, K] -> the arrays the engine takes ([data] or [data, scales]).
PACKERS = {
    "float32": lambda w: [pack_float_blocks(w, np.float32)],
    "float16": lambda w: [pack_float_blocks(w, np.float16)],
    "int8": _pack_int8,
    "int4": lambda w: _int4().pack_engine(_int4().quantize_rtn(w)),
    "bfloat16": lambda w: [pack_pair_blocks(w)],
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


def normalize_dtype(dtype: str, what: str = "dtype") -> str:
    """A format's name from its name or alias; ValueError naming `what` and listing the
    formats otherwise."""
    for r in weight_formats():
        if isinstance(dtype, str) and dtype in (r["name"], r["alias"]) and dtype:
            return r["name"]
    raise ValueError(f"{what} {dtype!r} is not supported; expected one of {', '.join(format_names())}")


def pack_matrix(w: np.ndarray, fmt: str) -> list[np.ndarray]:
    """The arrays the engine takes for one [N, K] matrix: [data] or [data, scales]."""
    return PACKERS[normalize_dtype(fmt)](w)


def unpack_matrix(data: np.ndarray, scales: np.ndarray | None, shape: tuple,
                  columns: np.ndarray | None = None) -> np.ndarray:
    """float32 values of a packed matrix [rows, cols] = `shape` (what the kernels compute
    with), from its data and, for int8 and int4, its scales (and an act-order int4
    matrix's column order)."""
    if scales is not None and scales.dtype == np.float16:
        return _int4().unpack_engine(data, scales, *shape, columns).dequantize()
    if scales is not None:
        return unpack_int8_blocks(data, *shape).astype(np.float32) * scales[:, None]
    if data.dtype == np.uint16:
        return unpack_pair_blocks(data, *shape)
    return unpack_float_blocks(data, *shape).astype(np.float32)
