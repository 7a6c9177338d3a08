"""matmul_precision="bfloat16": float32 / float16 weights and the activations they multiply
rounded to bfloat16, products summed in float32 (vdpbf16ps). The kernels are checked bit
for bit against a scalar model of the instructions in tests/cpp/kernels_test.cc; here,
whole models against transformers (float32 throughout): greedy token for token on peaked
random models, log-probabilities within bfloat16's rounding, a row's result the same alone
or in a batch, prompt lookup still exactly greedy, continuous batches, the Paddle op and an
export's Predictor, and the refusals. On a CPU without AVX-512 BF16 the setting is refused
by name, which is what runs there."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fastergpt import Engine, FasterGPT  # noqa: E402
from fastergpt.ops.loader import engine_module  # noqa: E402
from fastergpt.settings import setting_table  # noqa: E402
from batches import check_batch_wide_setting  # noqa: E402
from families import PROMPTS, hf_alone, hf_logprobs, saved_hf  # noqa: E402
from helpers import tiny_model  # noqa: E402

HAS_BF16 = engine_module().cpu_isa() == "avx512bf16"
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no AVX-512 BF16")
BF16 = dict(matmul_precision="bfloat16")


@pytest.fixture(scope="module", params=["gpt2", "llama-gqa"])
def family(request, tmp_path_factory):
    hf, directory = saved_hf(request.param, tmp_path_factory)
    return request.param, hf, directory


def test_the_setting_is_a_row_of_the_table():
    row = next(s for s in setting_table() if s.name == "matmul_precision")
    assert row.kind == "choice" and row.default == "float32"
    assert sorted(row.choices) == ["bfloat16", "float32"]


@pytest.mark.skipif(HAS_BF16, reason="this CPU has AVX-512 BF16")
def test_refused_without_avx512_bf16():
    engine = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64))
    with pytest.raises(ValueError, match=r"matmul_precision=bfloat16: the cpu backend cannot "
                                         r"multiply in it \(this CPU has no AVX-512 BF16\)"):
        engine.generate(np.array([[1, 2]]), max_new_tokens=2, **BF16)


@needs_bf16
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_greedy_equals_transformers_token_for_token(family, dtype):
    name, hf, directory = family
    engine = Engine.from_pretrained(directory, dtype=dtype)
    for prompt in PROMPTS:
        out = engine.generate(np.array([prompt]), max_new_tokens=16, eos_token_id=-1, **BF16)
        np.testing.assert_array_equal(out["ids"][0], hf_alone(hf, prompt, 16), err_msg=name)


@needs_bf16
def test_logprobs_within_bfloat16_rounding_of_transformers(family):
    """Teacher-forced log-probabilities of the generated tokens: bfloat16 products move them
    by about bfloat16's rounding (8 bits), far more than float32's do."""
    name, hf, directory = family
    engine = Engine.from_pretrained(directory)
    ids = np.array([PROMPTS[0]])
    want = engine.generate(ids, max_new_tokens=12, eos_token_id=-1, return_logprobs=True)
    got = engine.generate(ids, max_new_tokens=12, eos_token_id=-1, return_logprobs=True, **BF16)
    np.testing.assert_array_equal(got["ids"], want["ids"])
    hf_lp = hf_logprobs(hf, ids[0], want["ids"][0])
    err_bf16 = np.abs(got["logprobs"][0] - hf_lp).max()
    err_f32 = np.abs(want["logprobs"][0] - hf_lp).max()
    assert np.any(got["logprobs"] != want["logprobs"])  # the setting took effect
    assert err_bf16 < 5e-2, (name, err_bf16)
    assert err_f32 < 1e-3, (name, err_f32)


@needs_bf16
def test_a_row_gives_the_same_bits_alone_or_in_a_batch():
    """Every output is one chain over the input features whatever the number of rows, so a
    padded batch and the prompt pass change nothing, and prompt lookup's verification pass
    (several rows) gives exactly what decoding one token at a time gives."""
    engine = Engine.from_model(tiny_model(seed=4, vocab_size=97, n_positions=64))
    a, b = [3, 14, 15, 92, 65, 35, 89], [7, 1, 8]
    kw = dict(max_new_tokens=10, eos_token_id=-1, return_logprobs=True, pad_token_id=0, **BF16)
    alone = [engine.generate(np.array([p]), **kw) for p in (a, b)]
    ids = np.array([a, [0] * (len(a) - len(b)) + b])
    mask = (np.arange(len(a)) >= len(a) - len(b)).astype(np.int64)
    both = engine.generate(ids, attention_mask=np.stack([np.ones_like(mask), mask]), **kw)
    for r in range(2):
        np.testing.assert_array_equal(both["ids"][r], alone[r]["ids"][0])
        np.testing.assert_array_equal(both["logprobs"][r], alone[r]["logprobs"][0])
    # The last token's log-probability from a prompt pass over the text equals the decoded one.
    text = np.concatenate([np.array([a]), alone[0]["ids"][:, :-1]], axis=1)
    again = engine.generate(text, **dict(kw, max_new_tokens=1))
    assert again["logprobs"][0, 0] == alone[0]["logprobs"][0, -1]
    looped = engine.generate(np.array([[5, 9, 14, 3, 5, 9, 14, 3, 5, 9]]), prompt_lookup_num_tokens=4,
                             **kw)
    plain = engine.generate(np.array([[5, 9, 14, 3, 5, 9, 14, 3, 5, 9]]), **kw)
    np.testing.assert_array_equal(looped["ids"], plain["ids"])
    np.testing.assert_array_equal(looped["logprobs"], plain["logprobs"])
    assert looped["drafted_tokens"] > 0


@needs_bf16
def test_beam_search_and_int8_weights():
    engine = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64, std=0.3))
    ids = np.array([[5, 9, 14], [40, 41, 42]])
    kw = dict(max_new_tokens=8, eos_token_id=-1, num_beams=3, decode_strategy="beam_search")
    np.testing.assert_array_equal(engine.generate(ids, **kw, **BF16)["ids"],
                                  engine.generate(ids, **kw)["ids"])
    # int8 weights multiply in int8 either way: the setting changes nothing there.
    q = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64, std=0.3), dtype="int8")
    kw = dict(max_new_tokens=8, eos_token_id=-1, return_logprobs=True)
    np.testing.assert_array_equal(q.generate(ids, **kw, **BF16)["logprobs"],
                                  q.generate(ids, **kw)["logprobs"])


@needs_bf16
def test_continuous_batch_in_bfloat16():
    engine = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64, std=0.3))
    check_batch_wide_setting(engine, "matmul_precision", "bfloat16", "float32")


def test_bad_values_are_refused_by_name():
    engine = Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64))
    for bad in ("bf16", "float16", 2, 0.5):
        with pytest.raises(ValueError, match="matmul_precision"):
            engine.generate(np.array([[1, 2]]), max_new_tokens=2, matmul_precision=bad)


@needs_bf16
def test_paddle_op_and_predictor_take_the_setting(tmp_path):
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    engine = Engine.from_pretrained()
    ids = np.array([[464, 3290, 318, 257], [40, 588, 262, 1708]])
    kw = dict(max_new_tokens=8, eos_token_id=-1, decode_strategy="greedy_search",
              repetition_penalty=1.0, top_k=0, top_p=1.0, temperature=1.0, **BF16)
    want = engine.generate(ids, return_logprobs=True, **kw)
    plain = engine.generate(ids, return_logprobs=True, **dict(kw, matmul_precision="float32"))
    assert np.any(want["logprobs"] != plain["logprobs"])
    got = FasterGPT.from_pretrained().generate(ids, **kw)
    np.testing.assert_array_equal(got.ids.numpy(), want["ids"])
    np.testing.assert_array_equal(got.logprobs.numpy(), want["logprobs"])
    export = export_model("default", tmp_path / "export", log=lambda s: None)
    p = Predictor(export).generate(input_ids=ids, **kw)
    np.testing.assert_array_equal(p.ids, want["ids"])


@needs_bf16
def test_scoring_takes_it(tmp_path):
    """Engine.logits and `fastergpt perplexity --matmul_precision` score in it."""
    from fastergpt.cli.perplexity import main as perplexity

    engine = Engine.from_pretrained()
    ids = np.array([[464, 3290, 318, 257, 1110, 13, 383, 7]])
    want, got = engine.logits(ids), engine.logits(ids, **BF16)
    assert np.any(got != want)
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()
    text = tmp_path / "t.txt"
    text.write_text("The function returns a list of the words in the string. " * 8)
    assert perplexity([str(text), "--matmul_precision", "bfloat16"]) == 0
    with pytest.raises(SystemExit):  # argparse names the choices
        perplexity([str(text), "--matmul_precision", "bf16"])
