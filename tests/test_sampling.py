"""Sampling, repetition penalty and min_length of FasterGPT and Engine.

The engine draws with its own Philox streams, so sampled tokens differ from
the reference's; distributions are compared instead (chi-square on the first
sampled token of many return sequences), against sampling_distribution() of
the reference model's logits.
"""

import numpy as np
import pytest

from fastergpt.reference import generate, sampling_distribution
from helpers import PROMPTS, front_ends, padded_batch, tiny_config, tiny_model

# 99.9% quantiles of the chi-square distribution, by degrees of freedom
# (scipy.stats.chi2.ppf(0.999, df)).
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32, 8: 26.12,
            9: 27.88, 10: 29.59, 11: 31.26, 12: 32.91, 13: 34.53, 14: 36.12, 15: 37.70,
            16: 39.25}

SAMPLE_KW = dict(decode_strategy="sampling", top_k=20, top_p=0.95, temperature=1.2)


@pytest.fixture(scope="module")
def model():
    # std 0.05 on 53 tokens: a broad next-token distribution, so samples vary.
    return tiny_model(seed=3, std=0.05)


@pytest.fixture(scope="module")
def runs(model):
    return dict(front_ends(model))


# --- determinism ------------------------------------------------------------

def test_same_seed_same_output_across_runs_threads_and_front_ends(runs):
    ids, mask = padded_batch(PROMPTS)
    kw = dict(max_new_tokens=10, num_return_sequences=3, seed=1234, **SAMPLE_KW)
    results = {}
    for name, run in runs.items():
        for threads in (1, 2, 1):
            results.setdefault(name, []).append(run(ids, mask, num_threads=threads, **kw))
    first = results["FasterGPT"][0]
    assert first["ids"].shape == (9, 10)
    for name, outs in results.items():
        for out in outs:
            np.testing.assert_array_equal(out["ids"], first["ids"], err_msg=name)
            np.testing.assert_array_equal(out["lengths"], first["lengths"], err_msg=name)
            np.testing.assert_allclose(out["logprobs"], first["logprobs"], atol=1e-6, err_msg=name)
    assert np.isfinite(first["logprobs"]).all() and (first["logprobs"] <= 0).all()


def test_different_seeds_differ(runs):
    ids, mask = padded_batch(PROMPTS)
    for name, run in runs.items():
        a = run(ids, mask, max_new_tokens=10, seed=1, **SAMPLE_KW)["ids"]
        b = run(ids, mask, max_new_tokens=10, seed=2, **SAMPLE_KW)["ids"]
        assert a.shape == b.shape
        assert not np.array_equal(a, b), name
        # Nearly every row should change, not just one.
        assert sum(not np.array_equal(x, y) for x, y in zip(a, b)) >= 2, name


def test_return_sequences_differ_from_each_other(runs):
    ids, mask = padded_batch(PROMPTS)
    R = 4
    for name, run in runs.items():
        out = run(ids, mask, max_new_tokens=10, num_return_sequences=R, seed=7, **SAMPLE_KW)
        assert out["ids"].shape == (len(PROMPTS) * R, 10), name
        for b in range(len(PROMPTS)):
            rows = {tuple(r) for r in out["ids"][b * R:(b + 1) * R]}
            assert len(rows) == R, f"{name}: prompt {b} has repeated return sequences"


@pytest.mark.parametrize("restrict", [dict(top_k=1), dict(top_p=1e-6),
                                      dict(top_k=1, top_p=1e-6, temperature=0.3)])
def test_degenerate_sampling_equals_greedy(model, runs, restrict):
    ids, mask = padded_batch(PROMPTS)
    greedy = generate(model, ids, mask, max_new_tokens=8, num_return_sequences=2)
    kw = dict(decode_strategy="sampling", top_k=0, top_p=1.0, temperature=1.0)
    kw.update(restrict)
    for name, run in runs.items():
        for seed in (0, 99):
            out = run(ids, mask, max_new_tokens=8, num_return_sequences=2, seed=seed, **kw)
            np.testing.assert_array_equal(out["ids"], greedy.ids, err_msg=name)
            # The only kept token has probability 1.
            np.testing.assert_allclose(out["logprobs"], 0.0, atol=1e-6, err_msg=name)


# --- distribution (chi-square) ----------------------------------------------

CHI_VOCAB = 13
CHI_PROMPT = [3, 7, 1, 7, 11]
CHI_N = 4000


@pytest.fixture(scope="module")
def chi_model():
    # std 0.3 on 13 tokens: for CHI_PROMPT the top probabilities are ~0.32/0.16/0.15/0.15/0.10,
    # then a thin tail; the most likely token (7) is in the prompt, so the penalty moves it.
    return tiny_model(tiny_config(vocab_size=CHI_VOCAB), seed=5, std=0.3)


def processed_logits(model, prompt, repetition_penalty=1.0, eos=None, min_length=0):
    """The reference's last-position logits after the penalty and min_length processors."""
    logits = model(np.array([prompt]))[0].numpy()[0, -1].astype(np.float32)
    if repetition_penalty != 1.0:
        pen = np.float32(repetition_penalty)
        seen = np.unique(prompt)
        logits[seen] = np.where(logits[seen] < 0, logits[seen] * pen, logits[seen] / pen)
    if eos is not None and min_length > 0:
        logits[eos] = -np.inf
    return logits


def chi_square(counts, probs, n):
    """Statistic and degrees of freedom; cells expecting < 5 draws are merged into one."""
    expected = probs * n
    big = expected >= 5
    obs = list(counts[big]) + ([counts[~big].sum()] if (~big).any() else [])
    exp = list(expected[big]) + ([expected[~big].sum()] if (~big).any() else [])
    obs, exp = np.array(obs, float), np.array(exp, float)
    keep = exp > 0
    stat = float(((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum())
    return stat, int(keep.sum()) - 1


CHI_SETTINGS = [
    dict(),
    dict(temperature=0.7),
    dict(top_k=3),
    dict(top_p=0.8),
    dict(top_k=6, top_p=0.9, temperature=1.4),
    dict(temperature=0.8, repetition_penalty=1.8),
    dict(top_p=0.95, min_length=1, eos="argmax"),
    dict(min_p=0.2),
    dict(typical_p=0.6, temperature=1.3),
    dict(top_k=8, min_p=0.05, typical_p=0.9),
]


def _setting_id(setting):
    return ",".join(f"{k}={v}" for k, v in setting.items()) or "plain"


@pytest.mark.parametrize("setting", CHI_SETTINGS, ids=_setting_id)
def test_first_token_distribution(chi_model, setting):
    s = dict(setting)
    top_k, top_p, temperature = s.pop("top_k", 0), s.pop("top_p", 1.0), s.pop("temperature", 1.0)
    penalty, min_length = s.pop("repetition_penalty", 1.0), s.pop("min_length", 0)
    filters = dict(min_p=s.pop("min_p", 0.0), typical_p=s.pop("typical_p", 1.0))
    eos = None
    if s.pop("eos", None) == "argmax":
        # Forbid the most likely token: min_length must take all its mass away.
        eos = int(np.argmax(processed_logits(chi_model, CHI_PROMPT)))
    logits = processed_logits(chi_model, CHI_PROMPT, penalty, eos, min_length)
    probs = sampling_distribution(logits, top_k=top_k, top_p=top_p, temperature=temperature,
                                  **filters)
    # Guard the test itself: no token sits on the top_p boundary (rounding could flip it).
    sorted_p = np.sort(sampling_distribution(logits, temperature=temperature))[::-1]
    if top_p < 1.0:
        assert np.abs(np.cumsum(sorted_p) - sorted_p - top_p).min() > 1e-3
    assert np.count_nonzero(probs) >= 3

    kw = dict(max_new_tokens=1, decode_strategy="sampling", top_k=top_k, top_p=top_p,
              temperature=temperature, repetition_penalty=penalty, min_length=min_length,
              eos_token_id=eos, num_return_sequences=CHI_N, seed=2024, **filters)
    outs = {name: run(np.array([CHI_PROMPT]), **kw) for name, run in front_ends(chi_model)}
    out = outs["FasterGPT"]
    np.testing.assert_array_equal(outs["Engine"]["ids"], out["ids"])
    tokens = out["ids"][:, 0]
    assert out["ids"].shape == (CHI_N, 1) and (out["lengths"] == 1).all()

    counts = np.bincount(tokens, minlength=CHI_VOCAB)
    assert counts[probs == 0].sum() == 0, f"drew excluded tokens: {np.nonzero(counts * (probs == 0))}"
    stat, dof = chi_square(counts, probs, CHI_N)
    assert stat < CHI2_999[dof], f"chi2={stat:.1f} (dof {dof}) counts={counts} expected={probs * CHI_N}"

    # Each draw reports the log of its probability under the processed distribution.
    for name, o in outs.items():
        np.testing.assert_allclose(o["logprobs"][:, 0], np.log(probs[o["ids"][:, 0]]),
                                   atol=1e-4, rtol=0, err_msg=name)

    # The test can fail: the unprocessed distribution is rejected when a setting changes it.
    if setting:
        plain = sampling_distribution(processed_logits(chi_model, CHI_PROMPT))
        alt_stat, alt_dof = chi_square(counts, plain, CHI_N)
        assert alt_stat > CHI2_999[alt_dof]


# --- repetition penalty and min_length (greedy) -------------------------------

@pytest.mark.parametrize("penalty", [1.3, 0.7])
@pytest.mark.parametrize("min_length", [0, 4])
def test_penalty_and_min_length_match_reference(penalty, min_length):
    model = tiny_model(seed=8)
    ids, mask = padded_batch(PROMPTS)
    free = generate(model, ids, mask, max_new_tokens=12, repetition_penalty=penalty)
    eos = int(free.ids[1, 1])  # row 1 would stop at its second token
    kw = dict(max_new_tokens=12, repetition_penalty=penalty, min_length=min_length,
              eos_token_id=eos, pad_token_id=0)
    ref = generate(model, ids, mask, return_logprobs=True, **kw)
    # The penalty changes the output (else this test would not test it).
    plain = generate(model, ids, mask, max_new_tokens=12, min_length=min_length, eos_token_id=eos)
    assert not np.array_equal(plain.ids, ref.ids)
    for name, run in front_ends(model):
        out = run(ids, mask, **kw)
        np.testing.assert_array_equal(out["ids"], ref.ids, err_msg=name)
        np.testing.assert_array_equal(out["lengths"], ref.lengths, err_msg=name)
        valid = np.arange(ref.ids.shape[1])[None, :] < ref.lengths[:, None]
        np.testing.assert_allclose(out["logprobs"][valid], ref.logprobs[valid], atol=1e-4,
                                   err_msg=name)
        if min_length:
            assert (out["ids"][:, :min_length] != eos).all(), name
            assert (out["lengths"] >= min_length).all(), name


def test_min_length_delays_an_early_eos():
    model = tiny_model(seed=9)
    prompt = np.array([[4, 17, 2]])
    first = int(generate(model, prompt, max_new_tokens=1).ids[0, 0])
    for name, run in front_ends(model):
        # Without min_length the row stops at once on its first token.
        early = run(prompt, max_new_tokens=8, eos_token_id=first)
        assert early["ids"].tolist() == [[first]] and early["lengths"].tolist() == [1], name
        late = run(prompt, max_new_tokens=8, eos_token_id=first, min_length=3)
        assert (late["ids"][0, :3] != first).all(), name
        assert late["lengths"][0] >= 3, name
        ref = generate(model, prompt, max_new_tokens=8, eos_token_id=first, min_length=3)
        np.testing.assert_array_equal(late["ids"], ref.ids, err_msg=name)
        np.testing.assert_array_equal(late["lengths"], ref.lengths, err_msg=name)
