"""Tokens as they are made: `Engine.generate_stream` and `FasterGPT.generate_stream`.

Each step yields a `StreamStep`: for every row (B*R of them, prompt b's copies at
b*R .. b*R+R-1), the token it chose in this step (-1 when it had already finished),
its log-probability and, given a tokenizer, its text delta. Text deltas never split
a multi-byte UTF-8 character (a token that ends inside one is held back until the
character is complete), and a row's deltas joined equal the decoded text of all its
tokens. The steps run in C++ (csrc/core/generation_stream.h) with the GIL released;
the tokens are those `generate` gives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

REPLACEMENT = "\ufffd"  # what decoding gives for an incomplete UTF-8 sequence


@dataclass
class StreamStep:
    tokens: np.ndarray       # int64 [rows]: this step's token of each row, -1 if it had finished
    logprobs: np.ndarray     # float32 [rows]
    finished: np.ndarray     # bool [rows]: the row ended in this step or before
    texts: Optional[list] = field(default=None)  # str per row: its new text ("" if none yet)


class TextDeltas:
    """Per row: the text its tokens add, cut only between whole characters."""

    def __init__(self, tokenizer, rows: int):
        self.tokenizer = tokenizer
        self.ids = [[] for _ in range(rows)]
        self.sent = [""] * rows

    def push(self, row: int, token: int, final: bool = False) -> str:
        if token >= 0:
            self.ids[row].append(int(token))
        text = self.tokenizer.decode(self.ids[row])
        if not final:
            # Hold back a trailing incomplete character (decoded as U+FFFD so far).
            text = text.rstrip(REPLACEMENT)
            if not text.startswith(self.sent[row]):
                return ""  # an earlier character still changes: wait for it to settle
        delta = text[len(self.sent[row]):] if text.startswith(self.sent[row]) else ""
        self.sent[row] += delta
        return delta


def stream_steps(stream, rows: int, eos_token_id: int, tokenizer=None) -> Iterator[StreamStep]:
    """Drives a native stream (fastergpt._engine.Stream) to its end."""
    deltas = TextDeltas(tokenizer, rows) if tokenizer is not None else None
    finished = np.zeros(rows, dtype=bool)
    while True:
        out = stream.next()
        if out is None:
            break
        tokens, logprobs = out
        ended = (tokens == eos_token_id) if eos_token_id >= 0 else np.zeros(rows, dtype=bool)
        finished = finished | ended
        texts = None
        if deltas is not None:
            texts = [deltas.push(r, t, final=bool(ended[r])) if t >= 0 else ""
                     for r, t in enumerate(tokens.tolist())]
        yield StreamStep(tokens, logprobs, finished.copy(), texts)
    if deltas is not None:  # the last step's held-back bytes, if any (an invalid tail)
        tail = [deltas.push(r, -1, final=True) for r in range(rows)]
        if any(tail):
            yield StreamStep(np.full(rows, -1, np.int64), np.zeros(rows, np.float32),
                             np.ones(rows, dtype=bool), tail)
