"""GPT-NeoX (and Pythia): LayerNorm, partial rotary positions (halves), parallel
attention + MLP off two norms (`use_parallel_residual`, else sequential), GELU,
biases everywhere, an untied `embed_out` head. Its fused `query_key_value`
interleaves q, k and v per head ([H, 3, Dh] rows); the engine wants q | k | v."""
from __future__ import annotations

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.models.common import ArchitectureError, f32, rope_fields, stack_rows

MODEL_TYPES = ("gpt_neox",)
IGNORED = (".attention.bias", ".attention.masked_bias", "rotary_emb.inv_freq")
TOKEN_EMBEDDING = "gpt_neox.embed_in.weight"
LM_HEAD = "embed_out.weight"  # the untied LM head's weight (fastergpt quantize --lm_head writes it)


def config_from_hf(raw: dict) -> GPTConfig:
    D, H = int(raw["hidden_size"]), int(raw["num_attention_heads"])
    if not raw.get("attention_bias", True):
        raise ArchitectureError("gpt_neox with attention_bias=False is not supported")
    return GPTConfig(
        model_type="gpt_neox", vocab_size=int(raw["vocab_size"]), n_embd=D, n_head=H,
        n_layer=int(raw["num_hidden_layers"]), n_inner=int(raw["intermediate_size"]),
        n_positions=int(raw.get("max_position_embeddings", 2048)),
        layer_norm_epsilon=float(raw.get("layer_norm_eps", 1e-5)),
        activation_function=raw.get("hidden_act", "gelu"),
        residual="parallel_two_norms" if raw.get("use_parallel_residual", True) else "sequential",
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        bos_token_id=raw.get("bos_token_id"), eos_token_id=raw.get("eos_token_id"),
        pad_token_id=raw.get("pad_token_id"), **rope_fields(raw, D // H))


def from_hf_tensors(tensors: dict) -> dict:
    return tensors


def _p(i):
    return f"gpt_neox.layers.{i}."


def expected_shapes(c: GPTConfig) -> dict:
    D, F, V = c.n_embd, c.inner_size, c.vocab_size
    shapes = {"gpt_neox.embed_in.weight": (V, D), "gpt_neox.final_layer_norm.weight": (D,),
              "gpt_neox.final_layer_norm.bias": (D,)}
    for i in range(c.n_layer):
        p = _p(i)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            shapes.update({p + norm + ".weight": (D,), p + norm + ".bias": (D,)})
        shapes.update({
            p + "attention.query_key_value.weight": (3 * D, D),
            p + "attention.query_key_value.bias": (3 * D,),
            p + "attention.dense.weight": (D, D), p + "attention.dense.bias": (D,),
            p + "mlp.dense_h_to_4h.weight": (F, D), p + "mlp.dense_h_to_4h.bias": (F,),
            p + "mlp.dense_4h_to_h.weight": (D, F), p + "mlp.dense_4h_to_h.bias": (D,)})
    if not c.tie_word_embeddings:
        shapes["embed_out.weight"] = (V, D)
    return shapes


def _uninterleave(a: np.ndarray, H: int) -> np.ndarray:
    """[H * 3 * Dh, ...] rows (per head q, k, v) -> [3 * H * Dh, ...] (all q, all k, all v)."""
    a = np.asarray(a, dtype=np.float32)
    per = a.reshape(H, 3, -1, *a.shape[1:])
    return stack_rows(*(per[:, j].reshape(-1, *a.shape[1:]) for j in range(3)))


def engine_tensors(c: GPTConfig, s: dict) -> dict:
    out = {"token_embedding": f32(s["gpt_neox.embed_in.weight"]),
           "final_ln.gamma": f32(s["gpt_neox.final_layer_norm.weight"]),
           "final_ln.beta": f32(s["gpt_neox.final_layer_norm.bias"])}
    if not c.tie_word_embeddings:
        out["lm_head.weight"] = f32(s["embed_out.weight"])
    for i in range(c.n_layer):
        p, L = _p(i), f"layers.{i}."
        out.update({
            L + "ln1.gamma": f32(s[p + "input_layernorm.weight"]),
            L + "ln1.beta": f32(s[p + "input_layernorm.bias"]),
            L + "ln2.gamma": f32(s[p + "post_attention_layernorm.weight"]),
            L + "ln2.beta": f32(s[p + "post_attention_layernorm.bias"]),
            L + "qkv.weight": _uninterleave(s[p + "attention.query_key_value.weight"], c.n_head),
            L + "qkv.bias": _uninterleave(s[p + "attention.query_key_value.bias"], c.n_head),
            L + "attn_out.weight": f32(s[p + "attention.dense.weight"]),
            L + "attn_out.bias": f32(s[p + "attention.dense.bias"]),
            L + "fc.weight": f32(s[p + "mlp.dense_h_to_4h.weight"]),
            L + "fc.bias": f32(s[p + "mlp.dense_h_to_4h.bias"]),
            L + "proj.weight": f32(s[p + "mlp.dense_4h_to_h.weight"]),
            L + "proj.bias": f32(s[p + "mlp.dense_4h_to_h.bias"])})
    return out
