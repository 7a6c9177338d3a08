"""4-bit weights: the quantized matrix both quantizers produce, round-to-nearest,
and the engine's packed int4 layout.

A 4-bit matrix is W[n, k] ~= scale[n, g] * (q[n, k] - zero[n, g]) with q in 0..15 and
g = k // group_size: the convention of GPTQ checkpoints (AutoGPTQ, transformers), so a
checkpoint made elsewhere and one we write hold the same numbers. Scales are float16
values (what the checkpoints store); zero points are integers. The last group of a row
may be shorter than group_size (any K works).

The engine's layout (what csrc/cpu/simd_int4.inc reads; csrc/core/matrix.h declares it):
- rows in blocks of 16 (N padded with zero rows), K padded to a multiple of 8 (zeros);
- data, int8 [ceil(N/16), 8 * Kp]: per block, per step of 8 columns, 64 bytes; byte
  4*r + c holds q[16b + r, 8s + c] in its low nibble and q[16b + r, 8s + 4 + c] in its
  high one. One 64-byte load is 16 rows x 8 weights, so one vpdpbusd adds 4 products
  into each of 16 outputs: no horizontal sums, for one token or many;
- "<matrix>.scale", float16 [ceil(N/16), groups * 32]: per block and group, the 16 rows'
  scales, then their 16 zero points. The engine reads the group count from this shape
  and the group size as the power of two that gives it (32, 64, 128, ..., or one group).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BITS = 4
MAXQ = (1 << BITS) - 1
BLOCK_ROWS = 16
GROUP_SIZES = (32, 64, 128)  # what the CLIs offer; any power of two >= 8 works, or -1 (one group)
DEFAULT_GROUP_SIZE = 128


@dataclass
class QuantizedMatrix:
    """A [N, K] matrix in 4 bits (engine orientation: rows are outputs).

    `transposed` marks one that stands for a checkpoint tensor stored [K, N] (GPT-2's
    Conv1D): `shape` is then the checkpoint's, so the family's tables check it as they
    check a float tensor."""
    q: np.ndarray        # uint8 [N, K], 0..15
    scales: np.ndarray   # float32 [N, groups], float16-representable
    zeros: np.ndarray    # int32 [N, groups]
    group_size: int      # columns per group (the last one may be shorter)
    g_idx: np.ndarray | None = None  # int32 [K]: group of each column, when not k // group_size
    transposed: bool = False

    @property
    def rows(self) -> int:
        return self.q.shape[0]

    @property
    def cols(self) -> int:
        return self.q.shape[1]

    @property
    def shape(self) -> tuple:
        return (self.cols, self.rows) if self.transposed else (self.rows, self.cols)

    @property
    def groups(self) -> int:
        return self.scales.shape[1]

    def column_groups(self) -> np.ndarray:
        """The group of every column."""
        if self.g_idx is not None:
            return np.asarray(self.g_idx, dtype=np.int64)
        return np.arange(self.cols) // self.group_size

    def dequantize(self) -> np.ndarray:
        """float32 [N, K] (engine orientation): scale * (q - zero), exactly as the kernels."""
        g = self.column_groups()
        s, z = self.scales[:, g], self.zeros[:, g].astype(np.float32)
        return (s * (self.q.astype(np.float32) - z)).astype(np.float32)

    def check(self, name: str = "matrix") -> "QuantizedMatrix":
        """Raises ValueError naming `name` when the parts do not fit together."""
        N, K = self.q.shape if self.q.ndim == 2 else (None, None)
        if N is None or self.q.dtype != np.uint8 or (self.q.size and self.q.max() > MAXQ):
            raise ValueError(f"{name}: 4-bit values must be a uint8 [N, K] array of 0..{MAXQ}")
        if self.group_size != K and (self.group_size < 8 or self.group_size & (self.group_size - 1)):
            raise ValueError(f"{name}: group size {self.group_size} is not supported "
                             "(a power of two >= 8, or one group per row)")
        groups = -(-K // self.group_size)
        if self.g_idx is not None:
            groups = int(np.max(self.g_idx)) + 1 if K else 0
        for part, arr in (("scales", self.scales), ("zeros", self.zeros)):
            if arr.shape != (N, groups):
                raise ValueError(f"{name}: {part} has shape {arr.shape}, expected {(N, groups)} "
                                 f"for [{N}, {K}] weights in groups of {self.group_size}")
        if not np.isfinite(self.scales).all():
            raise ValueError(f"{name}: scales hold NaN or Inf values")
        if self.zeros.size and (self.zeros.min() < 0 or self.zeros.max() > MAXQ + 1):
            raise ValueError(f"{name}: zero points must be in 0..{MAXQ + 1}")
        return self


def to_float16_values(x: np.ndarray) -> np.ndarray:
    """float32 holding float16-representable values (what a checkpoint stores)."""
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


# The clipping search (find_params(..., clip_search=True)): the range [min, max] of a
# group is shrunk in steps of 1/CLIP_GRID down to 1 - CLIP_MAX_SHRINK of itself, and each
# row keeps the scale and zero point whose rounding error, summed as |error|^CLIP_NORM,
# is least. These are the values GPTQ's authors' quantizer uses: a norm above 2 weighs
# the few large errors that clipping causes more than a plain squared error would.
CLIP_GRID = 100
CLIP_MAX_SHRINK = 0.8
CLIP_NORM = 2.4
# Each quantizer's default for it. On for GPTQ: on the default model's held-out text it
# took GPTQ from 1.0033x float32's perplexity to 1.0008x. Off for round-to-nearest, the
# plain baseline, which it did not improve there (75.671 -> 75.672).
CLIP_SEARCH = {"gptq": True, "rtn": False}


def _range_params(xmin: np.ndarray, xmax: np.ndarray, sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point that map [xmin, xmax] (per row) onto 0..15; see find_params."""
    xmin = np.minimum(xmin, 0.0)
    xmax = np.maximum(xmax, 0.0)
    if sym:
        xmax = np.maximum(-xmin, xmax)
        xmin = np.where(xmin < 0, -xmax, xmin)
    empty = (xmin == 0) & (xmax == 0)
    xmin, xmax = np.where(empty, -1.0, xmin), np.where(empty, 1.0, xmax)
    scale = (xmax - xmin) / MAXQ
    if sym:
        zero = np.full(xmin.shape[0], (MAXQ + 1) // 2, dtype=np.int32)
    else:
        zero = np.rint(-xmin / scale).astype(np.int32)
        low = zero < 1  # all of the group is (nearly) >= 0
        scale = np.where(low, xmax / (MAXQ - 1), scale)
        zero = np.where(low, 1, zero).astype(np.int32)
    scale = to_float16_values(scale)
    scale = np.where(scale > 0, scale, np.float32(2.0 ** -14))  # a float16 underflow
    return scale.astype(np.float32), zero


def _rounding_error(w: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """sum over each row of |dequantized - w|^CLIP_NORM."""
    q = quantize_values(w, scale, zero).astype(np.float32)
    return (np.abs(scale[:, None] * (q - zero[:, None]) - w) ** CLIP_NORM).sum(axis=1)


def find_params(w: np.ndarray, sym: bool = False,
                clip_search: bool = CLIP_SEARCH["rtn"]) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point of each row of `w` ([N, g], one group), GPTQ's convention:
    asymmetric over [min(w, 0), max(w, 0)] in 15 steps, or symmetric over [-amax, amax]
    with zero point 8. Scales are rounded to float16 first, so q is computed with the
    scale a checkpoint stores. An asymmetric zero point is kept >= 1: GPTQ's v1 files
    store zero - 1 in 4 bits, so 0 would not survive (the scale then stretches to fit).
    clip_search: each row's range is shrunk to whatever fraction (1 down to 0.21) rounds
    the row with the least error (CLIP_NORM above): clipping a few large weights pays
    where the finer grid it gives the others gains more than the clipping costs."""
    w = np.asarray(w, dtype=np.float32)
    xmin, xmax = w.min(axis=1), w.max(axis=1)
    scale, zero = _range_params(xmin, xmax, sym)
    if not clip_search:
        return scale, zero
    best = _rounding_error(w, scale, zero)
    for step in range(1, int(CLIP_MAX_SHRINK * CLIP_GRID)):
        shrink = np.float32(1 - step / CLIP_GRID)
        s, z = _range_params(xmin * shrink, xmax * shrink, sym)
        err = _rounding_error(w, s, z)
        better = err < best
        best = np.where(better, err, best)
        scale, zero = np.where(better, s, scale), np.where(better, z, zero)
    return scale, zero


def quantize_values(w: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """q = clamp(round(w / scale) + zero, 0, 15) per row ([N, g] with [N] parameters)."""
    q = np.rint(np.asarray(w, dtype=np.float32) / scale[:, None]) + zero[:, None]
    return np.clip(q, 0, MAXQ).astype(np.uint8)


def quantize_rtn(w: np.ndarray, group_size: int = DEFAULT_GROUP_SIZE, sym: bool = False,
                 clip_search: bool = CLIP_SEARCH["rtn"]) -> QuantizedMatrix:
    """Round-to-nearest 4-bit quantization of a float [N, K] matrix, group-wise along K
    (group_size -1: one group per row); clip_search as in find_params."""
    w = np.asarray(w, dtype=np.float32)
    N, K = w.shape
    G = K if group_size == -1 else int(group_size)
    groups = max(1, -(-K // G))
    q = np.empty((N, K), dtype=np.uint8)
    scales = np.empty((N, groups), dtype=np.float32)
    zeros = np.empty((N, groups), dtype=np.int32)
    for g in range(groups):
        cols = slice(g * G, min(K, (g + 1) * G))
        scales[:, g], zeros[:, g] = find_params(w[:, cols], sym=sym, clip_search=clip_search)
        q[:, cols] = quantize_values(w[:, cols], scales[:, g], zeros[:, g])
    return QuantizedMatrix(q, scales, zeros, max(G, 1)).check()


def engine_group_size(K: int, groups: int) -> int:
    """The group size the engine derives from K and the group count (csrc/core/model.cc)."""
    g = 8
    while g * groups < K:
        g *= 2
    return g


def stored_column_order(m: QuantizedMatrix, name: str = "matrix") -> np.ndarray | None:
    """The order the engine stores an act-order matrix's columns in: group after group, each
    group's columns in their own order (csrc/core/matrix.h, "<matrix>.columns"); None for
    the plain grouping k // group_size. A ValueError names a grouping that no such order
    makes contiguous (every group but the last must hold group_size columns)."""
    g = m.column_groups()
    plain = np.arange(m.cols) // m.group_size
    if np.array_equal(g, plain):
        return None
    order = np.argsort(g, kind="stable")
    if not np.array_equal(g[order], plain):
        sizes = np.bincount(g, minlength=m.groups)
        raise ValueError(f"{name}: its act-order groups hold {sizes.min()}..{sizes.max()} "
                         f"columns; the int4 kernels need {m.group_size} in every group but "
                         "the last: load it with --dtype float32, float16 or int8 "
                         "(dequantized) instead")
    return order.astype(np.int32)


def pack_engine(m: QuantizedMatrix, name: str = "matrix",
                column_order: bool = False) -> list[np.ndarray]:
    """[data int8 [B, 8*Kp], params float16 [B, groups*32]]: the engine's int4 arrays, and
    (column_order) the int32 [K] order its columns are stored in, which an act-order
    matrix needs (stored_column_order; the identity for a plain one)."""
    m.check(name)
    order = stored_column_order(m, name)
    if order is not None and not column_order:
        raise ValueError(f"{name}: its columns are grouped out of order (act-order, g_idx), "
                         "and the model's config has act_order false: set it (load_checkpoint "
                         "does for an act-order checkpoint), or load it with --dtype float32, "
                         "float16 or int8 (dequantized)")
    if order is not None:  # now group after group: the plain layout, in the stored order
        m = QuantizedMatrix(m.q[:, order], m.scales, m.zeros, m.group_size)
    N, K = m.q.shape
    groups = m.groups
    if engine_group_size(K, groups) != m.group_size and groups > 1:
        raise ValueError(f"{name}: group size {m.group_size} with K={K} is not one the engine "
                         "reads back (a power of two >= 8)")
    B, Kp = -(-N // BLOCK_ROWS), -(-K // 8) * 8
    q = np.zeros((B * BLOCK_ROWS, Kp), dtype=np.uint8)
    q[:N, :K] = m.q
    # [B, 16 rows, S steps, 2 halves, 4] -> [B, S, 16, 4] low and high nibbles
    q = q.reshape(B, BLOCK_ROWS, Kp // 8, 2, 4).transpose(0, 2, 3, 1, 4)
    data = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(B, 8 * Kp)
    params = np.zeros((B * BLOCK_ROWS, groups, 2), dtype=np.float16)
    params[:N, :, 0] = m.scales
    params[:N, :, 1] = m.zeros
    params = params.reshape(B, BLOCK_ROWS, groups, 2).transpose(0, 2, 3, 1).reshape(B, groups * 32)
    arrays = [np.ascontiguousarray(data.view(np.int8)), np.ascontiguousarray(params)]
    if column_order:
        arrays.append(np.arange(K, dtype=np.int32) if order is None else order)
    return arrays


def unpack_engine(data: np.ndarray, params: np.ndarray, rows: int, cols: int,
                  columns: np.ndarray | None = None) -> QuantizedMatrix:
    """The QuantizedMatrix behind the engine's int4 arrays (the inverse of pack_engine);
    `columns`, an act-order matrix's stored order, puts its columns back in place."""
    m = _unpack_stored(data, params, rows, cols)
    if columns is None or np.array_equal(columns, np.arange(cols)):
        return m
    columns = np.asarray(columns, dtype=np.int64)
    q = np.empty_like(m.q)
    q[:, columns] = m.q
    g_idx = np.empty(cols, dtype=np.int32)
    g_idx[columns] = m.column_groups()
    return QuantizedMatrix(q, m.scales, m.zeros, m.group_size, g_idx)


def _unpack_stored(data: np.ndarray, params: np.ndarray, rows: int, cols: int) -> QuantizedMatrix:
    """The engine's int4 arrays as stored (columns in their stored order)."""
    B, Kp = data.shape[0], data.shape[1] // 8
    groups = params.shape[1] // 32
    b = np.asarray(data).view(np.uint8).reshape(B, Kp // 8, BLOCK_ROWS, 4)
    q = np.stack([b & 0xF, b >> 4], axis=2)                  # [B, S, 2, 16, 4]
    q = q.transpose(0, 3, 1, 2, 4).reshape(B * BLOCK_ROWS, Kp)[:rows, :cols]
    p = np.asarray(params).reshape(B, groups, 2, BLOCK_ROWS).transpose(0, 3, 1, 2)
    p = p.reshape(B * BLOCK_ROWS, groups, 2)[:rows].astype(np.float32)
    G = engine_group_size(cols, groups) if groups > 1 else max(cols, 1)
    return QuantizedMatrix(np.ascontiguousarray(q), p[:, :, 0].copy(),
                           p[:, :, 1].astype(np.int32), G)
