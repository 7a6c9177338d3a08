"""GPT-2 (model_type "gpt2"; also what the PaddleNLP GPT loader produces): where
each engine tensor comes from in an HF-named GPT-2 state dict.

HF/Paddle store GPT-2's linear weights as [in, out] (Conv1D); the engine as [out, in].
"""
from __future__ import annotations

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.models.common import f32

MODEL_TYPES = ("gpt2",)
IGNORED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers some HF versions save
TOKEN_EMBEDDING = "transformer.wte.weight"
LM_HEAD = "lm_head.weight"  # the untied LM head's weight (fastergpt quantize --lm_head writes it)

# engine key -> (state-dict name, transpose); tensors outside the layers.
GLOBAL_SOURCES = {
    "token_embedding": ("transformer.wte.weight", False),
    "position_embedding": ("transformer.wpe.weight", False),
    "final_ln.gamma": ("transformer.ln_f.weight", False),
    "final_ln.beta": ("transformer.ln_f.bias", False),
    "lm_head.weight": ("lm_head.weight", False),
}
# engine key -> (name under "transformer.h.<layer>.", transpose); one block.
LAYER_SOURCES = {
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


def source_of(key: str, layer: int) -> tuple[str, bool]:
    """(state-dict name, transpose) of the engine tensor `key` of `layer` (-1: global)."""
    if layer < 0:
        return GLOBAL_SOURCES[key]
    name, transpose = LAYER_SOURCES[key]
    return f"transformer.h.{layer}.{name}", transpose


def config_from_hf(raw: dict) -> GPTConfig:
    return GPTConfig.from_dict(raw)


def from_hf_tensors(tensors: dict) -> dict:
    """HF files of GPT2LMHeadModel hold `transformer.`-prefixed names; GPT2Model files don't."""
    out = {}
    for name, value in tensors.items():
        if not (name.startswith("transformer.") or name.startswith("lm_head.")):
            name = "transformer." + name
        out[name] = value
    return out


def expected_shapes(c: GPTConfig) -> dict:
    D, F, V, P = c.n_embd, c.inner_size, c.vocab_size, c.n_positions
    shapes = {"transformer.wte.weight": (V, D), "transformer.wpe.weight": (P, D),
              "transformer.ln_f.weight": (D,), "transformer.ln_f.bias": (D,)}
    for i in range(c.n_layer):
        p = f"transformer.h.{i}."
        shapes.update({
            p + "ln_1.weight": (D,), p + "ln_1.bias": (D,),
            p + "attn.c_attn.weight": (D, 3 * D), p + "attn.c_attn.bias": (3 * D,),
            p + "attn.c_proj.weight": (D, D), p + "attn.c_proj.bias": (D,),
            p + "ln_2.weight": (D,), p + "ln_2.bias": (D,),
            p + "mlp.c_fc.weight": (D, F), p + "mlp.c_fc.bias": (F,),
            p + "mlp.c_proj.weight": (F, D), p + "mlp.c_proj.bias": (D,),
        })
    if not c.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, D)
    return shapes


def engine_tensors(config: GPTConfig, state: dict) -> dict:
    out = {}

    def take(engine_name, src, transpose):
        if src not in state:
            raise ValueError(f"weights: tensor {src!r} (for engine weight {engine_name}) is missing")
        arr = np.asarray(state[src], dtype=np.float32)
        out[engine_name] = f32(arr.T if transpose else arr)

    for key, (src, transpose) in GLOBAL_SOURCES.items():
        if key != "lm_head.weight" or not config.tie_word_embeddings:
            take(key, src, transpose)
    for i in range(config.n_layer):
        for key in LAYER_SOURCES:
            take(f"layers.{i}.{key}", *source_of(key, i))
    return out
