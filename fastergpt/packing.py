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
    dtype: str    # element type: "float32", "float16", "int8", "bfloat16", "int32" (numpy_dtype)
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


def scale_name(matrix: str) -> str:
    """"layers.0.qkv.weight" -> "layers.0.qkv.scale" (csrc/core/model.h scale_name)."""
    return matrix.removesuffix(".weight") + ".scale"


def columns_name(matrix: str) -> str:
    """"layers.0.qkv.weight" -> "layers.0.qkv.columns": an act-order matrix's column order
    (csrc/core/model.h columns_name)."""
    return matrix.removesuffix(".weight") + ".columns"


def _follows_matrix(name: str) -> bool:
    """A tensor the packer writes with its matrix: its scales, its column order."""
    return _is_scale(name) or name.endswith(".columns")


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
    ordered = {e.name for e in spec if e.name.endswith(".columns")}
    packed = []
    for entry in spec:
        if _follows_matrix(entry.name):
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
            column_order = columns_name(entry.name) in ordered
            if entry.name in quantized and entry.format == "int4":  # kept as the checkpoint has it
                data, *scales = int4.pack_engine(quantized[entry.name], entry.name, column_order)
            else:
                data, *scales = pack_matrix(arr, entry.format)
                if column_order:  # a float matrix quantized here: its columns in order
                    scales.append(np.arange(arr.shape[1], dtype=np.int32))
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
    if config.tie_word_embeddings and "token_embedding" in tensors:
        # A tied head whose table is kept in another format (ModelConfig::separate_lm_head:
        # an int4 vocabulary) is packed as a matrix of its own, from the same values.
        tensors.setdefault("lm_head.weight", tensors["token_embedding"])
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
                     "z": v.zeros[:, g].astype(np.float32),
                     "g": np.broadcast_to(g.astype(np.float32), v.q.shape)}[part]
                out[k] = oriented(v, a)
            else:
                out[k] = np.full(np.shape(v), np.nan, dtype=np.float32)
        return fam.engine_tensors(config, out)

    q, s, z, groups = spread("q"), spread("s"), spread("z"), spread("g")
    kept = {}
    for name, values in q.items():
        from_4bit = ~np.isnan(values)
        if values.ndim != 2 or not from_4bit.any():
            continue
        if not from_4bit.all():
            raise ValueError(f"weights: engine weight {name} joins 4-bit and float checkpoint "
                             "tensors; load it with --dtype float32, float16 or int8")
        # The group of each column; an act-order checkpoint's (g_idx) may be in any order,
        # but a stacked engine matrix (q|k|v, gate|up) takes one order for all its parts.
        g = groups[name]
        if not (g == g[:1]).all():
            raise ValueError(f"weights: engine weight {name} stacks checkpoint matrices whose "
                             "act-order column groups (g_idx) differ; the int4 kernels take one "
                             "column order per matrix: load it with --dtype float32, float16 "
                             "or int8")
        g = g[0].astype(np.int64)
        first = np.unique(g, return_index=True)[1]  # each group's first column
        plain = np.array_equal(g, np.arange(values.shape[1]) // G)
        m = int4.QuantizedMatrix(values.astype(np.uint8), np.ascontiguousarray(s[name][:, first]),
                                 z[name][:, first].astype(np.int32), G,
                                 None if plain else g.astype(np.int32))
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
    by_name = dict(packed)
    for name, array in packed:
        if _follows_matrix(name):
            continue
        if name in shapes:  # a matrix, with its scales and column order where it has them
            array = unpack_matrix(array, by_name.get(scale_name(name)), shapes[name],
                                  by_name.get(columns_name(name)))
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
