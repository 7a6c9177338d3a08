"""min_p and typical_p: the engine's own candidate set and probabilities (its C++
logits processing, through `_engine.sampling_distribution`) equal transformers'
warper chain (Temperature -> TopK -> TopP -> MinP -> Typical) on the same logits,
and the project's reference; every front end takes both settings."""
import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList, MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper,
    TopPLogitsWarper, TypicalLogitsWarper)

from fastergpt.ops import engine_module
from fastergpt.reference import sampling_distribution
from helpers import front_ends, tiny_model


def hf_distribution(logits: np.ndarray, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                    typical_p=1.0) -> np.ndarray:
    """transformers' processors in generate()'s order, then softmax."""
    chain = LogitsProcessorList()
    if temperature != 1.0:
        chain.append(TemperatureLogitsWarper(temperature))
    if top_k:
        chain.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        chain.append(TopPLogitsWarper(top_p))
    if min_p > 0.0:
        chain.append(MinPLogitsWarper(min_p))
    if typical_p < 1.0:
        chain.append(TypicalLogitsWarper(typical_p))
    scores = chain(torch.zeros((logits.shape[0], 1), dtype=torch.long), torch.tensor(logits))
    return torch.softmax(scores.double(), dim=-1).numpy()


CASES = [
    dict(min_p=0.1),
    dict(min_p=0.5, temperature=0.7),
    dict(min_p=1.0),
    dict(typical_p=0.2),
    dict(typical_p=0.9, temperature=1.5),
    dict(typical_p=0.5, top_k=40),
    dict(top_p=0.8, min_p=0.05, typical_p=0.7),
    dict(top_k=10, top_p=0.9, min_p=0.02, typical_p=0.95, temperature=0.8),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_engine_filters_equal_transformers_warpers(case, scale):
    rng = np.random.default_rng(int(scale * 10) + len(case))
    logits = (rng.standard_normal((16, 1000)) * scale).astype(np.float32)
    settings = {k: float(v) for k, v in case.items()}
    settings["decode_strategy"] = 1.0
    got = engine_module().sampling_distribution(logits, settings)
    want = hf_distribution(logits, **case)
    # Same candidate set, same probabilities.
    np.testing.assert_array_equal(got > 0, want > 0)
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-4)
    np.testing.assert_allclose(sampling_distribution(logits, **case), want, atol=2e-6, rtol=1e-4)
    # The filters do something on these logits (the test can fail).
    plain = {k: v for k, v in case.items() if k not in ("min_p", "typical_p")}
    assert (hf_distribution(logits, **plain) > 0).sum() > (want > 0).sum()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=4)


def test_every_front_end_takes_them_and_agrees(model):
    ids = np.array([[0, 3, 4, 5], [7, 8, 9, 10]])
    mask = np.array([[0, 1, 1, 1], [1, 1, 1, 1]])
    kw = dict(max_new_tokens=12, decode_strategy="sampling", min_p=0.05, typical_p=0.8, seed=5,
              num_return_sequences=3)
    outs = {name: run(ids, mask, **kw)["ids"] for name, run in front_ends(model)}
    np.testing.assert_array_equal(outs["FasterGPT"], outs["Engine"])
    plain = dict(front_ends(model))["Engine"](ids, mask, **dict(kw, min_p=0.0, typical_p=1.0))
    assert not np.array_equal(plain["ids"], outs["Engine"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_p=-0.1), r"min_p must be in \[0, 1\], got -0.1"),
    (dict(min_p=1.5), r"min_p must be in \[0, 1\], got 1.5"),
    (dict(typical_p=0.0), r"typical_p must be in \(0, 1\], got 0"),
    (dict(typical_p=float("nan")), r"typical_p must be in \(0, 1\], got nan"),
])
def test_bad_values_are_named(model, kwargs, match):
    for _, run in front_ends(model):
        with pytest.raises(ValueError, match=match):
            run(np.array([[1, 2]]), max_new_tokens=2, decode_strategy="sampling", **kwargs)
