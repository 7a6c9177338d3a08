"""Greedy parity: FasterGPT and Engine against the Paddle reference (and HF transformers).

Every case checks the generated ids token for token, the lengths, and the
per-step log-probabilities (within 1e-4) of both front ends.
"""

import numpy as np
import pytest

from fastergpt.reference import generate
from helpers import PROMPTS, front_ends, hf_greedy, hf_model, padded_batch, tiny_config, tiny_model

LOGPROB_ATOL = 1e-4


def random_prompts(vocab, lengths, seed):
    """Prompts of the given lengths with ids over the whole vocabulary (its last id included)."""
    rng = np.random.RandomState(seed)
    prompts = [list(rng.randint(0, vocab, size=n)) for n in lengths]
    prompts[0][-1] = vocab - 1
    return [[int(t) for t in p] for p in prompts]


# (n_head, head_size, vocab, n_layer, activation, tied, n_inner, prompt lengths, max_new_tokens)
CASES = [
    (2, 16, 53, 1, "gelu_new", True, None, [6, 3, 1], 8),
    (4, 16, 101, 2, "gelu", False, None, [1], 10),
    (1, 16, 257, 3, "gelu_new", False, None, [4, 4], 6),
    (3, 16, 53, 4, "gelu", True, 70, [2, 7, 5, 1], 5),
    (1, 32, 257, 1, "gelu_new", False, None, [6, 3, 1], 6),
    (2, 32, 53, 4, "gelu", True, None, [5, 1], 12),
    (3, 32, 101, 2, "gelu_new", True, None, [1, 1, 1], 1),
    (2, 32, 101, 3, "gelu", False, 50, [3, 8], 7),
    (1, 64, 101, 2, "gelu_new", True, None, [6, 3, 1], 5),
    (2, 64, 53, 1, "gelu", False, None, [9], 1),
    (1, 64, 257, 4, "gelu", True, None, [2, 5, 3, 6], 4),
    (2, 64, 101, 2, "gelu_new", False, 200, [1, 4], 6),
    (1, 80, 257, 2, "gelu", True, None, [6, 3, 1], 6),
    (2, 80, 101, 1, "gelu_new", False, None, [3], 9),
    (1, 80, 53, 3, "gelu_new", True, None, [1, 7], 1),
    (3, 80, 257, 1, "gelu", False, 300, [4, 2, 6], 5),
]


def _case_id(case):
    h, hs, v, l, act, tie, inner, lens, mnt = case
    return (f"h{h}x{hs}-V{v}-L{l}-{act}-{'tied' if tie else 'untied'}"
            f"{'' if inner is None else f'-inner{inner}'}-p{'.'.join(map(str, lens))}-n{mnt}")


def check_parity(model, ids, mask, **kwargs):
    ref = generate(model, ids, mask, return_logprobs=True, **kwargs)
    for name, run in front_ends(model):
        out = run(ids, mask, **kwargs)
        np.testing.assert_array_equal(out["ids"], ref.ids, err_msg=f"{name}: ids")
        np.testing.assert_array_equal(out["lengths"], ref.lengths, err_msg=f"{name}: lengths")
        assert out["ids"].dtype == np.int64 and out["lengths"].dtype == np.int64, name
        assert out["logprobs"].shape == ref.logprobs.shape, name
        valid = np.arange(ref.ids.shape[1])[None, :] < ref.lengths[:, None]
        np.testing.assert_allclose(out["logprobs"][valid], ref.logprobs[valid],
                                   atol=LOGPROB_ATOL, rtol=0, err_msg=f"{name}: logprobs")
    return ref


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_greedy_matches_reference(case):
    n_head, head_size, vocab, n_layer, act, tie, n_inner, lengths, max_new_tokens = case
    config = tiny_config(vocab_size=vocab, n_positions=32, n_embd=n_head * head_size,
                         n_layer=n_layer, n_head=n_head, n_inner=n_inner,
                         activation_function=act, tie_word_embeddings=tie)
    model = tiny_model(config, seed=sum(lengths) + vocab + n_layer)
    ids, mask = padded_batch(random_prompts(vocab, lengths, seed=len(lengths) + head_size))
    ref = check_parity(model, ids, mask, max_new_tokens=max_new_tokens)
    assert ref.ids.shape == (len(lengths), max_new_tokens)


def test_greedy_without_mask_and_with_extra_padding():
    model = tiny_model(seed=4)
    ids, mask = padded_batch(PROMPTS, extra_pad=3)
    assert (mask[:, :3] == 0).all()
    ref = check_parity(model, ids, mask, max_new_tokens=7)
    # A prompt alone (no mask at all) gives the same row as in the padded batch.
    for b, prompt in enumerate(PROMPTS):
        for name, run in front_ends(model):
            alone = run(np.array([prompt]), max_new_tokens=7)
            np.testing.assert_array_equal(alone["ids"][0], ref.ids[b], err_msg=name)


def test_greedy_fills_every_position():
    # Longest prompt + max_new_tokens == n_positions: the last position is used.
    model = tiny_model(tiny_config(n_positions=16), seed=5)
    ids, mask = padded_batch([[3, 1, 4, 1, 5, 9], [2, 6]])
    check_parity(model, ids, mask, max_new_tokens=10)


def test_greedy_num_return_sequences_repeats_rows():
    model = tiny_model(seed=6)
    ids, mask = padded_batch(PROMPTS)
    ref = check_parity(model, ids, mask, max_new_tokens=5, num_return_sequences=2)
    np.testing.assert_array_equal(ref.ids[0::2], ref.ids[1::2])


@pytest.mark.parametrize("tie, act", [(True, "gelu_new"), (False, "gelu")])
def test_greedy_matches_hf(tie, act):
    model = tiny_model(seed=7, tie_word_embeddings=tie, activation_function=act)
    hf = hf_model(model)
    ids, mask = padded_batch(PROMPTS)
    expected = hf_greedy(hf, ids, mask, max_new_tokens=10, pad_token_id=0)
    for name, run in front_ends(model):
        out = run(ids, mask, max_new_tokens=10)
        np.testing.assert_array_equal(out["ids"], expected, err_msg=name)


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_greedy_matches_hf_with_penalty_and_min_length(penalty):
    model = tiny_model(seed=8)
    hf = hf_model(model)
    ids, mask = padded_batch(PROMPTS)
    free = generate(model, ids, mask, max_new_tokens=12, repetition_penalty=penalty)
    # An eos that row 0 would emit at step 1, so min_length=3 must hold it back.
    eos = int(free.ids[0, 1])
    kwargs = dict(repetition_penalty=penalty, eos_token_id=eos, pad_token_id=0)
    expected = hf_greedy(hf, ids, mask, max_new_tokens=12, min_new_tokens=3, **kwargs)
    for name, run in front_ends(model):
        out = run(ids, mask, max_new_tokens=12, min_length=3, **kwargs)
        np.testing.assert_array_equal(out["ids"], expected, err_msg=name)
        assert (out["ids"][:, :3] != eos).all(), name
        assert (out["lengths"] >= 3).all(), name
