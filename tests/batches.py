"""Padded prompt batches for the tests (no Paddle, no torch: imported everywhere)."""
import numpy as np


def padded_batch(prompts, extra_pad=0):
    """Left-pad prompts to one width; pad slots repeat the row's first real token.

    Repeating a token the row already holds keeps HF's repetition penalty (which
    also penalises the ids in padded slots) equal to ours.
    """
    width = max(map(len, prompts)) + extra_pad
    ids = np.array([[p[0]] * (width - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    return ids, mask


def run_batch(batch, rows):
    """Steps a continuous batch until no row runs: {row: [its tokens]} for `rows`."""
    got = {r: [] for r in rows}
    while batch.running:
        tokens = batch.step()[0]
        for r in got:
            if tokens[r] >= 0:
                got[r].append(int(tokens[r]))
    return got


def check_batch_wide_setting(engine, name, value, other):
    """A setting every row of a continuous batch shares (`name` = `value`): each sequence
    gets what it gets alone with it, and a join asking for `other` is refused by name
    without taking a row."""
    import pytest

    batch = engine.batch(capacity=3, **{name: value})
    prompts = [[5, 9, 14], [40, 41, 42, 43, 44], [7]]
    rows = {batch.join(p, max_new_tokens=6, eos_token_id=-1): p for p in prompts}
    got = run_batch(batch, rows)
    for r, p in rows.items():
        batch.release(r)
        alone = engine.generate(np.array([p]), max_new_tokens=6, eos_token_id=-1, **{name: value})
        assert got[r] == list(alone["ids"][0])
    with pytest.raises(ValueError, match=rf"join: {name} must be the batch's \({value}\), "
                                         rf"got {other}"):
        batch.join([1, 2], max_new_tokens=2, **{name: other})
    assert batch.free_rows == 3  # the refused join took no row
