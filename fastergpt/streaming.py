"""Tokens as they are made: `Engine.generate_stream` and `FasterGPT.generate_stream`.

Each step yields a `StreamStep`: for every row (B*R of them, prompt b's copies at
b*R .. b*R+R-1), the token it chose in this step (-1 when it had already finished),
its log-probability and, given a tokenizer, its text delta. Text deltas never split
a multi-byte UTF-8 character (a token that ends inside one is held back until the
character is complete), and a row's deltas joined equal the decoded text of all its
tokens. A row also ends at any of several end tokens (`end_token_ids`) or at a stop
string (`stop`, matched on the decoded text across token boundaries; the stop string
itself is not returned), and then leaves the batch before the next step. The steps run in C++ (csrc/core/generation_stream.h) with the GIL released;
the tokens are those `generate` gives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from fastergpt.stops import cut_at_stop

REPLACEMENT = "\ufffd"  # what decoding gives for an incomplete UTF-8 sequence


@dataclass
class StreamStep:
    tokens: np.ndarray       # int64 [rows]: this step's token of each row, -1 if it had finished
    logprobs: np.ndarray     # float32 [rows]
    finished: np.ndarray     # bool [rows]: the row ended (end token, stop, max_new_tokens) by now
    texts: Optional[list] = field(default=None)  # str per row: its new text ("" if none yet)


class TextDeltas:
    """Per row: the text its tokens add, cut only between whole characters, and cut
    before the first stop string (which is not returned); text that may still become
    the start of a stop string is held back until it cannot."""

    def __init__(self, tokenizer, rows: int, stops=()):
        self.tokenizer = tokenizer
        self.stops = [s for s in stops if s]
        self.ids = [[] for _ in range(rows)]
        self.sent = [""] * rows

    def push(self, row: int, token: int, final: bool = False) -> tuple:
        """(delta, stopped): the new text of `row` after `token` (-1: none), and whether
        it reached a stop string."""
        if token >= 0:
            self.ids[row].append(int(token))
        full = self.tokenizer.decode(self.ids[row])
        text = cut_at_stop(full, self.stops)
        stopped = len(text) < len(full)
        if not stopped and not final:
            # Hold back a trailing incomplete character (decoded as U+FFFD so far) and a
            # tail that could still grow into a stop string.
            text = text.rstrip(REPLACEMENT)
            text = text[:len(text) - _stop_prefix_length(text, self.stops)]
        if not text.startswith(self.sent[row]):
            return "", stopped  # an earlier character still changes: wait for it to settle
        delta = text[len(self.sent[row]):]
        self.sent[row] += delta
        return delta, stopped


def _stop_prefix_length(text: str, stops) -> int:
    """The longest suffix of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def stream_steps(stream, rows: int, end_tokens, tokenizer=None, stops=(),
                 max_new_tokens: int = 0) -> Iterator[StreamStep]:
    """Drives a native stream (fastergpt._engine.Stream) to its end. `end_tokens`: ids
    that end a row (the engine's eos_token_id among them); `stops`: strings that end a
    row (needs the tokenizer). A row ended here leaves the engine's batch at once."""
    if stops and tokenizer is None:
        raise ValueError("stop strings need a tokenizer to match the text")
    ends = np.array(sorted(set(int(t) for t in end_tokens if int(t) >= 0)), dtype=np.int64)
    deltas = TextDeltas(tokenizer, rows, stops) if tokenizer is not None else None
    finished = np.zeros(rows, dtype=bool)
    made = np.zeros(rows, dtype=np.int64)
    while True:
        out = stream.next()
        if out is None:
            break
        tokens, logprobs = out
        new = tokens >= 0
        made += new
        ended = new & np.isin(tokens, ends)
        if max_new_tokens > 0:
            ended |= new & (made >= max_new_tokens)  # its last token
        texts = None
        if deltas is not None:
            texts = []
            for r, t in enumerate(tokens.tolist()):
                if t < 0 or finished[r]:
                    texts.append("")
                    continue
                delta, stopped = deltas.push(r, t, final=bool(ended[r]))
                texts.append(delta)
                ended[r] |= stopped
        for r in np.flatnonzero(ended & ~finished):
            stream.finish(int(r))  # a stop string or an extra end token: leave the batch now
        finished |= ended
        yield StreamStep(tokens, logprobs, finished.copy(), texts)
    if deltas is not None:  # text still held back at the end (an invalid tail, a stop prefix)
        tail = ["" if finished[r] else deltas.push(r, -1, final=True)[0] for r in range(rows)]
        if any(tail):
            yield StreamStep(np.full(rows, -1, np.int64), np.zeros(rows, np.float32),
                             np.ones(rows, dtype=bool), tail)
