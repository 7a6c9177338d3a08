"""GPT-2: where each engine tensor (csrc/core/models/gpt2.cc, by key) comes from in
an HF-named GPT-2 state dict, and whether it is transposed on the way.

HF/Paddle store linear weights as [in, out] (Conv1D); the engine as [out, in].
"""
from __future__ import annotations

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
