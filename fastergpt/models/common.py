"""Helpers the family files share: reading config keys, HF rope parameters, and
building engine tensors (fused q|k|v, gate|up) from checkpoint tensors."""
from __future__ import annotations

import numpy as np


class ArchitectureError(ValueError):
    """The checkpoint uses an option the engine does not implement; names it."""


def rope_fields(raw: dict, head_dim: int) -> dict:
    """GPTConfig rotary fields from transformers v4 (rope_theta, rope_scaling,
    partial_rotary_factor) or v5 (rope_parameters) keys."""
    params = dict(raw.get("rope_parameters") or {})
    scaling = dict(raw.get("rope_scaling") or {})
    params = {**scaling, **params}
    base = params.get("rope_theta", raw.get("rope_theta", raw.get("rotary_emb_base", 10000.0)))
    kind = params.get("rope_type", params.get("type", "default")) or "default"
    partial = params.get("partial_rotary_factor", raw.get("partial_rotary_factor",
                                                           raw.get("rotary_pct", 1.0)))
    out = {"positions": "rotary", "rotary_base": float(base),
           "rotary_dim": int(head_dim * float(partial))}
    if kind == "default":
        return out
    if kind == "linear":
        return dict(out, rope_scaling="linear", rope_factor=float(params["factor"]))
    if kind == "llama3":
        return dict(out, rope_scaling="llama3", rope_factor=float(params["factor"]),
                    rope_low_freq_factor=float(params["low_freq_factor"]),
                    rope_high_freq_factor=float(params["high_freq_factor"]),
                    rope_original_max_positions=int(params["original_max_position_embeddings"]))
    raise ArchitectureError(f"rope type {kind!r} is not supported (supported: default, linear, "
                            "llama3)")


def stack_rows(*parts: np.ndarray) -> np.ndarray:
    """Concatenate [out, in] weights (or [out] biases) along the output rows."""
    return np.ascontiguousarray(np.concatenate(parts, axis=0), dtype=np.float32)


def f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)
