"""kv_cache_dtype="float16": keys and values rounded to half precision as the KV cache
stores them (half its memory, and half the bytes attention reads per step). The kernels
are checked bit for bit against the float32 ones in tests/cpp/kv_cache_half_test.cc;
here, whole models: logits against transformers (float32 throughout) within a float16
tolerance, greedy token for token on peaked models, prompt lookup still exactly greedy,
beam search and sampling running, continuous batches, the Paddle op, the memory check,
and the refusals."""
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fastergpt import Engine, FasterGPT  # noqa: E402
from fastergpt.settings import setting_table  # noqa: E402
from batches import check_batch_wide_setting  # noqa: E402
from families import PROMPTS, hf_alone, hf_logprobs, saved_hf  # noqa: E402
from helpers import tiny_model  # noqa: E402


@pytest.fixture(scope="module", params=["gpt2", "llama-gqa"])
def family(request, tmp_path_factory):
    hf, directory = saved_hf(request.param, tmp_path_factory)
    return request.param, hf, Engine.from_pretrained(directory)


def test_the_setting_is_a_row_of_the_table():
    row = next(s for s in setting_table() if s.name == "kv_cache_dtype")
    assert row.kind == "choice" and row.default == "float32"
    assert sorted(row.choices) == ["float16", "float32"]


def test_greedy_equals_transformers_token_for_token(family):
    name, hf, engine = family
    for prompt in PROMPTS:
        out = engine.generate(np.array([prompt]), max_new_tokens=16, eos_token_id=-1,
                              kv_cache_dtype="float16")
        np.testing.assert_array_equal(out["ids"][0], hf_alone(hf, prompt, 16), err_msg=name)


def test_logits_within_float16_rounding_of_transformers(family):
    """Teacher-forced log-probabilities of the generated tokens: float16 keys and values
    move them by about float16's rounding, far more than float32's cache does."""
    name, hf, engine = family
    ids = np.array([PROMPTS[0]])
    want = engine.generate(ids, max_new_tokens=12, eos_token_id=-1, return_logprobs=True)
    got = engine.generate(ids, max_new_tokens=12, eos_token_id=-1, return_logprobs=True,
                          kv_cache_dtype="float16")
    np.testing.assert_array_equal(got["ids"], want["ids"])
    hf_lp = hf_logprobs(hf, ids[0], want["ids"][0])
    err16 = np.abs(got["logprobs"][0] - hf_lp).max()
    err32 = np.abs(want["logprobs"][0] - hf_lp).max()
    assert np.any(got["logprobs"] != want["logprobs"])  # the setting took effect
    assert err16 < 2e-2, (name, err16)
    assert err32 < 1e-3, (name, err32)


def test_prompt_lookup_is_still_exactly_greedy(family):
    """A draft's verification pass attends in blocks, decoding one token at a time: over
    a float16 cache both give the same bits, so prompt lookup stays exactly greedy."""
    name, _, engine = family
    ids = np.array([[5, 9, 14, 3, 5, 9, 14, 3, 5, 9]])
    kw = dict(max_new_tokens=24, eos_token_id=-1, return_logprobs=True, kv_cache_dtype="float16")
    want = engine.generate(ids, **kw)
    got = engine.generate(ids, prompt_lookup_num_tokens=4, **kw)
    np.testing.assert_array_equal(got["ids"], want["ids"])
    np.testing.assert_array_equal(got["logprobs"], want["logprobs"])
    assert got["drafted_tokens"] > 0


def test_prompt_pass_and_decoding_agree():
    """A token's log-probability when it is decoded (one token at a time over the cache)
    equals the one a prompt pass over the same text gives (blocks of queries at once)."""
    engine = Engine.from_model(tiny_model(seed=4, vocab_size=97, n_positions=64))
    ids = np.array([[3, 14, 15, 92, 65, 35, 89]])
    kw = dict(eos_token_id=-1, return_logprobs=True, kv_cache_dtype="float16")
    out = engine.generate(ids, max_new_tokens=10, **kw)
    text = np.concatenate([ids, out["ids"][:, :-1]], axis=1)
    again = engine.generate(text, max_new_tokens=1, **kw)
    assert again["ids"][0, 0] == out["ids"][0, -1]
    assert again["logprobs"][0, 0] == out["logprobs"][0, -1]


def test_beam_search_and_sampling_run_and_stay_close(family):
    name, _, engine = family
    ids = np.array([PROMPTS[0], PROMPTS[0]])
    for kw in (dict(num_beams=3, num_return_sequences=2, decode_strategy="beam_search"),
               dict(decode_strategy="sampling", top_k=5, seed=3, num_return_sequences=2)):
        want = engine.generate(ids, max_new_tokens=10, eos_token_id=-1, **kw)
        got = engine.generate(ids, max_new_tokens=10, eos_token_id=-1, kv_cache_dtype="float16", **kw)
        assert got["ids"].shape == want["ids"].shape
        # Peaked random weights: the choices do not hang on a float16 rounding.
        np.testing.assert_array_equal(got["ids"], want["ids"], err_msg=f"{name} {kw}")


def test_continuous_batch_in_float16():
    engine = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64, std=0.3))
    check_batch_wide_setting(engine, "kv_cache_dtype", "float16", "float32")


def test_memory_check_counts_half_the_cache():
    engine = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64))
    sizes = {}
    for dtype in ("float32", "float16"):
        with pytest.raises(ValueError, match=r"max_memory_mb allows 1 MB") as e:
            engine.generate(np.ones((64, 8), np.int64), max_new_tokens=56, max_memory_mb=1,
                            num_return_sequences=16, kv_cache_dtype=dtype)
        sizes[dtype] = int(re.search(r"KV cache (\d+) MB", str(e.value)).group(1))
    assert sizes["float16"] * 2 in (sizes["float32"], sizes["float32"] + 1), sizes


def test_bad_values_are_refused_by_name():
    engine = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64))
    for bad in ("bfloat16", "half", 2, 0.5):
        with pytest.raises(ValueError, match="kv_cache_dtype"):
            engine.generate(np.array([[1, 2]]), max_new_tokens=2, kv_cache_dtype=bad)


def test_paddle_op_and_predictor_take_the_setting(tmp_path):
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    engine = Engine.from_pretrained()
    ids = np.array([[464, 3290, 318, 257], [40, 588, 262, 1708]])
    kw = dict(max_new_tokens=8, eos_token_id=-1, kv_cache_dtype="float16",
              decode_strategy="greedy_search", repetition_penalty=1.0, top_k=0, top_p=1.0,
              temperature=1.0)  # (the default model's own generation defaults sample)
    want = engine.generate(ids, return_logprobs=True, **kw)
    got = FasterGPT.from_pretrained().generate(ids, **kw)
    np.testing.assert_array_equal(got.ids.numpy(), want["ids"])
    np.testing.assert_allclose(got.logprobs.numpy(), want["logprobs"], atol=1e-6)
    export = export_model("default", tmp_path / "export", log=lambda s: None)
    p = Predictor(export).generate(input_ids=ids, **kw)
    np.testing.assert_array_equal(p.ids, want["ids"])


def test_a_server_batch_takes_it():
    from fastergpt.server.scheduler import Scheduler
    from fastergpt.tokenizer import Tokenizer
    from fastergpt.pretrained import DEFAULT_MODEL_DIR

    engine = Engine.from_pretrained()
    scheduler = Scheduler(engine, Tokenizer.from_dir(DEFAULT_MODEL_DIR), max_batch=2,
                          kv_cache_dtype="float16")
    batch = scheduler.batch
    assert batch.kv_cache_dtype == "float16"
    row = batch.join([464, 3290, 318], max_new_tokens=3, eos_token_id=-1)
    got = []
    while len(got) < 3:
        tokens, _ = batch.step()
        got.append(int(tokens[row]))
    want = engine.generate(np.array([[464, 3290, 318]]), max_new_tokens=3, eos_token_id=-1,
                           kv_cache_dtype="float16", decode_strategy="greedy_search",
                           repetition_penalty=1.0, top_k=0, top_p=1.0, temperature=1.0)
    assert got == list(want["ids"][0])
