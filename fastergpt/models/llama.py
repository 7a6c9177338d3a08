"""LLaMA-shaped families: LLaMA (1/2/3), Mistral, Qwen2. RMSNorm, rotary
positions (halves), grouped-query attention, a gated SiLU MLP; biases on q/k/v
for Qwen2 (and where LLaMA's config asks for them); separate q, k, v, gate and
up matrices in the checkpoint, fused here to the engine's qkv and gate|up."""
from __future__ import annotations

from fastergpt.config import GPTConfig
from fastergpt.models.common import ArchitectureError, f32, rope_fields, stack_rows

MODEL_TYPES = ("llama", "mistral", "qwen2")
IGNORED = ("rotary_emb.inv_freq",)
TOKEN_EMBEDDING = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"  # the untied LM head's weight (fastergpt quantize --lm_head writes it)


def config_from_hf(raw: dict) -> GPTConfig:
    model_type = raw.get("model_type")
    D, H = int(raw["hidden_size"]), int(raw["num_attention_heads"])
    head_dim = int(raw.get("head_dim") or D // H)
    window = raw.get("sliding_window")
    if model_type == "qwen2" and not raw.get("use_sliding_window", False):
        window = None
    act = raw.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ArchitectureError(f"hidden_act {act!r} is not supported for {model_type} (silu only)")
    qkv_bias = True if model_type == "qwen2" else bool(raw.get("attention_bias", False))
    return GPTConfig(
        model_type=model_type, vocab_size=int(raw["vocab_size"]), n_embd=D, n_head=H,
        n_layer=int(raw["num_hidden_layers"]), n_inner=int(raw["intermediate_size"]),
        n_positions=int(raw.get("max_position_embeddings", 2048)),
        n_kv_head=int(raw.get("num_key_value_heads") or H), head_dim=head_dim,
        layer_norm_epsilon=float(raw.get("rms_norm_eps", 1e-6)), activation_function="silu",
        norm="rms_norm", gated_mlp=True, residual="sequential", qkv_bias=qkv_bias,
        out_bias=model_type == "llama" and bool(raw.get("attention_bias", False)),
        mlp_bias=model_type == "llama" and bool(raw.get("mlp_bias", False)),
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        sliding_window=int(window) if window else None,
        bos_token_id=raw.get("bos_token_id"), eos_token_id=_first(raw.get("eos_token_id")),
        pad_token_id=raw.get("pad_token_id"), **rope_fields(raw, head_dim))


def _first(v):
    return v[0] if isinstance(v, (list, tuple)) else v


def from_hf_tensors(tensors: dict) -> dict:
    return tensors


def from_paddlenlp(c: GPTConfig, raw: dict, source: str) -> dict:
    """HF names and layout from PaddleNLP's LlamaForCausalLM state dict: `llama.` for
    `model.`, Linear weights stored [in, out] (transposed here), and the fused forms
    PaddleNLP writes with fuse_attention_qkv (qkv_proj: per KV head, its group's q
    heads, then its k, then its v) and fuse_attention_ffn (gate_up_fused_proj:
    gate | up). The LM head is [hidden, vocab] unless tied."""
    H, K, Dh, D = c.n_head, c.n_kv_head or c.n_head, c.head_size, c.n_embd
    G = H // K
    out = {}
    for name, value in raw.items():
        if name.startswith("llama."):
            name = "model." + name[len("llama."):]
        if name.endswith(("_proj.weight", "lm_head.weight")) and value.ndim == 2:
            if name == "lm_head.weight":
                value = value.T if value.shape == (D, c.vocab_size) else value
            elif name.endswith("self_attn.qkv_proj.weight"):
                per_kv = value.reshape(D, K, (G + 2) * Dh)
                q = per_kv[:, :, :G * Dh].reshape(D, H * Dh)
                k = per_kv[:, :, G * Dh:(G + 1) * Dh].reshape(D, K * Dh)
                v = per_kv[:, :, (G + 1) * Dh:].reshape(D, K * Dh)
                prefix = name[: -len("qkv_proj.weight")]
                out[prefix + "q_proj.weight"], out[prefix + "k_proj.weight"] = f32(q.T), f32(k.T)
                out[prefix + "v_proj.weight"] = f32(v.T)
                continue
            elif name.endswith("mlp.gate_up_fused_proj.weight"):
                prefix = name[: -len("gate_up_fused_proj.weight")]
                F = value.shape[1] // 2
                out[prefix + "gate_proj.weight"] = f32(value[:, :F].T)
                out[prefix + "up_proj.weight"] = f32(value[:, F:].T)
                continue
            else:
                value = value.T
        out[name] = f32(value)
    return out


def _names(c: GPTConfig, i: int) -> dict:
    p = f"model.layers.{i}."
    return {k: p + v for k, v in {
        "ln1": "input_layernorm.weight", "ln2": "post_attention_layernorm.weight",
        "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
        "o": "self_attn.o_proj", "gate": "mlp.gate_proj", "up": "mlp.up_proj",
        "down": "mlp.down_proj"}.items()}


def expected_shapes(c: GPTConfig) -> dict:
    D, F, V, Dh = c.n_embd, c.inner_size, c.vocab_size, c.head_size
    Q, KV = c.n_head * Dh, (c.n_kv_head or c.n_head) * Dh
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    for i in range(c.n_layer):
        n = _names(c, i)
        shapes.update({n["ln1"]: (D,), n["ln2"]: (D,), n["q"] + ".weight": (Q, D),
                       n["k"] + ".weight": (KV, D), n["v"] + ".weight": (KV, D),
                       n["o"] + ".weight": (D, Q), n["gate"] + ".weight": (F, D),
                       n["up"] + ".weight": (F, D), n["down"] + ".weight": (D, F)})
        if c.qkv_bias:
            shapes.update({n["q"] + ".bias": (Q,), n["k"] + ".bias": (KV,), n["v"] + ".bias": (KV,)})
        if c.out_bias:
            shapes[n["o"] + ".bias"] = (D,)
        if c.mlp_bias:
            shapes.update({n["gate"] + ".bias": (F,), n["up"] + ".bias": (F,),
                           n["down"] + ".bias": (D,)})
    if not c.tie_word_embeddings:
        shapes["lm_head.weight"] = (V, D)
    return shapes


def engine_tensors(c: GPTConfig, s: dict) -> dict:
    out = {"token_embedding": f32(s["model.embed_tokens.weight"]),
           "final_ln.gamma": f32(s["model.norm.weight"])}
    if not c.tie_word_embeddings:
        out["lm_head.weight"] = f32(s["lm_head.weight"])
    for i in range(c.n_layer):
        n, L = _names(c, i), f"layers.{i}."
        out[L + "ln1.gamma"] = f32(s[n["ln1"]])
        out[L + "ln2.gamma"] = f32(s[n["ln2"]])
        out[L + "qkv.weight"] = stack_rows(*(s[n[x] + ".weight"] for x in "qkv"))
        if c.qkv_bias:
            out[L + "qkv.bias"] = stack_rows(*(s[n[x] + ".bias"] for x in "qkv"))
        out[L + "attn_out.weight"] = f32(s[n["o"] + ".weight"])
        if c.out_bias:
            out[L + "attn_out.bias"] = f32(s[n["o"] + ".bias"])
        out[L + "fc.weight"] = stack_rows(s[n["gate"] + ".weight"], s[n["up"] + ".weight"])
        out[L + "proj.weight"] = f32(s[n["down"] + ".weight"])
        if c.mlp_bias:
            out[L + "fc.bias"] = stack_rows(s[n["gate"] + ".bias"], s[n["up"] + ".bias"])
            out[L + "proj.bias"] = f32(s[n["down"] + ".bias"])
    return out
