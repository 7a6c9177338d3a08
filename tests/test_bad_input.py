"""Bad input: a ValueError naming the problem, from both front ends, and the process carries on."""

import json

import numpy as np
import paddle
import pytest

from helpers import front_ends, tiny_model

VOCAB = 53  # tiny_model's default vocabulary; n_positions is 64
PROMPT = np.array([[1, 2, 3]], dtype=np.int64)
NAN = float("nan")

# (id, generate kwargs overriding input_ids=PROMPT and max_new_tokens=4, message regex)
BAD = [
    ("id-too-large", dict(input_ids=np.array([[1, VOCAB]])),
     r"input_ids: id 53 at \[0, 1\] is outside the vocabulary \[0, 53\)"),
    ("id-negative", dict(input_ids=np.array([[4, 5], [1, -1]])),
     r"input_ids: id -1 at \[1, 1\] is outside the vocabulary \[0, 53\)"),
    ("beyond-n_positions", dict(max_new_tokens=62),
     r"input_ids: prompt 0 has 3 tokens; with max_new_tokens=62 it needs 65 positions "
     r"but the model has 64"),
    ("top_p-0", dict(top_p=0.0), r"top_p must be in \(0, 1\], got 0"),
    ("top_p-1.5", dict(top_p=1.5), r"top_p must be in \(0, 1\], got 1.5"),
    ("top_p-nan", dict(top_p=NAN), r"top_p must be in \(0, 1\], got nan"),
    ("top_p-0-sampling", dict(decode_strategy="sampling", top_p=0.0), r"top_p must be in"),
    ("top_k-negative", dict(top_k=-1), r"top_k must be >= 0"),
    ("temperature-0", dict(decode_strategy="sampling", temperature=0.0),
     r"temperature must be > 0 for sampling"),
    ("temperature-negative", dict(decode_strategy="sampling", temperature=-0.5),
     r"temperature must be >= 0 and finite, got -0.5"),
    ("temperature-nan", dict(decode_strategy="sampling", temperature=NAN),
     r"temperature must be >= 0 and finite, got nan"),
    ("ids-float", dict(input_ids=np.array([[1.0, 2.0]])),
     r"input_ids: dtype must be an integer type"),
    ("ids-1d", dict(input_ids=np.array([1, 2, 3])), r"input_ids: must be 2-D"),
    ("ids-3d", dict(input_ids=np.ones((1, 2, 3), np.int64)), r"input_ids: must be 2-D"),
    ("ids-ragged", dict(input_ids=[[1, 2, 3], [4]]), r"input_ids: its rows have different lengths"),
    ("ids-past-int64", dict(input_ids=np.array([[1, 2**64 - 1]], np.uint64)),
     r"input_ids: value 18446744073709551615 at \[0, 1\] is past int64's range"),
    ("mask-fewer-columns", dict(attention_mask=np.array([[1, 1]])),
     r"attention_mask: shape must equal input_ids' shape"),
    ("mask-more-rows", dict(attention_mask=np.ones((2, 3), np.int64)),
     r"attention_mask: shape must equal input_ids' shape"),
    ("mask-right-padded", dict(attention_mask=np.array([[1, 1, 0]])),
     r"attention_mask: row 0 is not left-padded"),
    ("mask-hole", dict(input_ids=np.array([[1, 2, 3], [4, 5, 6]]),
                       attention_mask=np.array([[1, 1, 1], [0, 1, 0]])),
     r"attention_mask: row 1 is not left-padded"),
    ("mask-all-zero", dict(attention_mask=np.array([[0, 0, 0]])),
     r"attention_mask: row 0 has no real token"),
    ("mask-value-2", dict(attention_mask=np.array([[0, 2, 1]])),
     r"attention_mask: values must be 0 or 1"),
    ("mask-value-negative", dict(attention_mask=np.array([[-1, 1, 1]])),
     r"attention_mask: values must be 0 or 1"),
    ("mask-value-half", dict(attention_mask=np.array([[0.0, 0.5, 1.0]])), r"attention_mask"),
    ("empty-batch", dict(input_ids=np.zeros((0, 5), np.int64)),
     r"input_ids: the batch is empty"),
    ("empty-prompt", dict(input_ids=np.zeros((2, 0), np.int64)),
     r"input_ids: prompts must have at least one token"),
    ("max_new_tokens-0", dict(max_new_tokens=0), r"max_new_tokens must be >= 1, got 0"),
    ("num_return_sequences-0", dict(num_return_sequences=0),
     r"num_return_sequences must be >= 1, got 0"),
    ("repetition_penalty-0", dict(repetition_penalty=0.0), r"repetition_penalty must be > 0"),
    ("repetition_penalty-negative", dict(repetition_penalty=-1.3),
     r"repetition_penalty must be > 0"),
    ("repetition_penalty-inf", dict(repetition_penalty=float("inf")),
     r"repetition_penalty must be > 0"),
    ("decode_strategy", dict(decode_strategy="contrastive"), r"decode_strategy.*contrastive"),
    # Beam search.
    ("num_beams-0", dict(decode_strategy="beam_search", num_beams=0), r"num_beams must be >= 1, got 0"),
    ("num_beams-huge", dict(num_beams=1000), r"num_beams must be <= 256"),
    ("beams-fewer-than-returns", dict(decode_strategy="beam_search", num_beams=2, num_return_sequences=3),
     r"num_return_sequences \(3\) must be <= num_beams \(2\) for beam search"),
    ("beams-with-top_k", dict(decode_strategy="beam_search", num_beams=2, top_k=5),
     r"top_k is a sampling setting that beam search does not use"),
    ("beams-with-temperature", dict(num_beams=3, temperature=0.7),
     r"temperature is a sampling setting that beam search does not use"),
    ("num_beams-with-sampling", dict(decode_strategy="sampling", num_beams=3),
     r"num_beams is 3 but decode_strategy is not beam_search"),
    ("early_stopping-unknown", dict(num_beams=2, early_stopping="sometimes"),
     r"early_stopping must be one of .*'never'.* got 'sometimes'"),
    ("length_penalty-nan", dict(num_beams=2, length_penalty=NAN), r"length_penalty must be"),
    ("no_repeat_ngram_size-negative", dict(no_repeat_ngram_size=-2), r"no_repeat_ngram_size must be >= 0"),
    ("max_time-negative", dict(max_time=-1.0), r"max_time must be >= 0"),
    ("max_time-nan", dict(max_time=NAN), r"max_time must be"),
    ("eos-outside-vocab", dict(eos_token_id=VOCAB), r"eos_token_id 53 is outside the vocabulary"),
    ("pad-outside-vocab", dict(pad_token_id=VOCAB), r"pad_token_id 53 is outside the vocabulary"),
    ("min_length-negative", dict(min_length=-1), r"min_length must be >= 0"),
    ("num_threads-negative", dict(num_threads=-1), r"num_threads must be >= 0"),
    # Upper bounds, checked before any cast or arithmetic (no overflow, no huge allocation).
    ("max_new_tokens-huge", dict(max_new_tokens=2**63 - 3), r"max_new_tokens must be <= 1073741824"),
    ("num_return_sequences-huge", dict(num_return_sequences=2**62),
     r"num_return_sequences must be <= 65536"),
    ("num_threads-huge", dict(num_threads=5000), r"num_threads must be <= 1024"),
    ("seed-negative", dict(seed=-1), r"seed must be >= 0, got -1"),
    ("seed-beyond-2^53", dict(seed=2**62), r"seed must be <= 9007199254740991"),
    ("top_k-fraction", dict(top_k=2.5), r"top_k: expected an integer"),
    ("unknown-setting", dict(beam_size=4), r"unknown generation setting\(s\) \['beam_size'\]"),
    ("end_token_ids-outside-vocab", dict(end_token_ids=[3, VOCAB]),
     r"end_token_ids: 53 is outside the vocabulary \[0, 53\)"),
    ("end_token_ids-negative", dict(end_token_ids=[-2]), r"end_token_ids: -2 is outside"),
    ("end_token_ids-not-ints", dict(end_token_ids=[1.5]), r"end_token_ids: 1.5 is not an integer id"),
    ("stop-empty-string", dict(stop=["ok", ""]), r"stop: string 1 is empty"),
    ("stop-not-strings", dict(stop=[b"x"]), r"stop: item 0 is a bytes, not a string"),
    ("stop-not-a-list", dict(stop=5), r"stop: expected a string or a list of strings, got int"),
    ("stop-lone-surrogate", dict(stop=["ok", "\ud800"]),
     r"stop: string 1: not valid Unicode at character 0 \(surrogates not allowed\)"),
    ("end_token_ids-past-int64", dict(end_token_ids=[2**70]),
     r"end_token_ids: 1180591620717411303424 is outside the vocabulary \(too large for an id\)"),
]

FRONT_ENDS = ("FasterGPT", "Engine", "Predictor")


def _params():
    for front_end in FRONT_ENDS:
        for case_id, kwargs, match in BAD:
            yield pytest.param(front_end, kwargs, match, id=f"{front_end}-{case_id}")


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def runs(model, tmp_path_factory):
    """FasterGPT and Engine on the model, and the Predictor over its export (a
    word-level tokenizer of exactly its 53 tokens, so ids stay inside it)."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models

    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    src = tmp_path_factory.mktemp("bad_input_src")
    save_file(model.state_dict_numpy(), str(src / "model.safetensors"))
    (src / "config.json").write_text(json.dumps(dict(model.config.to_dict(), model_type="gpt2")))
    vocab = {f"t{i}": i for i in range(VOCAB - 1)}
    vocab["<|endoftext|>"] = VOCAB - 1
    Tokenizer(models.WordLevel(vocab, unk_token="t0")).save(str(src / "tokenizer.json"))
    predictor = Predictor(export_model(src, tmp_path_factory.mktemp("bad_input_export") / "x",
                                       log=lambda s: None))

    def run_predictor(input_ids, attention_mask=None, **settings):
        if "num_beams" not in settings:  # num_beams alone asks for beam search
            settings.setdefault("decode_strategy", "greedy_search")  # the export's default samples
        settings.setdefault("eos_token_id", -1)
        out = predictor.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)
        return {"ids": out.ids, "lengths": out.lengths}

    return dict(front_ends(model), Predictor=run_predictor)


@pytest.fixture(scope="module")
def baseline(runs):
    return runs["Engine"](PROMPT, max_new_tokens=4)["ids"]


@pytest.mark.parametrize("front_end, kwargs, match", list(_params()))
def test_bad_input_raises_value_error(runs, baseline, front_end, kwargs, match):
    run = runs[front_end]
    args = dict(input_ids=PROMPT, max_new_tokens=4)
    args.update(kwargs)
    try:
        with pytest.raises(ValueError, match=match):
            run(**args)
    finally:
        # The process survives and the next valid call is unaffected.
        np.testing.assert_array_equal(run(PROMPT, max_new_tokens=4)["ids"], baseline)


def test_float_paddle_tensor_ids(runs):
    with pytest.raises(ValueError, match=r"input_ids: dtype must be an integer type"):
        runs["FasterGPT"](paddle.to_tensor([[1.0, 2.0]]), max_new_tokens=2)


@pytest.mark.parametrize("front_end", ["FasterGPT", "Engine"])
def test_valid_edge_inputs(model, runs, baseline, front_end):
    run = runs[front_end]
    # temperature is ignored by greedy search, so 0 is fine there.
    np.testing.assert_array_equal(run(PROMPT, max_new_tokens=4, temperature=0.0)["ids"], baseline)
    # Other integer dtypes and nested lists are accepted.
    np.testing.assert_array_equal(run(PROMPT.astype(np.int32), max_new_tokens=4)["ids"], baseline)
    np.testing.assert_array_equal(run([[1, 2, 3]], max_new_tokens=4)["ids"], baseline)
    # Prompt + max_new_tokens == n_positions is allowed; only real tokens count, not padding.
    ids = np.array([[9, 9, 9, 1, 2, 3]])
    mask = np.array([[0, 0, 0, 1, 1, 1]])
    out = run(ids, mask, max_new_tokens=61)
    assert out["ids"].shape == (1, 61)
    np.testing.assert_array_equal(out["ids"][:, :4], baseline)


def test_catalogue_is_current():
    """docs/bad-input.md lists exactly this table (python tools/bad_input_catalogue.py)."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("catalogue", root / "tools" / "bad_input_catalogue.py")
    catalogue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(catalogue)
    assert (root / "docs" / "bad-input.md").read_text(encoding="utf-8") == catalogue.render(), \
        "docs/bad-input.md is stale: run python tools/bad_input_catalogue.py"
