"""Model families on the Python side: one file per family maps a checkpoint's
config.json onto the engine's architecture fields (GPTConfig) and its tensor
names onto the engine's weight keys (with any split, fuse or permute). The
engine's tensor list (names, shapes, order) comes from its one decoder
(csrc/core/models/decoder.cc) through the pybind11 module.

A family module provides:
- MODEL_TYPES: the config.json `model_type` values it reads;
- config_from_hf(raw) -> GPTConfig;
- expected_shapes(config) -> {checkpoint name: shape}, every tensor it needs;
- IGNORED: name suffixes of non-weight buffers some files hold;
- TOKEN_EMBEDDING, LM_HEAD: the names of the token table and of an untied LM head;
- engine_tensors(config, state) -> {engine name: float32 array}.
"""
from __future__ import annotations

from fastergpt.models import codegen, gpt2, gpt_neox, gptj, llama, opt

FAMILIES = {t: m for m in (gpt2, opt, gptj, codegen, gpt_neox, llama) for t in m.MODEL_TYPES}


def family(model_type: str = "gpt2"):
    """The family module of a `model_type`; a ValueError names the supported ones."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise ValueError(f"model_type {model_type!r} is not supported; supported: "
                         f"{', '.join(sorted(FAMILIES))}") from None
