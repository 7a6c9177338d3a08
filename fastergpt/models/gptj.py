"""GPT-J: LayerNorm, partial rotary positions on interleaved pairs, attention and
MLP in parallel off one norm, GELU (tanh), no attention biases, an untied LM head
with a bias. CodeGen (codegen.py) differs only in its fused qkv_proj."""
from __future__ import annotations

from fastergpt.config import GPTConfig
from fastergpt.models.common import ArchitectureError, f32, stack_rows

MODEL_TYPES = ("gptj",)
IGNORED = (".attn.bias", ".attn.masked_bias", "embed_positions")
TOKEN_EMBEDDING = "transformer.wte.weight"
LM_HEAD = "lm_head.weight"  # the untied LM head's weight (fastergpt quantize --lm_head writes it)


def config_from_hf(raw: dict) -> GPTConfig:
    D, H = int(raw["n_embd"]), int(raw["n_head"])
    rotary = raw.get("rotary_dim")
    if not rotary:  # transformers then rotates the whole head with frequencies of the model width
        raise ArchitectureError(f"{raw.get('model_type', 'gptj')} with rotary_dim=None is not supported")
    return GPTConfig(
        model_type=raw.get("model_type", "gptj"), vocab_size=int(raw["vocab_size"]), n_embd=D,
        n_head=H, n_layer=int(raw["n_layer"]), n_inner=raw.get("n_inner"),
        n_positions=int(raw.get("n_positions", 2048)),
        layer_norm_epsilon=float(raw.get("layer_norm_epsilon", 1e-5)),
        activation_function=raw.get("activation_function", "gelu_new"),
        positions="rotary", rotary_dim=int(rotary), rotary_interleaved=True,
        residual="parallel", qkv_bias=False, out_bias=False, lm_head_bias=True,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        bos_token_id=raw.get("bos_token_id"), eos_token_id=raw.get("eos_token_id"),
        pad_token_id=raw.get("pad_token_id"))


def from_hf_tensors(tensors: dict) -> dict:
    return tensors


def _p(i):
    return f"transformer.h.{i}."


def attention_shapes(c: GPTConfig, p: str) -> dict:
    D = c.n_embd
    return {p + f"attn.{x}_proj.weight": (D, D) for x in "qkv"}


def qkv_weight(c: GPTConfig, s: dict, p: str):
    return stack_rows(*(s[p + f"attn.{x}_proj.weight"] for x in "qkv"))


def expected_shapes(c: GPTConfig, attention=attention_shapes) -> dict:
    D, F, V = c.n_embd, c.inner_size, c.vocab_size
    shapes = {"transformer.wte.weight": (V, D), "transformer.ln_f.weight": (D,),
              "transformer.ln_f.bias": (D,), "lm_head.bias": (V,)}
    if not c.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, D)
    for i in range(c.n_layer):
        p = _p(i)
        shapes.update(attention(c, p))
        shapes.update({p + "ln_1.weight": (D,), p + "ln_1.bias": (D,),
                       p + "attn.out_proj.weight": (D, D),
                       p + "mlp.fc_in.weight": (F, D), p + "mlp.fc_in.bias": (F,),
                       p + "mlp.fc_out.weight": (D, F), p + "mlp.fc_out.bias": (D,)})
    return shapes


def engine_tensors(c: GPTConfig, s: dict, qkv=qkv_weight) -> dict:
    out = {"token_embedding": f32(s["transformer.wte.weight"]),
           "final_ln.gamma": f32(s["transformer.ln_f.weight"]),
           "final_ln.beta": f32(s["transformer.ln_f.bias"]),
           "lm_head.bias": f32(s["lm_head.bias"])}
    if not c.tie_word_embeddings:
        out["lm_head.weight"] = f32(s["lm_head.weight"])
    for i in range(c.n_layer):
        p, L = _p(i), f"layers.{i}."
        out.update({
            L + "ln1.gamma": f32(s[p + "ln_1.weight"]), L + "ln1.beta": f32(s[p + "ln_1.bias"]),
            L + "qkv.weight": qkv(c, s, p),
            L + "attn_out.weight": f32(s[p + "attn.out_proj.weight"]),
            L + "fc.weight": f32(s[p + "mlp.fc_in.weight"]), L + "fc.bias": f32(s[p + "mlp.fc_in.bias"]),
            L + "proj.weight": f32(s[p + "mlp.fc_out.weight"]),
            L + "proj.bias": f32(s[p + "mlp.fc_out.bias"])})
    return out
