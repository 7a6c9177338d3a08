"""CodeGen: GPT-J's architecture with one fused `qkv_proj`, laid out in 4 blocks
(mp_num = 4) of [q | v | k] rows each; the engine wants all q, all k, all v."""
from __future__ import annotations

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.models import gptj
from fastergpt.models.common import stack_rows

MODEL_TYPES = ("codegen",)
IGNORED = gptj.IGNORED + ("causal_mask",)
TOKEN_EMBEDDING = gptj.TOKEN_EMBEDDING
LM_HEAD = gptj.LM_HEAD  # the untied LM head's weight (fastergpt quantize --lm_head writes it)
MP_NUM = 4  # transformers' CodeGenAttention.mp_num


def config_from_hf(raw: dict) -> GPTConfig:
    c = gptj.config_from_hf(dict(raw, model_type="codegen"))
    if c.n_embd % MP_NUM:
        raise ValueError(f"codegen: n_embd ({c.n_embd}) must be a multiple of {MP_NUM}")
    return c


from_hf_tensors = gptj.from_hf_tensors


def _attention_shapes(c: GPTConfig, p: str) -> dict:
    return {p + "attn.qkv_proj.weight": (3 * c.n_embd, c.n_embd)}


def _qkv(c: GPTConfig, s: dict, p: str) -> np.ndarray:
    w = np.asarray(s[p + "attn.qkv_proj.weight"], dtype=np.float32)
    blocks = w.reshape(MP_NUM, 3, c.n_embd // MP_NUM, c.n_embd)  # per block: q, v, k
    q, v, k = (blocks[:, j].reshape(c.n_embd, c.n_embd) for j in range(3))
    return stack_rows(q, k, v)


def expected_shapes(c: GPTConfig) -> dict:
    return gptj.expected_shapes(c, attention=_attention_shapes)


def engine_tensors(c: GPTConfig, s: dict) -> dict:
    return gptj.engine_tensors(c, s, qkv=_qkv)
