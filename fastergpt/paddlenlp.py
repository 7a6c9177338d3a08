"""Live PaddleNLP models on the engine: the two lines PaddleNLP's fast generation had.

    from fastergpt import FasterGPT
    fast = FasterGPT(model)                      # a PaddleNLP causal LM, read in memory

    import fastergpt.paddlenlp
    fastergpt.paddlenlp.enable(model)
    ids, scores = model.generate(input_ids, max_length=32, use_fast=True)

Supported classes: PaddleNLP's GPT (`GPTLMHeadModel` / `GPTForCausalLM`), LLaMA, OPT,
CodeGen and GPT-J causal LMs (`fastergpt.models.paddlenlp_layout` maps their names).
`use_fast=True` takes PaddleNLP's argument names and returns its types; an argument
the engine does not support raises ValueError naming it (the original fell back to
the slow path without saying so). `use_fast=False` runs PaddleNLP's own generate.
"""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from fastergpt.config import GPTConfig


def from_model(model) -> tuple[GPTConfig, dict]:
    """(config, state dict with transformers' names) of a live PaddleNLP model, read from
    its config and parameters in memory."""
    from fastergpt.checkpoint import CheckpointError, check_state_dict
    from fastergpt.models.paddlenlp_layout import (LayoutError, config_from_paddlenlp,
                                                   state_from_paddlenlp, untie_separate_head)

    name = type(model).__name__
    try:
        config = config_from_paddlenlp(model.config.to_dict())
        raw = {k: v.numpy() for k, v in model.state_dict().items() if v.dtype.name != "BOOL"}
        state = state_from_paddlenlp(config, raw)
    except (LayoutError, KeyError, TypeError) as e:
        raise CheckpointError(f"PaddleNLP {name}: {e}") from None
    config = untie_separate_head(config, state)
    return config, check_state_dict(config, state, f"PaddleNLP {name}")


# PaddleNLP's generate() arguments and what the engine calls them; `max_length` counts
# new tokens in PaddleNLP, as the engine's max_new_tokens.
_RENAMED = {"max_length": "max_new_tokens", "min_length": "min_length",
            "decode_strategy": "decode_strategy", "temperature": "temperature", "top_k": "top_k",
            "top_p": "top_p", "repetition_penalty": "repetition_penalty", "num_beams": "num_beams",
            "length_penalty": "length_penalty", "early_stopping": "early_stopping",
            "num_return_sequences": "num_return_sequences", "eos_token_id": "eos_token_id",
            "pad_token_id": "pad_token_id", "no_repeat_ngram_size": "no_repeat_ngram_size",
            "seed": "seed"}
# Arguments that change nothing the engine computes when left at these values.
_HARMLESS = {"bos_token_id": None, "use_cache": True, "use_fp16_decoding": False,
             "decoder_start_token_id": None, "forced_bos_token_id": None,
             "forced_eos_token_id": None, "num_beam_groups": 1, "diversity_rate": 0.0,
             "trunc_input": True, "streamer": None, "synced_gpus": None, "generation_config": None,
             "stopping_criteria": None, "logits_processors": None}


def enable(model, dtype: str = "float32", num_threads: int = 0, vocab_dtype=None):
    """Makes `model.generate(..., use_fast=True)` run on the engine (weights as they are
    now; call again after changing them), in weight format `dtype` (the token table and LM
    head in `vocab_dtype`, default the format's own). Returns the model."""
    original = getattr(model.generate, "__fastergpt_original__", model.generate)
    fast = None

    @functools.wraps(original)
    def generate(input_ids=None, attention_mask=None, position_ids=None, use_fast=False, **kwargs):
        nonlocal fast
        if not use_fast:
            return original(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, **kwargs)
        if fast is None:
            from fastergpt.faster_gpt import FasterGPT

            fast = FasterGPT(model, dtype=dtype, vocab_dtype=vocab_dtype)
        return generate_fast(fast, input_ids, attention_mask, position_ids, num_threads, **kwargs)

    generate.__fastergpt_original__ = original
    model.generate = generate
    return model


def generate_fast(fast, input_ids, attention_mask=None, position_ids=None, num_threads=0, **kwargs):
    """PaddleNLP's generate() on a FasterGPT: returns (ids [B*R, T] int64, scores [B*R, 1]
    float32): generated tokens only (pad after a row's end), and the mean log-probability
    of each row's tokens, or with beam search its length-penalised beam score."""
    import paddle

    if input_ids is None:
        raise ValueError("use_fast=True needs input_ids")
    settings = {"num_threads": num_threads}
    for key, value in kwargs.items():
        if key in _RENAMED:
            if value is not None:
                settings[_RENAMED[key]] = value
        elif key in _HARMLESS and _same(value, _HARMLESS[key]):
            continue
        else:
            raise ValueError(f"use_fast=True does not support {key}={value!r}; drop it or call "
                             "generate with use_fast=False")
    settings.setdefault("max_new_tokens", 20)  # PaddleNLP's default max_length
    beams = settings.get("decode_strategy") == "beam_search" or (
        settings.get("decode_strategy") in (None, "greedy_search") and settings.get("num_beams", 1) > 1)
    if beams:
        settings["decode_strategy"] = "beam_search"
        # PaddleNLP scores a finished beam sum / ((len + 5) / 6)^lp, transformers (and the
        # engine) sum / len^lp: they agree only at PaddleNLP's default, 0.
        if settings.setdefault("length_penalty", 0.0) != 0.0:
            raise ValueError(f"use_fast=True does not support length_penalty="
                             f"{settings['length_penalty']!r} with beam search: the engine scores "
                             "beams as transformers does (sum / len^lp), PaddleNLP as sum / "
                             "((len + 5) / 6)^lp; pass 0.0 or use_fast=False")
    ids = input_ids.numpy() if hasattr(input_ids, "numpy") else np.asarray(input_ids)
    mask = None
    if attention_mask is not None:
        mask = attention_mask.numpy() if hasattr(attention_mask, "numpy") else np.asarray(attention_mask)
        if mask.ndim != 2:
            raise ValueError(f"use_fast=True takes a 2-D [batch, length] attention_mask of 1s and "
                             f"0s, got shape {list(mask.shape)}")
        mask = (mask > 0.5).astype(np.int64) if mask.dtype.kind in "fb" else mask
    if position_ids is not None:
        # The engine numbers each row's real tokens 0..n-1; other positions it cannot take.
        pos = position_ids.numpy() if hasattr(position_ids, "numpy") else np.asarray(position_ids)
        m = np.ones_like(ids) if mask is None else mask
        want = np.clip(np.cumsum(m, axis=-1) - 1, 0, None)
        if pos.shape != ids.shape or not np.array_equal(pos * m, want * m):
            raise ValueError("use_fast=True numbers each row's real tokens 0..n-1 (left padding "
                             "skipped); these position_ids differ: drop them")
    out = fast.generate(ids, mask, **settings)
    lengths = out.lengths.numpy()
    scores = out.scores.numpy()
    if not beams:
        scores = scores / np.maximum(lengths, 1)
    return out.ids, paddle.to_tensor(scores.reshape(-1, 1).astype(np.float32))


def _same(a, b) -> bool:
    try:
        return a is b or a == b
    except Exception:
        return False


def export(model, tokenizer, output_dir, dtype: str = "float32", **kwargs) -> Path:
    """A live PaddleNLP model and its tokenizer -> a verified inference directory (see
    fastergpt.export.export_model): saved with their own save_pretrained, then exported."""
    from fastergpt.export import export_model

    with tempfile.TemporaryDirectory(prefix="fastergpt_paddlenlp_") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return export_model(tmp, output_dir, dtype=dtype, **kwargs)
