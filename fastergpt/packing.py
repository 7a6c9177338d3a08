"""Packs an HF-named state dict into the engine's weights, and back.

The engine's weight list (names, keys, shapes, order) is defined once in C++
(the decoder, csrc/core/models/decoder.cc) and read here through the `_engine`
module; the family's module (fastergpt/models/<family>.py) builds each engine
tensor from the checkpoint's. Packing happens once, at load or export; the operator never
repacks.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.models import family
from fastergpt import int4
from fastergpt.quantize import bfloat16_values, normalize_dtype, pack_matrix, unpack_matrix


class WeightEntry(NamedTuple):
    name: str     # engine name, e.g. "layers.3.qkv.weight"
    key: str      # its name within the layer, e.g. "qkv.weight"
    layer: int    # -1 outside the layers
    shape: tuple
    dtype: str    # element type: "float32", "float16", "int8", "bfloat16" (see numpy_dtype)
    matrix: bool  # stored in the weight format (else float32)
    matrix_shape: tuple  # a matrix's [rows, cols] (shape is its storage's); () otherwise
    format: str   # a matrix's weight format (the vocabulary matrices may differ); "" otherwise


def weight_spec(config: GPTConfig, dtype: str = "float32") -> list[WeightEntry]:
    """The engine's tensors for this config and weight format, in order."""
    from fastergpt.ops import engine_module

    spec = engine_module().weight_spec(config.architecture_string(), normalize_dtype(dtype))
    return [WeightEntry(e["name"], e["key"], e["layer"], tuple(e["shape"]), e["dtype"], e["matrix"],
                        tuple(e["matrix_shape"]), e["format"]) for e in spec]


def _is_scale(name: str) -> bool:
    return name.endswith(".scale")


def pack_weights(config: GPTConfig, state: dict, dtype: str = "float32") -> list[tuple[str, np.ndarray]]:
    """[(engine name, contiguous array)] in engine order from a state dict with the
    family's names (config.model_type), matrices in the weight format `dtype` (each
    followed by its scales where the format has them, as the spec orders them);
    names a missing or mis-shaped tensor in a ValueError."""
    fmt = normalize_dtype(dtype)
    tensors, quantized = engine_tensors(config, state, fmt)
    return pack_engine_tensors(config, tensors, fmt, quantized)


def engine_tensors(config: GPTConfig, state: dict, fmt: str) -> tuple[dict, dict]:
    """(engine name -> float32 array, engine name -> QuantizedMatrix kept in 4 bits) from
    a state dict with the family's names (see _engine_tensors)."""
    try:
        return _engine_tensors(config, state, fmt)
    except KeyError as e:
        raise ValueError(f"weights: tensor {e} is missing") from None


def pack_engine_tensors(config: GPTConfig, tensors: dict, fmt: str,
                        quantized: dict = None) -> list[tuple[str, np.ndarray]]:
    """pack_weights' second half: engine-named float32 tensors (and 4-bit matrices kept
    as a checkpoint had them) into the engine's packed list for `config`."""
    quantized = quantized or {}
    spec = weight_spec(config, fmt)
    packed = []
    for entry in spec:
        if _is_scale(entry.name):
            continue  # produced with its matrix, right before it
        if entry.name not in tensors:
            raise ValueError(f"weights: engine weight {entry.name} has no source tensor")
        arr = tensors[entry.name]
        if not np.isfinite(arr).all():
            raise ValueError(f"weights: engine weight {entry.name} holds NaN or Inf values")
        want = entry.matrix_shape if entry.matrix else entry.shape
        if tuple(arr.shape) != want:
            raise ValueError(f"weights: engine weight {entry.name} has shape {tuple(arr.shape)}, "
                             f"expected {want}")
        if entry.matrix:
            if entry.name in quantized and entry.format == "int4":  # kept as the checkpoint has it
                data, *scales = int4.pack_engine(quantized[entry.name], entry.name)
            else:
                data, *scales = pack_matrix(arr, entry.format)
            values = bfloat16_values(data) if data.dtype == np.uint16 else data
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise ValueError(f"weights: engine weight {entry.name} does not fit {entry.format} (largest "
                                 f"magnitude {np.abs(arr).max():.3g} overflows)")
            packed.append((entry.name, data))
            packed.extend(("", s) for s in scales)  # named from the spec below
        else:
            packed.append((entry.name, np.ascontiguousarray(arr)))
    if len(spec) != len(packed):
        raise ValueError(f"weights: packed {len(packed)} tensors, the engine expects {len(spec)}")
    return [(e.name, array) for e, (_, array) in zip(spec, packed)]


def _engine_tensors(config: GPTConfig, state: dict, fmt: str) -> tuple[dict, dict]:
    """(engine name -> float32 array, engine name -> QuantizedMatrix kept in 4 bits).

    A checkpoint's 4-bit matrices (int4.QuantizedMatrix values, from a GPTQ checkpoint)
    go through the family's mapping as their float values. For the int4 format they are
    kept as they are: the same mapping runs over their 4-bit values, scales and zero
    points (spread to one per column), which the family only moves, stacks or splits,
    so each engine matrix's parts come out where its values do. Other formats take the
    float values (dequantized exactly)."""
    fam = family(config.model_type)
    quantized = {k: v for k, v in state.items() if isinstance(v, int4.QuantizedMatrix)}

    def oriented(m, a):
        return a.T if m.transposed else a

    floats = {k: oriented(v, v.dequantize()) if k in quantized else v for k, v in state.items()}
    tensors = fam.engine_tensors(config, floats)
    if not quantized or fmt != "int4":
        return tensors, {}
    group_sizes = {m.group_size for m in quantized.values()}
    if len(group_sizes) > 1:
        raise ValueError(f"weights: the checkpoint's 4-bit matrices use group sizes "
                         f"{sorted(group_sizes)}; the int4 format needs one")
    G = group_sizes.pop()

    def spread(part):  # NaN marks tensors that are not 4-bit in the checkpoint
        out = {}
        for k, v in state.items():
            if k in quantized:
                g = v.column_groups()
                a = {"q": v.q.astype(np.float32), "s": v.scales[:, g],
                     "z": v.zeros[:, g].astype(np.float32)}[part]
                out[k] = oriented(v, a)
            else:
                out[k] = np.full(np.shape(v), np.nan, dtype=np.float32)
        return fam.engine_tensors(config, out)

    q, s, z = spread("q"), spread("s"), spread("z")
    kept = {}
    for name, values in q.items():
        from_4bit = ~np.isnan(values)
        if values.ndim != 2 or not from_4bit.any():
            continue
        if not from_4bit.all():
            raise ValueError(f"weights: engine weight {name} joins 4-bit and float checkpoint "
                             "tensors; load it with --dtype float32, float16 or int8")
        cols = values.shape[1]
        first = np.arange(0, cols, G)
        m = int4.QuantizedMatrix(values.astype(np.uint8), np.ascontiguousarray(s[name][:, first]),
                                 z[name][:, first].astype(np.int32), G)
        if any(v.g_idx is not None and not np.array_equal(v.column_groups(), np.arange(v.cols) // G)
               for v in quantized.values()):
            raise ValueError(f"weights: engine weight {name}: the checkpoint groups columns out "
                             "of order (act-order, desc_act with g_idx); the int4 kernels need "
                             "contiguous groups: load it with --dtype float32, float16 or int8")
        if not np.array_equal(m.dequantize(), tensors[name]):
            raise ValueError(f"weights: engine weight {name} is not a plain rearrangement of the "
                             f"checkpoint's 4-bit tensors ({config.model_type} changes its values); "
                             "load it with --dtype float32, float16 or int8")
        kept[name] = m
    return tensors, kept


def unpack_weights(packed: list, config: GPTConfig) -> dict:
    """HF-named float32 GPT-2 state dict from packed engine weights (any format), for
    the reference model (GPT-2 only)."""
    if config.model_type != "gpt2":
        raise ValueError(f"the reference model runs GPT-2 only, not {config.model_type}")
    fam = family("gpt2")
    shapes = {e.name: e.matrix_shape for e in weight_spec(config) if e.matrix}
    state = {}
    for i, (name, array) in enumerate(packed):
        if _is_scale(name):
            continue
        if name in shapes:  # a matrix; its scales, if any, come right after it
            nxt = packed[i + 1] if i + 1 < len(packed) else ("", None)
            array = unpack_matrix(array, nxt[1] if _is_scale(nxt[0]) else None, shapes[name])
        key, layer = _split(name)
        src, transpose = fam.source_of(key, layer)
        state[src] = np.ascontiguousarray(array.T if transpose else array, dtype=np.float32)
    return state


def _split(name: str) -> tuple[str, int]:
    """(key, layer) of an engine name: "layers.3.qkv.weight" -> ("qkv.weight", 3)."""
    if name.startswith("layers."):
        _, layer, key = name.split(".", 2)
        return key, int(layer)
    return name, -1
