"""End tokens: rows stop at eos, finished rows hold pad, the call returns when every row is done."""

import dataclasses

import numpy as np
import pytest

from fastergpt.reference import generate
from helpers import front_ends, padded_batch, tiny_model

PROMPTS4 = [[7, 3, 9, 12, 1, 40], [5, 22, 8], [30], [2, 2, 41, 17]]
MAX_NEW = 16


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=13)


@pytest.fixture(scope="module")
def runs(model):
    return front_ends(model)


@pytest.fixture(scope="module")
def free(model):
    """Greedy continuations without any end token."""
    ids, mask = padded_batch(PROMPTS4)
    return generate(model, ids, mask, max_new_tokens=MAX_NEW).ids


def first_hits(free_ids, token):
    """Per row: index of the first occurrence of token, or None."""
    return [int(np.argmax(row == token)) if (row == token).any() else None for row in free_ids]


def expected_rows(free_ids, eos, pad):
    """What each row must hold with eos_token_id=eos: the free prefix up to eos, then pad."""
    hits = first_hits(free_ids, eos)
    lengths = np.array([MAX_NEW if h is None else h + 1 for h in hits])
    T = lengths.max()
    ids = np.full((len(free_ids), T), pad, dtype=np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = free_ids[b, :n]
    return ids, lengths


def check_stop(runs, model, free_ids, eos, pad_arg, pad_value, **extra):
    ids, mask = padded_batch(PROMPTS4)
    want_ids, want_lengths = expected_rows(free_ids, eos, pad_value)
    ref = generate(model, ids, mask, max_new_tokens=MAX_NEW, eos_token_id=eos,
                   pad_token_id=pad_arg, return_logprobs=True, **extra)
    np.testing.assert_array_equal(ref.ids, want_ids)  # the oracle agrees with the construction
    for name, run in runs:
        out = run(ids, mask, max_new_tokens=MAX_NEW, eos_token_id=eos, pad_token_id=pad_arg,
                  **extra)
        np.testing.assert_array_equal(out["lengths"], want_lengths, err_msg=name)
        np.testing.assert_array_equal(out["ids"], want_ids, err_msg=name)
        after = np.arange(want_ids.shape[1])[None, :] >= want_lengths[:, None]
        assert (out["logprobs"][after] == 0).all(), name
        assert np.isfinite(out["logprobs"]).all(), name
    return want_lengths


def test_eos_row_stops_and_pads(model, runs, free):
    # An eos that some row emits early while another row never emits it.
    candidates = [t for t in range(model.config.vocab_size)
                  if (hits := first_hits(free, t)).count(None) >= 1
                  and any(h is not None and h < MAX_NEW - 3 for h in hits)]
    assert candidates, "construction failed: pick another model seed"
    eos = candidates[0]
    lengths = check_stop(runs, model, free, eos, pad_arg=50, pad_value=50)
    assert lengths.max() == MAX_NEW and lengths.min() < MAX_NEW - 2


def test_call_returns_when_every_row_has_stopped(model, runs, free):
    # An eos that every row emits, at different steps, all well before MAX_NEW.
    best = None
    for t in range(model.config.vocab_size):
        hits = first_hits(free, t)
        if None in hits or max(hits) >= MAX_NEW - 2:
            continue
        key = (len(set(hits)), -max(hits))
        if best is None or key > best[0]:
            best = (key, t)
    assert best is not None and best[0][0] >= 2, "construction failed: pick another model seed"
    eos = best[1]
    lengths = check_stop(runs, model, free, eos, pad_arg=0, pad_value=0)
    assert len(set(lengths.tolist())) >= 2 and lengths.max() < MAX_NEW - 1
    # T is exactly the longest row, not max_new_tokens (check_stop compared the shapes).


def test_pad_defaults_to_eos(model, runs, free):
    hits_by_token = {t: first_hits(free, t) for t in range(model.config.vocab_size)}
    # Prefer an eos that stops one row early and leaves another running, so pad shows up.
    eos = next(t for t, h in hits_by_token.items()
               if h.count(None) >= 1 and any(x is not None and x < MAX_NEW - 3 for x in h))
    check_stop(runs, model, free, eos, pad_arg=None, pad_value=eos)


def test_eos_as_first_token_stops_at_once(model, runs, free):
    ids, mask = padded_batch(PROMPTS4)
    eos = int(free[0, 0])
    for name, run in runs:
        out = run(ids[:1], mask[:1], max_new_tokens=MAX_NEW, eos_token_id=eos)
        assert out["ids"].tolist() == [[eos]] and out["lengths"].tolist() == [1], name
        # With return sequences every copy stops at once too.
        out = run(ids[:1], mask[:1], max_new_tokens=MAX_NEW, eos_token_id=eos,
                  num_return_sequences=3)
        assert out["ids"].shape == (3, 1) and (out["lengths"] == 1).all(), name


def test_eos_and_pad_default_to_the_config(model, free):
    eos = int(free[0, 2])
    config = dataclasses.replace(model.config, eos_token_id=eos, pad_token_id=1)
    model = tiny_model(config, seed=13)  # the same weights, with eos and pad in the config
    ids, mask = padded_batch(PROMPTS4)
    want_ids, want_lengths = expected_rows(free, eos, 1)
    for name, run in front_ends(model):
        out = run(ids, mask, max_new_tokens=MAX_NEW)
        np.testing.assert_array_equal(out["ids"], want_ids, err_msg=name)
        np.testing.assert_array_equal(out["lengths"], want_lengths, err_msg=name)


def test_sampled_rows_stop_at_eos(model, runs):
    ids, mask = padded_batch(PROMPTS4)
    kw = dict(max_new_tokens=MAX_NEW, decode_strategy="sampling", temperature=1.5,
              num_return_sequences=4, seed=3)
    free_out = runs[0][1](ids, mask, **kw)["ids"]
    # The token sampled most often becomes eos; same seed => same draws up to each row's eos.
    values, counts = np.unique(free_out, return_counts=True)
    eos = int(values[np.argmax(counts)])
    for name, run in runs:
        out = run(ids, mask, eos_token_id=eos, pad_token_id=52, **kw)
        for r, row in enumerate(free_out):
            hits = np.nonzero(row == eos)[0]
            n = hits[0] + 1 if len(hits) else MAX_NEW
            assert out["lengths"][r] == n, name
            np.testing.assert_array_equal(out["ids"][r, :n], row[:n], err_msg=name)
            assert (out["ids"][r, n:] == 52).all() and (out["logprobs"][r, n:] == 0).all(), name
        assert out["ids"].shape[1] == out["lengths"].max(), name
    assert (out["lengths"] < MAX_NEW).any()
