"""OPT: learned positions with an offset of 2 (the first two rows of the table
are never used, so they are dropped here), LayerNorm before (or, with
`do_layer_norm_before=False`, after) each sublayer, ReLU, biases everywhere,
and `project_in` / `project_out` when `word_embed_proj_dim != hidden_size`."""
from __future__ import annotations

from fastergpt.config import GPTConfig
from fastergpt.models.common import ArchitectureError, f32, stack_rows

MODEL_TYPES = ("opt",)
IGNORED = ()
TOKEN_EMBEDDING = "model.decoder.embed_tokens.weight"
LM_HEAD = "lm_head.weight"  # the untied LM head's weight (fastergpt quantize --lm_head writes it)
POSITION_OFFSET = 2  # transformers' OPTLearnedPositionalEmbedding.offset


def config_from_hf(raw: dict) -> GPTConfig:
    if not raw.get("layer_norm_elementwise_affine", True):
        raise ArchitectureError("opt with layer_norm_elementwise_affine=False is not supported")
    if not raw.get("enable_bias", True):
        raise ArchitectureError("opt with enable_bias=False is not supported")
    pre = bool(raw.get("do_layer_norm_before", True))
    if pre and raw.get("_remove_final_layer_norm", False):
        raise ArchitectureError("opt with _remove_final_layer_norm=True is not supported")
    D = int(raw["hidden_size"])
    E = int(raw.get("word_embed_proj_dim") or D)
    return GPTConfig(
        model_type="opt", vocab_size=int(raw["vocab_size"]), n_embd=D,
        n_head=int(raw["num_attention_heads"]), n_layer=int(raw["num_hidden_layers"]),
        n_inner=int(raw["ffn_dim"]), n_positions=int(raw.get("max_position_embeddings", 2048)),
        embed_size=E if E != D else None, layer_norm_epsilon=1e-5,
        activation_function=raw.get("activation_function", "relu"),
        residual="sequential" if pre else "post_norm",
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", True)),
        bos_token_id=raw.get("bos_token_id"), eos_token_id=raw.get("eos_token_id"),
        pad_token_id=raw.get("pad_token_id"))


def from_hf_tensors(tensors: dict) -> dict:
    out = {}
    for name, value in tensors.items():
        if name.startswith("decoder."):  # OPTModel files
            name = "model." + name
        out[name] = value
    return out


def _p(i):
    return f"model.decoder.layers.{i}."


def expected_shapes(c: GPTConfig) -> dict:
    D, F, V = c.n_embd, c.inner_size, c.vocab_size
    E = c.embed_size or D
    d = "model.decoder."
    shapes = {d + "embed_tokens.weight": (V, E),
              d + "embed_positions.weight": (c.n_positions + POSITION_OFFSET, D)}
    if E != D:
        shapes.update({d + "project_in.weight": (D, E), d + "project_out.weight": (E, D)})
    if c.residual != "post_norm":
        shapes.update({d + "final_layer_norm.weight": (D,), d + "final_layer_norm.bias": (D,)})
    if not c.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, E)
    for i in range(c.n_layer):
        p = _p(i)
        for x in ("q", "k", "v", "out"):
            shapes.update({p + f"self_attn.{x}_proj.weight": (D, D), p + f"self_attn.{x}_proj.bias": (D,)})
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            shapes.update({p + norm + ".weight": (D,), p + norm + ".bias": (D,)})
        shapes.update({p + "fc1.weight": (F, D), p + "fc1.bias": (F,),
                       p + "fc2.weight": (D, F), p + "fc2.bias": (D,)})
    return shapes


def engine_tensors(c: GPTConfig, s: dict) -> dict:
    d = "model.decoder."
    out = {"token_embedding": f32(s[d + "embed_tokens.weight"]),
           "position_embedding": f32(s[d + "embed_positions.weight"][POSITION_OFFSET:])}
    if (c.embed_size or c.n_embd) != c.n_embd:
        out["project_in.weight"] = f32(s[d + "project_in.weight"])
        out["project_out.weight"] = f32(s[d + "project_out.weight"])
    if c.residual != "post_norm":
        out["final_ln.gamma"] = f32(s[d + "final_layer_norm.weight"])
        out["final_ln.beta"] = f32(s[d + "final_layer_norm.bias"])
    if not c.tie_word_embeddings:
        out["lm_head.weight"] = f32(s["lm_head.weight"])
    for i in range(c.n_layer):
        p, L = _p(i), f"layers.{i}."
        a = p + "self_attn."
        out.update({
            L + "ln1.gamma": f32(s[p + "self_attn_layer_norm.weight"]),
            L + "ln1.beta": f32(s[p + "self_attn_layer_norm.bias"]),
            L + "qkv.weight": stack_rows(*(s[a + f"{x}_proj.weight"] for x in "qkv")),
            L + "qkv.bias": stack_rows(*(s[a + f"{x}_proj.bias"] for x in "qkv")),
            L + "attn_out.weight": f32(s[a + "out_proj.weight"]),
            L + "attn_out.bias": f32(s[a + "out_proj.bias"]),
            L + "ln2.gamma": f32(s[p + "final_layer_norm.weight"]),
            L + "ln2.beta": f32(s[p + "final_layer_norm.bias"]),
            L + "fc.weight": f32(s[p + "fc1.weight"]), L + "fc.bias": f32(s[p + "fc1.bias"]),
            L + "proj.weight": f32(s[p + "fc2.weight"]), L + "proj.bias": f32(s[p + "fc2.bias"])})
    return out
