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
from fastergpt.quantize import normalize_dtype, pack_matrix, unpack_matrix


class WeightEntry(NamedTuple):
    name: str     # engine name, e.g. "layers.3.qkv.weight"
    key: str      # its name within the layer, e.g. "qkv.weight"
    layer: int    # -1 outside the layers
    shape: tuple
    dtype: str    # element type: "float32", "float16", "int8"
    matrix: bool  # stored in the weight format (else float32)


def weight_spec(config: GPTConfig, dtype: str = "float32") -> list[WeightEntry]:
    """The engine's tensors for this config and weight format, in order."""
    from fastergpt.ops import engine_module

    spec = engine_module().weight_spec(config.architecture_string(), normalize_dtype(dtype))
    return [WeightEntry(e["name"], e["key"], e["layer"], tuple(e["shape"]), e["dtype"], e["matrix"])
            for e in spec]


def _is_scale(name: str) -> bool:
    return name.endswith(".scale")


def pack_weights(config: GPTConfig, state: dict, dtype: str = "float32") -> list[tuple[str, np.ndarray]]:
    """[(engine name, contiguous array)] in engine order from a state dict with the
    family's names (config.model_type), matrices in the weight format `dtype` (each
    followed by its scales where the format has them, as the spec orders them);
    names a missing or mis-shaped tensor in a ValueError."""
    fmt = normalize_dtype(dtype)
    try:
        tensors = family(config.model_type).engine_tensors(config, state)
    except KeyError as e:
        raise ValueError(f"weights: tensor {e} is missing") from None
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
        if tuple(arr.shape) != entry.shape:
            raise ValueError(f"weights: engine weight {entry.name} has shape {tuple(arr.shape)}, "
                             f"expected {entry.shape}")
        if entry.matrix:
            data, *scales = pack_matrix(arr, fmt)
            if data.dtype.kind == "f" and not np.isfinite(data).all():
                raise ValueError(f"weights: engine weight {entry.name} does not fit {fmt} (largest "
                                 f"magnitude {np.abs(arr).max():.3g} overflows)")
            packed.append((entry.name, data))
            packed.extend(("", s) for s in scales)  # named from the spec below
        else:
            packed.append((entry.name, np.ascontiguousarray(arr)))
    if len(spec) != len(packed):
        raise ValueError(f"weights: packed {len(packed)} tensors, the engine expects {len(spec)}")
    return [(e.name, array) for e, (_, array) in zip(spec, packed)]


def unpack_weights(packed: list, config: GPTConfig) -> dict:
    """HF-named float32 GPT-2 state dict from packed engine weights (any format), for
    the reference model (GPT-2 only)."""
    if config.model_type != "gpt2":
        raise ValueError(f"the reference model runs GPT-2 only, not {config.model_type}")
    fam = family("gpt2")
    state = {}
    for i, (name, array) in enumerate(packed):
        if _is_scale(name):
            continue
        if array.ndim == 2:  # a matrix; its scales, if any, come right after it
            nxt = packed[i + 1] if i + 1 < len(packed) else ("", None)
            array = unpack_matrix(array, nxt[1] if _is_scale(nxt[0]) else None)
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
