"""Perplexity as an API and a CLI, for every weight format of the shipped model."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastergpt import Engine
from fastergpt.evaluation import load_default_model, perplexity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Text the model has not been trained on: this file's own docstrings and code.
TEXT = open(os.path.join(ROOT, "fastergpt", "evaluation.py"), encoding="utf-8").read()[:12000]


@pytest.fixture(scope="module")
def token_ids():
    _, tok, config = load_default_model("float16")
    return np.array([config.eos_token_id] + tok.encode(TEXT).ids)


@pytest.fixture(scope="module")
def reference_ppl(token_ids):
    model, _, _ = load_default_model("float16")
    return perplexity(model, token_ids)


def test_engine_scores_like_the_reference(token_ids, reference_ppl):
    got = perplexity(Engine.from_pretrained("default", "float32"), token_ids)
    assert got == pytest.approx(reference_ppl, rel=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_compressed_weights_stay_within_3_percent(token_ids, reference_ppl, dtype):
    got = perplexity(Engine.from_pretrained("default", dtype), token_ids)
    print(f"{dtype}: perplexity {got:.3f} vs float32 {reference_ppl:.3f}")
    assert abs(got / reference_ppl - 1) < 0.03


def test_cli(tmp_path):
    f = tmp_path / "text.txt"
    f.write_text(TEXT[:3000], encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "fastergpt", "perplexity", str(f), "--dtype", "int8",
                           "--block_size", "128", "--stride", "64"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "perplexity" in proc.stdout and "int8 weights" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "fastergpt", "perplexity", str(tmp_path / "missing.txt")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "missing.txt" in bad.stderr


def test_token_scores_are_the_perplexitys_numbers(token_ids):
    """token_scores gives one NLL and one argmax per scored token, in order; their mean is
    negative_log_likelihood's, and each argmax is the engine's greedy choice there."""
    from fastergpt.evaluation import negative_log_likelihood, token_scores

    engine = Engine.from_pretrained("default", "float32")
    ids = np.asarray(token_ids)[:300]
    nll, top = token_scores(engine, ids, block_size=128, stride=64)
    assert nll.shape == top.shape == (ids.size - 1,)
    mean, count = negative_log_likelihood(engine, ids, block_size=128, stride=64)
    assert count == nll.size and abs(mean - nll.mean()) < 1e-12
    # the first window scores targets 1..128 from tokens 0..127: its argmax is the logits'
    np.testing.assert_array_equal(top[:128], engine.logits(ids[None, :128]).argmax(-1)[0])


def test_quant_agreement_benchmark(tmp_path):
    """benchmarks/bench_quant_agreement.py runs end to end (quantizing with round-to-
    nearest) and its numbers are shares and prefixes that fit its settings: float32
    against itself agrees everywhere."""
    import json

    out = tmp_path / "agreement.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_quant_agreement.py"),
                           "--formats", "float32,int4-rtn", "--prompts", "3", "--new-tokens", "6",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| int4-rtn | " in proc.stdout and "CPU " in proc.stdout
    result = json.loads(out.read_text())
    same, rtn = result["rows"]
    assert result["prompts"] == 3 and result["new_tokens"] == 6
    assert (same["agreement"], same["mean_identical_prefix"], same["identical_outputs"]) == (1.0, 6.0, 1.0)
    assert 0.5 <= rtn["agreement"] <= 1.0 and 0.0 <= rtn["mean_identical_prefix"] <= 6.0
