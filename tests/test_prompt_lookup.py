"""Prompt-lookup decoding (csrc/core/prompt_lookup.h): greedy search that drafts tokens
from n-grams already in the prompt or output and checks them in one pass. Its output
must be plain greedy's token for token (and transformers' with the same setting),
with every processor and stop condition, in every front end; it is refused where it
cannot be exact (sampling, beam search, streams)."""
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fastergpt import Engine, FasterGPT  # noqa: E402
from fastergpt.pretrained import DEFAULT_MODEL_DIR  # noqa: E402
from fastergpt.tokenizer import Tokenizer  # noqa: E402
from families import saved_hf  # noqa: E402

# Prompts that repeat themselves, so that drafts are found and some are accepted.
PROMPTS = [[5, 9, 14, 3, 5, 9, 14, 3, 5, 9], [40, 41, 42, 40, 41], [7, 100, 12, 99, 7, 100, 12]]


@pytest.fixture(scope="module", params=["gpt2", "llama-gqa"])
def family(request, tmp_path_factory):
    hf, directory = saved_hf(request.param, tmp_path_factory)
    return request.param, hf, Engine.from_pretrained(directory)


def ragged(prompts, pad=0):
    L = max(map(len, prompts))
    ids = np.array([[pad] * (L - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (L - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    return ids, mask


@pytest.mark.parametrize("extra", [
    {}, dict(repetition_penalty=1.3), dict(no_repeat_ngram_size=3), dict(min_length=10),
    dict(eos_token_id=2, pad_token_id=0), dict(num_return_sequences=2),
    dict(max_new_tokens=1), dict(max_new_tokens=2), dict(max_matching_ngram_size=1),
    dict(max_matching_ngram_size=4),
], ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "plain")
@pytest.mark.parametrize("drafts", [1, 3, 10])
def test_equals_plain_greedy(family, extra, drafts):
    name, _, engine = family
    ids, mask = ragged(PROMPTS)
    kw = dict(max_new_tokens=24, eos_token_id=-1)
    kw.update(extra)
    want = engine.generate(ids, mask, return_logprobs=True, **kw)
    got = engine.generate(ids, mask, return_logprobs=True, prompt_lookup_num_tokens=drafts, **kw)
    np.testing.assert_array_equal(got["ids"], want["ids"])
    np.testing.assert_array_equal(got["lengths"], want["lengths"])
    np.testing.assert_allclose(got["logprobs"], want["logprobs"], atol=1e-5)
    assert 0 <= got["accepted_tokens"] <= got["drafted_tokens"]


def test_drafts_are_accepted_and_output_equals_transformers(family):
    """transformers' prompt_lookup_num_tokens (batch 1) gives the same tokens, and the
    drafts do their job on a prompt the output copies."""
    name, hf, engine = family
    accepted = 0
    for prompt in PROMPTS:
        out = engine.generate(np.array([prompt]), max_new_tokens=20, eos_token_id=-1,
                              prompt_lookup_num_tokens=4)
        with torch.no_grad():
            ref = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                              do_sample=False, max_new_tokens=20, prompt_lookup_num_tokens=4,
                              pad_token_id=0, eos_token_id=None)
        assert out["ids"][0].tolist() == ref[0, len(prompt):].tolist(), name
        accepted += out["accepted_tokens"]
    assert accepted > 0


def test_stop_conditions_and_every_front_end(tmp_path):
    """With stop strings and end tokens on the default model, through FasterGPT (the
    Paddle op) and an export's Predictor, prompt lookup gives greedy's output."""
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    tok = Tokenizer.from_dir(DEFAULT_MODEL_DIR)
    text = " ".join(str.split.__doc__.split())
    prompts = [text + "\n\nIn short: Return a list", "Return a copy of the string. Return a copy"]
    ids, mask = tok.encode_batch(prompts)
    kw = dict(max_new_tokens=40, decode_strategy="greedy_search", repetition_penalty=1.0, top_k=0,
              top_p=1.0, temperature=1.0)
    engine = Engine.from_pretrained()
    for stops in ([], ["string."]):
        want = engine.generate(ids, mask, stop=stops, end_token_ids=[13], **kw)
        got = engine.generate(ids, mask, stop=stops, end_token_ids=[13], prompt_lookup_num_tokens=5, **kw)
        np.testing.assert_array_equal(got["ids"], want["ids"])
        assert got["accepted_tokens"] > 0
    # Every front end reports the drafts' counts, the Engine's.
    counts = engine.generate(ids, mask, prompt_lookup_num_tokens=5, **kw)
    counts = (counts["drafted_tokens"], counts["accepted_tokens"])
    assert counts[1] > 0
    faster = FasterGPT.from_pretrained().generate(ids, mask, prompt_lookup_num_tokens=5, **kw)
    np.testing.assert_array_equal(faster.ids.numpy(), engine.generate(ids, mask, **kw)["ids"])
    assert (faster.drafted_tokens, faster.accepted_tokens) == counts
    plain = FasterGPT.from_pretrained().generate(ids, mask, **kw)
    assert (plain.drafted_tokens, plain.accepted_tokens) == (0, 0)
    export = export_model("default", tmp_path / "export", log=lambda s: None)
    p = Predictor(export).generate(prompts, prompt_lookup_num_tokens=5, **kw)
    np.testing.assert_array_equal(p.ids, engine.generate(ids, mask, **kw)["ids"])
    assert (p.drafted_tokens, p.accepted_tokens) == counts


@pytest.mark.parametrize("exported", [False, True])
def test_infer_command_line_reports_the_drafts(exported, tmp_path, capsys):
    """infer.py prints how many drafted tokens were accepted, from the Paddle op in
    dygraph and from an exported directory alike."""
    from fastergpt.cli.infer import main as infer_main
    from fastergpt.export import export_model

    source = []
    if exported:
        source = ["--inference_model_dir",
                  str(export_model("default", tmp_path / "e", log=lambda s: None))]
    prompt = " ".join(str.split.__doc__.split()) + "\n\nIn short: Return a list"
    assert infer_main([*source, "--prompt", prompt, "--max_length", "24", "--decode_strategy",
                       "greedy_search", "--prompt_lookup_num_tokens", "4"]) == 0
    found = re.search(r"^prompt lookup: (\d+) of (\d+) drafted tokens accepted \(\d+%\)$",
                      capsys.readouterr().out, re.M)
    assert found and 0 < int(found[1]) <= int(found[2])


def test_refused_where_it_cannot_be_exact(family):
    _, _, engine = family
    ids = np.array([PROMPTS[0]])
    for kw in (dict(decode_strategy="sampling"), dict(num_beams=2)):
        with pytest.raises(ValueError, match="prompt_lookup_num_tokens is for greedy search"):
            engine.generate(ids, prompt_lookup_num_tokens=3, **kw)
    with pytest.raises(ValueError, match="streaming does not support prompt_lookup_num_tokens"):
        list(engine.generate_stream(ids, prompt_lookup_num_tokens=3))
    with pytest.raises(ValueError, match="prompt_lookup_num_tokens must be <= 64"):
        engine.generate(ids, prompt_lookup_num_tokens=65)
    with pytest.raises(ValueError, match="max_matching_ngram_size must be >= 1"):
        engine.generate(ids, prompt_lookup_num_tokens=2, max_matching_ngram_size=0)


def _draft(seq, max_ngram, max_tokens):
    """lookup_draft's contract (csrc/core/prompt_lookup.h), written out: after the latest
    earlier occurrence of the longest recurring tail n-gram, at most max_tokens and at most
    one more than the context over which that occurrence and the tail agree going back."""
    for n in range(min(max_ngram, len(seq) - 1), 0, -1):
        for i in range(len(seq) - n - 1, -1, -1):
            if seq[i:i + n] == seq[len(seq) - n:]:
                agree = n
                while agree < i + n and seq[i + n - 1 - agree] == seq[len(seq) - 1 - agree]:
                    agree += 1
                return seq[i + n:i + n + min(max_tokens, agree + 1)]
    return []


def _schedule(prompt, out, K, max_ngram=2):
    """Drafted and accepted counts of one row, replayed from plain greedy's output: a row's
    draft budget starts at 1, becomes K after a draft accepted whole and shrinks by 1 (to
    1) after a miss; each pass adds the accepted drafts and one token."""
    hist, n, budget, drafted, accepted = list(prompt) + out[:1], 1, 1, 0, 0
    while n < len(out):
        d = _draft(hist, max_ngram, min(budget, len(out) - n - 1)) if len(out) - n > 1 else []
        m = 0
        while m < len(d) and d[m] == out[n + m]:
            m += 1
        hist += out[n:n + m + 1]
        n += m + 1
        drafted, accepted = drafted + len(d), accepted + m
        if d:
            budget = K if m == len(d) else max(1, budget - 1)
    return drafted, accepted


@pytest.mark.parametrize("K", [1, 4, 8])
def test_draft_schedule(K):
    """The engine drafts exactly what the schedule and lookup contract give on the greedy
    output of the default model (prompts the output copies): the counts would differ if a
    row began at K tokens, or drafted past the context that backs it."""
    tok = Tokenizer.from_dir(DEFAULT_MODEL_DIR)
    engine = Engine.from_pretrained()
    for f in (str.split, dict.get, sorted):
        text = " ".join(f.__doc__.split())
        prompt = tok.encode(text + "\n\nIn short: " + " ".join(text.split()[:5]))[-150:]
        kw = dict(max_new_tokens=48, eos_token_id=-1, decode_strategy="greedy_search")
        out = engine.generate(np.array([prompt]), **kw)["ids"][0].tolist()
        got = engine.generate(np.array([prompt]), prompt_lookup_num_tokens=K, **kw)
        assert got["ids"][0].tolist() == out
        assert (got["drafted_tokens"], got["accepted_tokens"]) == _schedule(prompt, out, K), f.__name__
