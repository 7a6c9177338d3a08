"""Held-out evaluation of a reference GPT-2 and loading of the project's default model.

Perplexity method (:func:`perplexity`)
--------------------------------------
Every token of the stream except the first is a target, scored exactly
once. The model reads windows of at most ``block_size`` input tokens
(default: its ``n_positions``). The first window reads tokens
0..block_size-1 and scores targets 1..block_size (each with all of the
stream before it as context). Each later window scores the next ``stride``
targets (default ``block_size // 2``), reading the ``block_size`` tokens
just before the last of them, so every such target sees at least
``block_size - stride + 1`` tokens of context. ``stride == block_size``
is fast (each token is read about once) with less context on average;
``stride == 1`` gives every target a full window (slow).
The result is ``exp(mean negative log-likelihood)`` over the scored tokens,
computed in float32 by the reference model and accumulated in float64.
"""

from __future__ import annotations

import json
import math
import os
from typing import Optional, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from fastergpt.config import GPTConfig

DEFAULT_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_model")

_BATCH_TOKENS = 4096  # windows per forward pass: about this many tokens


def _windows(n_tokens: int, block_size: int, stride: int):
    """Yield (begin, length, first): inputs tokens[begin:begin+length] score targets first..begin+length.

    The input at position j predicts token begin + j + 1.
    """
    last = 0  # last target scored so far; token 0 is never a target
    while last < n_tokens - 1:
        end = min(block_size if last == 0 else last + stride, n_tokens - 1)
        begin = max(0, end - block_size)
        yield begin, end - begin, last + 1
        last = end


def negative_log_likelihood(model, token_ids, block_size: Optional[int] = None,
                            stride: Optional[int] = None, num_threads: int = 0,
                            matmul_precision: str = "float32") -> Tuple[float, int]:
    """(mean NLL in nats per scored token, number of scored tokens); see the module docstring.

    model: a reference GPTLMHeadModel, or a fastergpt.Engine (any weight format:
    its logits come from the fused engine, so quantised weights are scored as
    they run; matmul_precision as Engine.generate's, for an Engine only)."""
    ids, block_size, stride = _check_stream(model.config, token_ids, block_size, stride)
    windows = list(_windows(ids.size, block_size, stride))
    per_batch = max(1, _BATCH_TOKENS // block_size)
    total = 0.0
    count = 0
    if hasattr(model, "logits"):  # fastergpt.Engine
        nll, _ = _engine_scores(model, ids, windows, per_batch, num_threads, matmul_precision,
                                with_top=False)
        return float(nll.sum()) / nll.size, nll.size
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            # Windows of equal length, so each forward pass is one rectangle.
            for length, group in _groups(windows, per_batch):
                batch = np.stack([ids[b:b + length + 1] for b, _, _ in group])
                logits, _ = model(batch[:, :-1])
                targets = paddle.to_tensor(batch[:, 1:]).unsqueeze(-1)
                # cross_entropy, not log_softmax + gather: Paddle's CPU log_softmax is ~50x slower.
                nll = F.cross_entropy(logits, targets, reduction="none").squeeze(-1).numpy()
                for row, (b, _, first) in enumerate(group):
                    scored = nll[row, first - b - 1:].astype(np.float64)
                    total += float(scored.sum())
                    count += scored.size
    finally:
        if was_training:
            model.train()
    return total / count, count


def _groups(windows, per_batch):
    """Windows of equal length, at most per_batch at a time (one rectangle each)."""
    i = 0
    while i < len(windows):
        length = windows[i][1]
        group = [windows[i]]
        i += 1
        while i < len(windows) and len(group) < per_batch and windows[i][1] == length:
            group.append(windows[i])
            i += 1
        yield length, group


def perplexity(model, token_ids, block_size: Optional[int] = None,
               stride: Optional[int] = None) -> float:
    """Perplexity of a reference GPTLMHeadModel on a 1-D array of token ids.

    Sliding windows of block_size (default n_positions) every stride tokens
    (default block_size // 2); each token after the first is scored once with
    as much context as the windows give it. See the module docstring.
    """
    nll, _ = negative_log_likelihood(model, token_ids, block_size, stride)
    return math.exp(nll)


def load_default_model(dtype: str = "float32", path: Optional[str] = None):
    """Load the project's default model: (reference GPTLMHeadModel, tokenizers.Tokenizer, GPTConfig).

    The weights are stored in float16 (``model.safetensors``). The reference
    model computes in float32, so both dtypes load the stored float16 values
    exactly, upcast to float32: "float16" names the stored weights as-is,
    "float32" the same values in the float32 model (there is no separate
    full-precision file). path defaults to ``fastergpt/default_model``.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    from fastergpt.reference.model import GPTLMHeadModel

    path = DEFAULT_MODEL_DIR if path is None else path
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        config = GPTConfig.from_dict(json.load(f)).validate()
    state = load_file(os.path.join(path, "model.safetensors"))
    state = {name: np.asarray(value, dtype=np.float16).astype(np.float32)
             for name, value in state.items()}
    model = GPTLMHeadModel(config)
    model.load_numpy_state_dict(state)
    model.eval()
    tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    return model, tokenizer, config


def encode_documents(tokenizer, docs, eot_id: int) -> np.ndarray:
    """The token stream the default model is trained and evaluated on: eot, doc1, eot, doc2, ..., eot."""
    parts = [np.array([eot_id], dtype=np.int32)]
    for enc in tokenizer.encode_batch(list(docs), add_special_tokens=False):
        parts.append(np.asarray(enc.ids, dtype=np.int32))
        parts.append(np.array([eot_id], dtype=np.int32))
    return np.concatenate(parts)


def _check_stream(config, token_ids, block_size, stride):
    ids = np.asarray(token_ids)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"token_ids must be a 1-D array of at least 2 ids, got shape {ids.shape}")
    ids = ids.astype(np.int64)
    if ids.min() < 0 or ids.max() >= config.vocab_size:
        raise ValueError(f"token ids must be in [0, {config.vocab_size})")
    block_size = config.n_positions if block_size is None else int(block_size)
    if not 2 <= block_size <= config.n_positions:
        raise ValueError(f"block_size must be in [2, {config.n_positions}], got {block_size}")
    stride = max(1, block_size // 2) if stride is None else int(stride)
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be in [1, block_size], got {stride}")
    return ids, block_size, stride


def token_scores(engine, token_ids, block_size: Optional[int] = None,
                 stride: Optional[int] = None, num_threads: int = 0,
                 matmul_precision: str = "float32"):
    """(NLL float64 [n - 1], argmax int64 [n - 1]) of a fastergpt.Engine for every target
    token 1..n-1 of the stream, in order, with the windows of the module docstring: the
    per-token numbers behind negative_log_likelihood, and the model's own next-token
    choice at each position (teacher-forced), to compare formats token by token."""
    ids, block_size, stride = _check_stream(engine.config, token_ids, block_size, stride)
    windows = list(_windows(ids.size, block_size, stride))
    return _engine_scores(engine, ids, windows, max(1, _BATCH_TOKENS // block_size), num_threads,
                          matmul_precision)


def _engine_scores(engine, ids, windows, per_batch, num_threads, matmul_precision,
                   with_top=True):
    """(NLL per target, argmax per target, or None without with_top)."""
    nlls, tops = [], []
    for length, group in _groups(windows, per_batch):
        batch = np.stack([ids[b:b + length + 1] for b, _, _ in group])
        logits = engine.logits(batch[:, :-1], num_threads=num_threads,
                               matmul_precision=matmul_precision).astype(np.float64)
        m = logits.max(-1, keepdims=True)
        logz = m[..., 0] + np.log(np.exp(logits - m).sum(-1))
        target = np.take_along_axis(logits, batch[:, 1:, None], -1)[..., 0]
        nll = logz - target
        top = logits.argmax(-1) if with_top else None
        for row, (b, _, first) in enumerate(group):
            nlls.append(nll[row, first - b - 1:])
            if with_top:
                tops.append(top[row, first - b - 1:])
    return np.concatenate(nlls), np.concatenate(tops).astype(np.int64) if with_top else None
