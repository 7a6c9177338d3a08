"""Packs a GPT-2 state dict (HF names, see fastergpt.reference) into the engine's weights.

The engine's weight list (names, shapes, order) is defined once in C++
(csrc/core/weights.cc) and read here through the `_engine` module; this file
only says where each engine tensor comes from. Linear weights are stored by
HF/Paddle as [in, out] and by the engine as [out, in], hence the transposes.
Packing happens once, at load or export; the operator never repacks.
"""
from __future__ import annotations

import re

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.quantize import normalize_dtype, pack_matrix, unpack_matrix

# engine name -> (state-dict name, transpose?); {i} is the layer index.
_GLOBAL_SOURCES = {
    "token_embedding": ("transformer.wte.weight", False),
    "position_embedding": ("transformer.wpe.weight", False),
    "final_ln.gamma": ("transformer.ln_f.weight", False),
    "final_ln.beta": ("transformer.ln_f.bias", False),
    "lm_head.weight": ("lm_head.weight", False),
}
_LAYER_SOURCES = {
    "ln1.gamma": ("ln_1.weight", False),
    "ln1.beta": ("ln_1.bias", False),
    "qkv.weight": ("attn.c_attn.weight", True),
    "qkv.bias": ("attn.c_attn.bias", False),
    "attn_out.weight": ("attn.c_proj.weight", True),
    "attn_out.bias": ("attn.c_proj.bias", False),
    "ln2.gamma": ("ln_2.weight", False),
    "ln2.beta": ("ln_2.bias", False),
    "fc.weight": ("mlp.c_fc.weight", True),
    "fc.bias": ("mlp.c_fc.bias", False),
    "proj.weight": ("mlp.c_proj.weight", True),
    "proj.bias": ("mlp.c_proj.bias", False),
}
_LAYER_NAME = re.compile(r"layers\.(\d+)\.(.+)")


def source_of(engine_name: str) -> tuple[str, bool]:
    """(state-dict name, transpose) of one engine tensor."""
    m = _LAYER_NAME.fullmatch(engine_name)
    if m:
        src, transpose = _LAYER_SOURCES[m.group(2)]
        return f"transformer.h.{m.group(1)}.{src}", transpose
    return _GLOBAL_SOURCES[engine_name]


def weight_spec(config: GPTConfig, dtype: str = "float32") -> list[tuple[str, tuple, str]]:
    """The engine's (name, shape, dtype) list for this config and weight format."""
    from fastergpt.ops import engine_module

    spec = engine_module().weight_spec(
        config.n_layer, config.n_head, config.n_embd, config.inner_size, config.vocab_size,
        config.n_positions, config.tie_word_embeddings, normalize_dtype(dtype))
    return [(name, tuple(shape), dt) for name, shape, dt in spec]


def pack_weights(config: GPTConfig, state: dict, dtype: str = "float32") -> list[tuple[str, np.ndarray]]:
    """[(engine name, contiguous array)] in engine order, matrices in the weight
    format `dtype` (with their row scales for int8); names a missing or
    mis-shaped tensor in a ValueError."""
    fmt = normalize_dtype(dtype)
    packed = []
    for name, shape, dt in weight_spec(config, fmt):
        if name.endswith(".scale"):
            continue  # produced with its matrix, right before it
        src, transpose = source_of(name)
        if src not in state:
            raise ValueError(f"weights: tensor {src!r} (for engine weight {name}) is missing")
        arr = np.asarray(state[src], dtype=np.float32)
        if transpose:
            arr = arr.T
        if tuple(arr.shape) != shape:
            want = shape[::-1] if transpose else shape
            raise ValueError(f"weights: tensor {src!r} has shape {tuple(np.shape(state[src]))}, "
                             f"expected {want}")
        if dt != "float32":  # a matrix stored in the weight format
            arrays = pack_matrix(arr, fmt)
            packed.append((name, arrays[0]))
            if len(arrays) > 1:
                packed.append((_scale_name(name), arrays[1]))
        else:
            packed.append((name, np.ascontiguousarray(arr)))
    return packed


def _scale_name(matrix: str) -> str:
    return (matrix[: -len(".weight")] if matrix.endswith(".weight") else matrix) + ".scale"


def unpack_weights(packed: list) -> dict:
    """HF-named float32 state dict from packed engine weights (any format)."""
    arrays = dict(packed)
    state = {}
    for name, array in packed:
        if name.endswith(".scale"):
            continue
        if array.dtype != np.float32:
            array = unpack_matrix(array, arrays.get(_scale_name(name)))
        src, transpose = source_of(name)
        state[src] = np.ascontiguousarray(array.T if transpose else array, dtype=np.float32)
    return state
