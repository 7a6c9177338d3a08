"""Reference autoregressive decoding with a KV cache (the oracle for the fused operator).

One context pass over the left-padded prompt, then one token per step for
every row. Logit processing happens in numpy on float32 logits in a fixed
order that the C++ engine mirrors: repetition penalty, min_length, then
either argmax (greedy) or temperature -> top_k -> top_p -> min_p -> typical_p
-> draw (sampling).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np
import paddle

from fastergpt.reference.model import MASK_VALUE

DECODE_STRATEGIES = ("greedy_search", "sampling")


@dataclass
class GenerateOutput:
    ids: np.ndarray  # int64 [B*R, T]: generated tokens only; pad after a row's eos
    lengths: np.ndarray  # int64 [B*R]: tokens each row generated, its eos included
    logprobs: Optional[np.ndarray] = None  # float32 [B*R, T], 0 after a row finished

    def __getitem__(self, key: str):
        # Lets callers treat the result as a dict too.
        return getattr(self, key)


def sampling_distribution(logits_row, top_k: int = 0, top_p: float = 1.0,
                          temperature: float = 1.0, min_p: float = 0.0,
                          typical_p: float = 1.0) -> np.ndarray:
    """Final sampling probabilities (float64, zeros outside the kept set) for logits [V] or [N, V].

    Logits are divided by temperature (in float32), the top_k largest kept
    (ties broken toward the lower id), then, over the kept tokens sorted by
    descending logit, token i survives iff the probability mass before it is
    < top_p; the survivors are renormalized. Then min_p drops tokens whose
    probability is below min_p x the top one's, and typical_p keeps the tokens
    whose surprisal is closest to the entropy until their mass reaches
    typical_p (transformers' MinP / Typical warpers, in that order).
    """
    x = np.asarray(logits_row, dtype=np.float32)
    probs = _sampling_probs(x.reshape(-1, x.shape[-1]), top_k, top_p, temperature, min_p,
                            typical_p)
    return probs.reshape(x.shape)


def _sampling_probs(scores: np.ndarray, top_k: int, top_p: float, temperature: float,
                    min_p: float = 0.0, typical_p: float = 1.0) -> np.ndarray:
    x = scores.astype(np.float32) / np.float32(temperature)
    vocab = x.shape[1]
    order = np.argsort(-x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1).astype(np.float64)
    if 0 < top_k < vocab:
        xs[:, top_k:] = -np.inf
    p = np.exp(xs - xs[:, :1])
    p /= p.sum(axis=1, keepdims=True)
    if top_p < 1.0:
        mass_before = np.cumsum(p, axis=1) - p
        mass_before[:, 0] = 0.0
        p = np.where(mass_before < top_p, p, 0.0)
        p /= p.sum(axis=1, keepdims=True)
    if min_p > 0.0:
        p = np.where(p >= min_p * p[:, :1], p, 0.0)
        p /= p.sum(axis=1, keepdims=True)
    if typical_p < 1.0:
        p = np.stack([_typical(row, typical_p) for row in p])
    out = np.zeros_like(p)
    np.put_along_axis(out, order, p, axis=1)
    return out


def _typical(p: np.ndarray, mass: float) -> np.ndarray:
    """One row of probabilities after the typical-p filter, renormalized."""
    with np.errstate(divide="ignore"):
        surprisal = -np.log(p)
    entropy = -np.sum(p[p > 0] * np.log(p[p > 0]))
    shift = np.where(p > 0, np.abs(surprisal - entropy), np.inf)
    rank = np.argsort(shift, kind="stable")
    before = np.cumsum(p[rank])
    last = min(int(np.sum(before < mass)), len(p) - 1)
    kept = np.where(shift <= shift[rank[last]], p, 0.0)
    return kept / kept.sum()


def _draw(rng: np.random.Generator, probs: np.ndarray) -> int:
    cdf = np.cumsum(probs)
    # side="right" never lands on a zero-probability token.
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(probs) - 1))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, paddle.Tensor):
        x = x.numpy()
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array [batch, length], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.integer) and not np.issubdtype(x.dtype, np.bool_):
        raise ValueError(f"{name} must hold integers, got dtype {x.dtype}")
    return x.astype(np.int64)


def _check_mask(mask: np.ndarray, shape) -> None:
    if mask.shape != shape:
        raise ValueError(f"attention_mask shape {mask.shape} differs from input_ids shape {shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("attention_mask must contain only 0 and 1")
    if (mask.sum(axis=1) == 0).any():
        raise ValueError("attention_mask has a row with no real token")
    # Left padding means each row is non-decreasing: zeros, then ones.
    if (np.diff(mask, axis=1) < 0).any():
        raise ValueError("attention_mask must be left-padded (each row: zeros, then ones)")


def _check_args(vocab, decode_strategy, max_new_tokens, top_k, top_p, temperature,
                repetition_penalty, min_length, eos_token_id, pad_token_id, num_return_sequences):
    if decode_strategy not in DECODE_STRATEGIES:
        raise ValueError(f"decode_strategy must be one of {DECODE_STRATEGIES}, got {decode_strategy!r}")
    if not _is_int(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if not _is_int(num_return_sequences) or num_return_sequences < 1:
        raise ValueError(f"num_return_sequences must be an int >= 1, got {num_return_sequences!r}")
    if not _is_int(top_k) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if decode_strategy == "sampling" and not (0.0 < temperature < np.inf):
        raise ValueError(f"temperature must be > 0 for sampling, got {temperature!r}")
    if not 0.0 < repetition_penalty < np.inf:
        raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty!r}")
    if not _is_int(min_length) or min_length < 0:
        raise ValueError(f"min_length must be an int >= 0, got {min_length!r}")
    for name, tok in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
        if tok is not None and (not _is_int(tok) or not 0 <= tok < vocab):
            raise ValueError(f"{name} must be None or an int in [0, {vocab}), got {tok!r}")


def generate(model, input_ids, attention_mask=None, max_new_tokens: int = 20,
             decode_strategy: str = "greedy_search", top_k: int = 0, top_p: float = 1.0,
             temperature: float = 1.0, repetition_penalty: float = 1.0, min_length: int = 0,
             eos_token_id: Optional[int] = None, pad_token_id: Optional[int] = None,
             num_return_sequences: int = 1, seed: Optional[int] = None,
             min_p: float = 0.0, typical_p: float = 1.0,
             return_logprobs: bool = False) -> GenerateOutput:
    """Decode up to max_new_tokens tokens per row; see the module docstring for the order of steps."""
    config = model.config
    vocab = config.vocab_size
    _check_args(vocab, decode_strategy, max_new_tokens, top_k, top_p, temperature,
                repetition_penalty, min_length, eos_token_id, pad_token_id, num_return_sequences)
    if not 0.0 <= min_p <= 1.0:
        raise ValueError(f"min_p must be in [0, 1], got {min_p!r}")
    if not 0.0 < typical_p <= 1.0:
        raise ValueError(f"typical_p must be in (0, 1], got {typical_p!r}")
    ids = _as_numpy(input_ids, "input_ids")
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"input_ids must be in [0, {vocab}), got values in [{ids.min()}, {ids.max()}]")
    if attention_mask is None:
        mask = np.ones_like(ids)
    else:
        mask = _as_numpy(attention_mask, "attention_mask")
        _check_mask(mask, ids.shape)
    n_real = mask.sum(axis=1)
    if n_real.max() + max_new_tokens > config.n_positions:
        raise ValueError(
            f"longest prompt ({n_real.max()} real tokens) + max_new_tokens ({max_new_tokens}) "
            f"exceeds n_positions ({config.n_positions})"
        )
    if pad_token_id is None:
        pad_token_id = eos_token_id
    fill_id = 0 if pad_token_id is None else pad_token_id

    R = num_return_sequences
    ids, mask, n_real = np.repeat(ids, R, 0), np.repeat(mask, R, 0), np.repeat(n_real, R)
    n = ids.shape[0]
    rows = np.arange(n)

    # Distinct tokens seen per row (real prompt tokens, then generated ones) for the penalty.
    seen = np.zeros((n, vocab), dtype=bool)
    seen[np.nonzero(mask)[0], ids[mask == 1]] = True

    rngs = None
    if decode_strategy == "sampling":
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (1 << 63))
        rngs = [np.random.default_rng([seed, r]) for r in range(n)]

    out_ids = np.full((n, max_new_tokens), fill_id, dtype=np.int64)
    out_logprobs = np.zeros((n, max_new_tokens), dtype=np.float32)
    lengths = np.zeros(n, dtype=np.int64)
    finished = np.zeros(n, dtype=bool)

    # Pad slots get position 0 (any valid one would do: they are never attended to).
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    key_bias = np.where(mask == 1, 0.0, MASK_VALUE).astype(np.float32)[:, None, None, :]
    steps = 0
    with paddle.no_grad():
        logits, cache = model(ids, positions, key_bias)
        last = logits[:, -1, :].numpy()
        for step in range(max_new_tokens):
            scores = last.astype(np.float32, copy=True)
            if repetition_penalty != 1.0:
                pen = np.float32(repetition_penalty)
                penalized = np.where(scores < 0, scores * pen, scores / pen)
                scores = np.where(seen, penalized, scores)
            if eos_token_id is not None and step < min_length:
                scores[:, eos_token_id] = -np.inf

            if decode_strategy == "greedy_search":
                tokens = scores.argmax(axis=1)
                logprobs = _log_softmax(scores)[rows, tokens]
            else:
                probs = _sampling_probs(scores, top_k, top_p, temperature, min_p, typical_p)
                tokens = np.array([_draw(rng, p) for rng, p in zip(rngs, probs)], dtype=np.int64)
                with np.errstate(divide="ignore"):
                    logprobs = np.log(probs[rows, tokens])

            active = ~finished
            out_ids[active, step] = tokens[active]
            out_logprobs[active, step] = logprobs[active]
            lengths[active] += 1
            seen[rows[active], tokens[active]] = True
            if eos_token_id is not None:
                finished |= active & (tokens == eos_token_id)
            steps = step + 1
            if finished.all() or steps == max_new_tokens:
                break

            feed = out_ids[:, step:step + 1]
            pos = (n_real + step)[:, None]
            key_bias = np.concatenate([key_bias, np.zeros((n, 1, 1, 1), np.float32)], axis=-1)
            logits, cache = model(feed, pos, key_bias, cache)
            last = logits[:, -1, :].numpy()

    return GenerateOutput(
        ids=out_ids[:, :steps],
        lengths=lengths,
        logprobs=out_logprobs[:, :steps] if return_logprobs else None,
    )
