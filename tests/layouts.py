"""Writers for on-disk model directories used by the checkpoint, tokenizer, export and CLI tests.

Imported as ``layouts`` (``tests/`` is on sys.path). Everything is written from
scratch in a temporary directory: tiny random weights in the HuggingFace and
PaddleNLP layouts, and a tiny byte-level BPE tokenizer trained with the
`tokenizers` library.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_model

ROOT = Path(__file__).resolve().parents[1]
ENDOFTEXT = "<|endoftext|>"

# Training text: ASCII plus accented, CJK and emoji so the merges cover some multi-byte text.
CORPUS = [
    "The function returns a new list of tokens.",
    "This module provides helpers for reading files and writing them back.",
    "If the file does not exist, the function raises an error.",
    "hello world, hello there, hello again",
    "Return a new list with every item of the old one.",
    "café crème brûlée, über, señor, niño, mañana",
    "日本語のテキストと中文文本",
    "emoji 😀 🚀 ✨ are bytes too",
] * 4


@functools.lru_cache(maxsize=None)
def _trained_bpe_json() -> str:
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, special_tokens=[ENDOFTEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok.to_str()


def bpe_tokenizer():
    """A fresh copy of the tiny byte-level BPE (a tokenizers.Tokenizer)."""
    import tokenizers

    return tokenizers.Tokenizer.from_str(_trained_bpe_json())


def bpe_vocab_size() -> int:
    return bpe_tokenizer().get_vocab_size(with_added_tokens=True)


def write_tokenizer(directory, form: str = "json") -> Path:
    """form "json": tokenizer.json; form "vocab": vocab.json + merges.txt (tok.model.save)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = bpe_tokenizer()
    if form == "json":
        tok.save(str(directory / "tokenizer.json"))
    elif form == "vocab":
        tok.model.save(str(directory))
    else:
        raise ValueError(form)
    return directory


def tokenizer_model(activation="gelu_new", tied=True, seed=1, **config_kwargs):
    """A reference GPTLMHeadModel whose vocabulary is exactly the tiny BPE's."""
    return tiny_model(seed=seed, vocab_size=bpe_vocab_size(), activation_function=activation,
                      tie_word_embeddings=tied, **config_kwargs)


def hf_config_dict(config) -> dict:
    return {
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size, "n_positions": config.n_positions,
        "n_ctx": config.n_positions, "n_embd": config.n_embd, "n_layer": config.n_layer,
        "n_head": config.n_head, "n_inner": config.n_inner,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "activation_function": config.activation_function,
        "tie_word_embeddings": config.tie_word_embeddings,
    }


def write_json(path, data) -> None:
    Path(path).write_text(json.dumps(data, indent=1), encoding="utf-8")


def write_hf_numpy(directory, model, gpt2model_names=False, tensors=None) -> Path:
    """HF layout with safetensors.numpy.save_file and a hand-written config.json.

    gpt2model_names drops the `transformer.` prefix (how GPT2Model files name tensors).
    tensors overrides the state dict written (for corrupting it).
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = model.state_dict_numpy() if tensors is None else tensors
    if gpt2model_names:
        state = {k[len("transformer."):] if k.startswith("transformer.") else k: v
                 for k, v in state.items()}
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()},
              str(directory / "model.safetensors"))
    write_json(directory / "config.json", hf_config_dict(model.config))
    return directory


def write_hf_transformers(directory, model, binary=False) -> Path:
    """HF layout through transformers' GPT2LMHeadModel.save_pretrained (safetensors), or
    pytorch_model.bin when binary (save_pretrained(safe_serialization=False); transformers
    versions that only write safetensors get the same file through torch.save)."""
    from helpers import hf_model

    torch = pytest.importorskip("torch")
    hf = hf_model(model)
    directory = Path(directory)
    if not binary:
        hf.save_pretrained(str(directory))
        assert (directory / "model.safetensors").is_file()
        return directory
    try:
        hf.save_pretrained(str(directory), safe_serialization=False)
    except TypeError:
        hf.save_pretrained(str(directory))
    if not (directory / "pytorch_model.bin").is_file():
        (directory / "model.safetensors").unlink()
        torch.save(hf.state_dict(), str(directory / "pytorch_model.bin"))
    assert not (directory / "model.safetensors").exists()
    return directory


def paddlenlp_state(model) -> dict:
    """The reference model's weights under PaddleNLP GPT names (q/k/v split, [in, out])."""
    c = model.config
    sd = model.state_dict_numpy()
    D = c.n_embd
    out = {
        "gpt.embeddings.word_embeddings.weight": sd["transformer.wte.weight"],
        "gpt.embeddings.position_embeddings.weight": sd["transformer.wpe.weight"],
        "gpt.decoder.norm.weight": sd["transformer.ln_f.weight"],
        "gpt.decoder.norm.bias": sd["transformer.ln_f.bias"],
    }
    for i in range(c.n_layer):
        h, p = f"transformer.h.{i}.", f"gpt.decoder.layers.{i}."
        for ours, theirs in (("ln_1", "norm1"), ("ln_2", "norm2"), ("attn.c_proj", "self_attn.out_proj"),
                             ("mlp.c_fc", "linear1"), ("mlp.c_proj", "linear2")):
            out[p + theirs + ".weight"] = sd[h + ours + ".weight"]
            out[p + theirs + ".bias"] = sd[h + ours + ".bias"]
        w, b = sd[h + "attn.c_attn.weight"], sd[h + "attn.c_attn.bias"]
        for j, name in enumerate("qkv"):
            out[p + f"self_attn.{name}_proj.weight"] = w[:, j * D:(j + 1) * D]
            out[p + f"self_attn.{name}_proj.bias"] = b[j * D:(j + 1) * D]
    if not c.tie_word_embeddings:
        out["lm_head.decoder.weight"] = sd["lm_head.weight"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def write_paddlenlp(directory, model, hidden_act=None, state=None) -> Path:
    """PaddleNLP layout: paddle.save(state dict) -> model_state.pdparams + model_config.json.

    hidden_act defaults to PaddleNLP's spelling of the model's activation: "gelu"
    (PaddleNLP's exact erf GELU) or "gelu_new" (tanh approximation).
    """
    import paddle

    c = model.config
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = paddlenlp_state(model) if state is None else state
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()},
                str(directory / "model_state.pdparams"))
    cfg = {
        "model_type": "gpt", "vocab_size": c.vocab_size, "hidden_size": c.n_embd,
        "num_hidden_layers": c.n_layer, "num_attention_heads": c.n_head,
        "intermediate_size": c.inner_size,
        "hidden_act": hidden_act or c.activation_function,
        "max_position_embeddings": c.n_positions,
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "tie_word_embeddings": c.tie_word_embeddings,
    }
    write_json(directory / "model_config.json", cfg)
    return directory


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("FLAGS_enable_pir_api", None)
    return env


def run_python(args, timeout=180, **kwargs) -> subprocess.CompletedProcess:
    """sys.executable with args, PYTHONPATH=repo root, text output captured."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          encoding="utf-8", errors="replace", env=subprocess_env(), timeout=timeout, cwd=str(ROOT), **kwargs)
