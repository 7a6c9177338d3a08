"""Streaming: Engine.generate_stream and FasterGPT.generate_stream yield, step by step,
the tokens generate() returns (greedy and seeded sampling, a ragged batch, several
return sequences, the end token), their log-probabilities, and text deltas that never
split a UTF-8 character and join to the decoded text."""
import numpy as np
import pytest

from fastergpt import Engine, FasterGPT
from fastergpt.streaming import REPLACEMENT, TextDeltas
from fastergpt.tokenizer import Tokenizer
from layouts import tokenizer_model, write_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = Tokenizer.from_dir(write_tokenizer(tmp_path_factory.mktemp("tok")))
    model = tokenizer_model(seed=3, n_positions=64)
    return tok, model, Engine.from_model(model), FasterGPT(model)


SETTINGS = [
    dict(max_new_tokens=24),
    dict(max_new_tokens=24, decode_strategy="sampling", top_k=20, seed=5, num_return_sequences=3),
    dict(max_new_tokens=16, decode_strategy="sampling", top_p=0.9, seed=1, repetition_penalty=1.2,
         min_length=3, no_repeat_ngram_size=2),
]


@pytest.mark.parametrize("front_end", ["Engine", "FasterGPT"])
@pytest.mark.parametrize("settings", SETTINGS, ids=["greedy", "top_k", "top_p"])
def test_steps_equal_generate(setup, front_end, settings):
    tok, model, engine, faster = setup
    ids, mask = tok.encode_batch(["hello world, hello", "café", "日本語のテキスト"])
    # An end token the model is likely to make, so rows finish at different steps.
    eos = int(np.argsort(engine.logits(ids, mask)[:, -1].mean(0))[-2])
    whole = engine.generate(ids, mask, eos_token_id=eos, return_logprobs=True, **settings)
    run = engine if front_end == "Engine" else faster
    steps = list(run.generate_stream(ids, mask, tokenizer=tok, eos_token_id=eos, **settings))
    rows = whole["ids"].shape[0]
    # One step per generated column; then, only if a row's text ends inside a character,
    # one more carrying that held-back tail (no tokens).
    made = [s for s in steps if (s.tokens >= 0).any()]
    assert len(made) == whole["ids"].shape[1] and len(steps) - len(made) in (0, 1)
    tokens = np.stack([s.tokens for s in made], 1)
    logprobs = np.stack([s.logprobs for s in made], 1)
    for r in range(rows):
        n = whole["lengths"][r]
        np.testing.assert_array_equal(tokens[r, :n], whole["ids"][r, :n])
        assert (tokens[r, n:] == -1).all()
        np.testing.assert_allclose(logprobs[r, :n], whole["logprobs"][r, :n], atol=1e-6)
        text = "".join(s.texts[r] for s in steps)
        assert text == tok.decode(whole["ids"][r, :n])
        # A row is finished from the step of its end token, or of its last allowed token.
        first = n - 1
        assert not made[first - 1].finished[r] if first > 0 else True
        assert made[first].finished[r]


def _byte_tokens(tok):
    """Each single byte's token, found through GPT-2's byte -> visible character table."""
    from fastergpt.tokenizer import byte_alphabet

    return {b: tok.token_to_id(c) for b, c in enumerate(byte_alphabet())}


def test_text_deltas_never_split_a_character(setup):
    tok = setup[0]
    byte_token = _byte_tokens(tok)
    text = "a café, 日本語 and 🚀!"
    ids = [byte_token[b] for b in text.encode("utf-8")]  # one token per byte
    assert None not in ids
    deltas = TextDeltas(tok, 1)
    pieces = [deltas.push(0, t)[0] for t in ids]
    assert "".join(pieces) == text
    for p in pieces:
        assert REPLACEMENT not in p
        p.encode("utf-8")  # whole characters only
    # The bytes of 🚀 arrive one by one: nothing is sent until the fourth.
    rocket = [byte_token[b] for b in "🚀".encode("utf-8")]
    d = TextDeltas(tok, 1)
    assert [d.push(0, t)[0] for t in rocket] == ["", "", "", "🚀"]
    # Bytes that never complete a character come out as U+FFFD at the end.
    d = TextDeltas(tok, 1)
    assert d.push(0, rocket[0]) == ("", False)
    assert d.push(0, -1, final=True) == (REPLACEMENT, False)


def test_beam_search_is_refused_and_bad_input_raises_at_once(setup):
    _, _, engine, faster = setup
    with pytest.raises(ValueError, match="streaming does not support beam search"):
        engine.generate_stream(np.array([[1, 2, 3]]), num_beams=3)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        faster.generate_stream(np.array([[1, 2, 3]]), top_p=2.0)


def test_a_stream_left_early_frees_its_state(setup):
    _, _, engine, _ = setup
    for _ in range(20):
        stream = engine.generate_stream(np.array([[1, 2, 3]]), max_new_tokens=30)
        next(stream)
        del stream
    out = engine.generate(np.array([[1, 2, 3]]), max_new_tokens=5)
    assert out["ids"].shape == (1, 5)


def _rows(steps):
    made = [s for s in steps if (s.tokens >= 0).any()]
    tokens = np.stack([s.tokens for s in made], 1) if made else np.zeros((0, 0), np.int64)
    return [[int(t) for t in row if t >= 0] for row in tokens]


@pytest.mark.parametrize("front_end", ["Engine", "FasterGPT"])
def test_stop_strings_across_tokens_and_extra_end_tokens(setup, front_end):
    tok, _, engine, faster = setup
    run = engine if front_end == "Engine" else faster
    ids, mask = tok.encode_batch(["hello world, hello", "the function returns"])
    kw = dict(max_new_tokens=30, eos_token_id=-1)
    free = engine.generate(ids, mask, **kw)
    texts = [tok.decode(r) for r in free["ids"]]
    # A stop string that spans a token boundary of row 0's text, starting at its 4th token.
    first = len(tok.decode(free["ids"][0][:3]))
    stop = texts[0][first:first + 4]
    assert len(stop) == 4 and tok.decode(free["ids"][0][:4]) != texts[0][:first + 4]
    steps = list(run.generate_stream(ids, mask, tokenizer=tok, stop=[stop, "never-in-this-text"], **kw))
    got = ["".join(s.texts[r] for s in steps) for r in range(2)]
    cut = texts[0].find(stop)
    assert got[0] == texts[0][:cut] and stop not in got[0]
    assert steps[-1].finished[0]
    made = _rows(steps)
    assert len(made[0]) < 30 and made[0] == list(free["ids"][0][:len(made[0])])
    # The other row, stopped or not, keeps its own tokens (it does not depend on row 0).
    assert made[1] == list(free["ids"][1][:len(made[1])])
    if stop not in texts[1]:
        assert got[1] == texts[1] and len(made[1]) == 30
    # More end tokens: as generate() with that token as eos_token_id.
    end = int(free["ids"][0][5])
    want = engine.generate(ids, mask, max_new_tokens=30, eos_token_id=end)
    made = _rows(list(run.generate_stream(ids, mask, end_token_ids=[end], **kw)))
    for r in range(2):
        assert made[r] == list(want["ids"][r][:want["lengths"][r]])
    with pytest.raises(ValueError, match="stop strings need a tokenizer"):
        run.generate_stream(ids, mask, stop=["x"], **kw)
    with pytest.raises(ValueError, match=r"end_token_ids: 100000 is outside the vocabulary"):
        run.generate_stream(ids, mask, end_token_ids=[100000], **kw)


def test_max_time_stops_after_the_step_it_runs_out_in(setup):
    """max_time (transformers' MaxTimeCriteria: checked after each step, so at least one
    token) in generate, beam search, the Paddle op, streams and a continuous batch."""
    tok, _, engine, faster = setup
    ids = np.array([[5, 6, 7], [8, 9, 10]])
    kw = dict(max_new_tokens=40, eos_token_id=-1, max_time=1e-9)
    assert engine.generate(ids, **kw)["ids"].shape == (2, 1)
    assert faster.generate(ids, **kw).ids.shape == [2, 1]
    beams = engine.generate(ids, num_beams=3, num_return_sequences=2, **kw)
    assert (beams["lengths"] == 1).all()
    assert len(list(engine.generate_stream(ids, **kw))) == 1
    batch = engine.batch(capacity=2)
    row = batch.join([5, 6, 7], **kw)
    other = batch.join([8, 9], max_new_tokens=3, eos_token_id=-1)
    made = {row: 0, other: 0}
    while batch.running:
        out = batch.step()
        for r in made:
            made[r] += int(out[0][r] >= 0)
    assert made == {row: 1, other: 3}
    # A generous limit changes nothing.
    np.testing.assert_array_equal(engine.generate(ids, max_new_tokens=8, max_time=600.0)["ids"],
                                  engine.generate(ids, max_new_tokens=8)["ids"])
