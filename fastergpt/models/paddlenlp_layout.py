"""PaddleNLP's layouts of the families, on disk (`save_pretrained`: model_config.json or
config.json + model_state.pdparams) and in a live model (`model.config.to_dict()`,
`model.state_dict()`): its config keys and tensor names mapped to transformers' ones,
so every family's table (fastergpt/models/<family>.py) reads them unchanged.

PaddleNLP's Linear weights are [in, out]; transformers' are [out, in] (GPT-2's Conv1D
excepted, which is [in, out] too), so they are transposed here.
"""
from __future__ import annotations

import re

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.models.common import f32

MODEL_TYPES = ("gpt", "gpt2", "llama", "opt", "codegen", "gptj")

_GPT_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "n_embd", "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head", "intermediate_size": "n_inner",
    "max_position_embeddings": "n_positions", "layer_norm_epsilon": "layer_norm_epsilon",
    "layer_norm_eps": "layer_norm_epsilon",
    "eos_token_id": "eos_token_id", "bos_token_id": "bos_token_id", "pad_token_id": "pad_token_id",
    "tie_word_embeddings": "tie_word_embeddings",
}
# PaddleNLP's F.gelu is the exact erf form unless it says otherwise.
_GPT_ACT = {"gelu": "gelu", "gelu_new": "gelu_new", "fast_gelu": "gelu_new"}


class LayoutError(ValueError):
    """A PaddleNLP config or state dict fastergpt cannot read (the caller adds the source)."""


def config_from_paddlenlp(raw: dict) -> GPTConfig:
    """The engine's config from a PaddleNLP config dict (any supported model_type)."""
    from fastergpt.models import family

    model_type = raw.get("model_type", "gpt")
    if model_type not in MODEL_TYPES:
        raise LayoutError(f"unsupported architecture model_type={model_type!r}; fastergpt reads "
                          f"PaddleNLP {', '.join(t for t in MODEL_TYPES if t != 'gpt2')} models")
    if model_type in ("llama", "codegen", "gptj"):  # the same keys as transformers
        return family(model_type).config_from_hf(dict(raw)).validate()
    if model_type == "opt":
        hf = dict(raw, ffn_dim=raw["intermediate_size"],
                  activation_function=raw.get("hidden_act", "relu"),
                  do_layer_norm_before=raw.get("normalize_before", True))
        return family("opt").config_from_hf(hf).validate()
    if raw.get("normalize_before", True) is False:
        raise LayoutError("gpt with normalize_before=False is not supported")
    kwargs = {ours: raw[theirs] for theirs, ours in _GPT_KEYS.items() if theirs in raw}
    act = raw.get("hidden_act", "gelu")
    if act not in _GPT_ACT:
        raise LayoutError(f"unsupported hidden_act {act!r} (expected gelu or gelu_new)")
    kwargs["activation_function"] = _GPT_ACT[act]
    kwargs.setdefault("tie_word_embeddings", True)
    return GPTConfig(**kwargs).validate()


def state_from_paddlenlp(c: GPTConfig, raw: dict) -> dict:
    """transformers' names and layouts (float32) from a PaddleNLP state dict."""
    raw = {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()}
    if c.model_type == "llama":
        from fastergpt.models import llama

        return llama.from_paddlenlp(c, raw, "")
    if c.model_type == "opt":
        return _opt(raw)
    if c.model_type in ("codegen", "gptj"):
        from fastergpt.models import family

        ignored = family(c.model_type).IGNORED
        return {name: f32(v.T) if v.ndim == 2 and name != "transformer.wte.weight" else v
                for name, v in raw.items() if not any(ig in name for ig in ignored)}
    return _gpt(c, raw)


def untie_separate_head(c: GPTConfig, state: dict) -> GPTConfig:
    """PaddleNLP computes with the head parameter it has: one kept as its own tensor
    (OPT's lm_head.decoder_weight) that differs from the token embedding is untied,
    whatever the config says."""
    import dataclasses

    from fastergpt.models import family

    head, table = state.get("lm_head.weight"), state.get(family(c.model_type).TOKEN_EMBEDDING)
    if c.tie_word_embeddings and head is not None and table is not None and not np.array_equal(head, table):
        return dataclasses.replace(c, tie_word_embeddings=False).validate()
    return c


# ---- GPT --------------------------------------------------------------------------

_GPT_LAYER = re.compile(r"(?:gpt\.)?decoder\.layers\.(\d+)\.(.+)")
_GPT_LAYER_NAMES = {
    "norm1.weight": "ln_1.weight", "norm1.bias": "ln_1.bias",
    "norm2.weight": "ln_2.weight", "norm2.bias": "ln_2.bias",
    "self_attn.out_proj.weight": "attn.c_proj.weight", "self_attn.out_proj.bias": "attn.c_proj.bias",
    "linear1.weight": "mlp.c_fc.weight", "linear1.bias": "mlp.c_fc.bias",
    "linear2.weight": "mlp.c_proj.weight", "linear2.bias": "mlp.c_proj.bias",
}
_GPT_GLOBAL_NAMES = {
    "embeddings.word_embeddings.weight": "transformer.wte.weight",
    "embeddings.position_embeddings.weight": "transformer.wpe.weight",
    "decoder.norm.weight": "transformer.ln_f.weight",
    "decoder.norm.bias": "transformer.ln_f.bias",
    "lm_head.decoder.weight": "lm_head.weight",
    "lm_head.weight": "lm_head.weight",
}


def _gpt(c: GPTConfig, raw: dict) -> dict:
    """GPT-2's Conv1D layout is PaddleNLP's [in, out]: names change, not layouts."""
    out, qkv, unexpected = {}, {}, []
    for name, value in raw.items():
        m = _GPT_LAYER.fullmatch(name)
        if m:
            i, rest = m.group(1), m.group(2)
            if rest in _GPT_LAYER_NAMES:
                out[f"transformer.h.{i}.{_GPT_LAYER_NAMES[rest]}"] = value
                continue
            qm = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if qm:
                qkv.setdefault((i, qm.group(2)), {})[qm.group(1)] = value
                continue
            fm = re.fullmatch(r"self_attn\.qkv_proj\.(weight|bias)", rest)
            if fm:  # fuse_attention_qkv: one Linear whose outputs are per head [q | k | v]
                out[f"transformer.h.{i}.attn.c_attn.{fm.group(1)}"] = _unfuse_heads(value, c.n_head, name)
                continue
        key = name[4:] if name.startswith("gpt.") else name
        if key in _GPT_GLOBAL_NAMES:
            out[_GPT_GLOBAL_NAMES[key]] = value
        else:
            unexpected.append(name)
    if unexpected:
        raise LayoutError(f"unexpected tensor(s) {sorted(unexpected)[:8]} (not a PaddleNLP GPT layout)")
    # PaddleNLP keeps q, k and v as separate [in, out] Linears; HF's c_attn is [in, 3*out].
    for (i, kind), parts in qkv.items():
        missing = [p for p in "qkv" if p not in parts]
        if missing:
            raise LayoutError(f"layer {i} lacks self_attn.{missing[0]}_proj.{kind}")
        axis = 1 if kind == "weight" else 0
        out[f"transformer.h.{i}.attn.c_attn.{kind}"] = np.concatenate(
            [parts["q"], parts["k"], parts["v"]], axis=axis)
    return out


def _unfuse_heads(value: np.ndarray, heads: int, what: str) -> np.ndarray:
    """PaddleNLP's fused qkv_proj ([in, H * 3 * Dh] weight or [H * 3 * Dh] bias, each
    head's q, k, v side by side) -> GPT-2's c_attn layout (all q | all k | all v)."""
    cols = value.shape[-1]
    if cols % (3 * heads):
        raise LayoutError(f"{what} has shape {tuple(value.shape)}, not [.., 3 x heads x head size]")
    per_head = value.reshape(*value.shape[:-1], heads, 3, cols // (3 * heads))
    return np.ascontiguousarray(np.swapaxes(per_head, -3, -2).reshape(value.shape))


# ---- OPT --------------------------------------------------------------------------

_OPT_LAYER_NAMES = {"norm1": "self_attn_layer_norm", "norm2": "final_layer_norm",
                    "linear1": "fc1", "linear2": "fc2"}


def _opt(raw: dict) -> dict:
    out = {}
    for name, value in raw.items():
        hf = re.sub(r"^opt\.", "model.", name)
        hf = hf.replace("model.embeddings.word_embeddings", "model.decoder.embed_tokens")
        hf = hf.replace("model.embeddings.position_embeddings", "model.decoder.embed_positions")
        hf = hf.replace("model.embeddings.project_in", "model.decoder.project_in")
        hf = re.sub(r"\.layers\.(\d+)\.(norm1|norm2|linear1|linear2)\.",
                    lambda m: f".layers.{m.group(1)}.{_OPT_LAYER_NAMES[m.group(2)]}.", hf)
        if hf == "lm_head.decoder_weight":
            hf = "lm_head.weight"
        elif value.ndim == 2 and "embed_" not in hf:
            value = f32(value.T)  # Linear [in, out] -> [out, in]
        out[hf] = value
    return out
