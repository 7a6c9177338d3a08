"""Stop conditions beyond the settings table, as every front end hands them to the engine.

- `end_token_ids`: ids that end a row besides eos_token_id;
- `stop`: strings that end a row, matched by the engine on the bytes the generated
  tokens spell (the tokenizer's vocabulary as bytes, `Tokenizer.vocabulary_bytes`),
  across token boundaries (csrc/core/stop_conditions.h). The ids keep the token that
  completed the stop string, as transformers' `stop_strings`; the texts front ends
  decode are cut before it (`cut_at_stop`): the stop string is not returned.

The operator and an exported graph take them as tensors (`end_ids_array`,
`stop_strings_array`); "none" is [-1] and [[-1]], since Paddle Inference feeds no
zero-size tensors.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import numpy as np

from fastergpt.tokenizer import check_unicode

StopArg = Union[None, str, Sequence[str]]


def normalize_stops(stop: StopArg) -> list:
    """A stop argument as a list of strings (one string is one stop), checked."""
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, (list, tuple)):
        raise ValueError(f"stop: expected a string or a list of strings, got {type(stop).__name__}")
    for i, s in enumerate(stop):
        if not isinstance(s, str):
            raise ValueError(f"stop: item {i} is a {type(s).__name__}, not a string")
        if not s:
            raise ValueError(f"stop: string {i} is empty")
        check_unicode(s, f"stop: string {i}")  # (a lone surrogate has no bytes to match)
    return list(stop)


def normalize_end_ids(end_token_ids: Optional[Iterable]) -> list:
    if end_token_ids is None:
        return []
    if isinstance(end_token_ids, (int, np.integer)) and not isinstance(end_token_ids, bool):
        end_token_ids = [end_token_ids]
    out = []
    for t in end_token_ids:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)):
            raise ValueError(f"end_token_ids: {t!r} is not an integer id")
        if t < 0:  # the operator reads -1 as "no id": refused here, as the engine does
            raise ValueError(f"end_token_ids: {int(t)} is outside the vocabulary (ids are >= 0)")
        if t >= 2**63:  # (the engine checks the vocabulary; this would not reach it)
            raise ValueError(f"end_token_ids: {int(t)} is outside the vocabulary (too large for an id)")
        out.append(int(t))
    return out


def end_ids_array(end_token_ids) -> np.ndarray:
    """int64 [K] for the operator; [-1] when there are none."""
    ids = normalize_end_ids(end_token_ids)
    return np.array(ids or [-1], dtype=np.int64)


def stop_strings_array(stop: StopArg) -> np.ndarray:
    """int32 [S, N]: each stop string's UTF-8 bytes, -1 after its end; [[-1]] for none."""
    encoded = [s.encode("utf-8") for s in normalize_stops(stop)]
    if not encoded:
        return np.full((1, 1), -1, dtype=np.int32)
    out = np.full((len(encoded), max(len(b) for b in encoded)), -1, dtype=np.int32)
    for i, b in enumerate(encoded):
        out[i, :len(b)] = np.frombuffer(b, dtype=np.uint8)
    return out


def vocabulary_of(tokenizer, vocab_size: int) -> tuple:
    """(vocab_bytes, vocab_offsets, why_none) for the operator: the tokenizer's
    vocabulary as bytes, or an empty one (and the reason) when there is none to have
    (no tokenizer, one fastergpt cannot spell, or one larger than the model's
    `vocab_size`)."""
    from fastergpt.tokenizer import TokenizerError

    empty = np.zeros(1, dtype=np.uint8), np.zeros(1, dtype=np.int64)
    if tokenizer is None:
        return (*empty, "the model was loaded without a tokenizer; load it from a directory "
                        "with its tokenizer files, or call set_tokenizer(tokenizer)")
    if tokenizer.vocab_size > vocab_size:
        return (*empty, f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                        f"{vocab_size}")
    try:
        return (*tokenizer.vocabulary_bytes(), None)
    except TokenizerError as e:
        return (*empty, str(e))


def need_vocabulary(stop: StopArg, why_none: Optional[str]) -> None:
    """Refuses stop strings when the engine has no vocabulary to match them on."""
    if normalize_stops(stop) and why_none:
        raise ValueError(f"stop strings need the tokenizer's vocabulary: {why_none}")


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to (not including) the first occurrence of any stop string."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return text[:min(hits)] if hits else text
