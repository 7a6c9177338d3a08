"""Stop conditions in the one-shot generate and in the export (fastergpt/stops.py,
csrc/core/stop_conditions.h): stop strings matched on the generated text across token
boundaries, and several end tokens.

- Stop strings against transformers' `stop_strings` on the default model (a trained
  GPT-2 with a real byte-level BPE): the same tokens, except where transformers
  matches a stop string that starts in the PROMPT (it searches prompt + output; we
  search the output only, as OpenAI-style servers do), which is checked as such.
- Several end tokens against transformers' `eos_token_id=[...]`, greedy and beam
  search (scores too), with min_length masking every end token.
- Every front end (FasterGPT, Engine, Predictor over an export, gpt_infer, infer.py)
  gives the same ids, and texts cut before the stop string.
- Bad stop arguments are refused with a message that names them.
"""
import json
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fastergpt import Engine, FasterGPT  # noqa: E402
from fastergpt.pretrained import DEFAULT_MODEL_DIR  # noqa: E402
from fastergpt.stops import cut_at_stop  # noqa: E402
from fastergpt.tokenizer import Tokenizer  # noqa: E402

PROMPTS = ["The function returns", "Return the", "If the file", "This module provides",
           "A list of"]
STOPS = [["."], ["the "], ["\n"], ["returns a", "ion"], ["s t"], ["é", "(", "file"]]
NEW = 40


@pytest.fixture(scope="module")
def default():
    tok = Tokenizer.from_dir(DEFAULT_MODEL_DIR)
    hf = transformers.AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_DIR).eval()
    hf.generation_config = transformers.GenerationConfig()  # not the model's sampling defaults
    htok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(DEFAULT_MODEL_DIR / "tokenizer.json"))
    return tok, hf, htok, Engine.from_pretrained()


def hf_generate(hf, ids, **kw):
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(ids), attention_mask=torch.ones_like(torch.from_numpy(ids)),
                          do_sample=False, max_new_tokens=NEW, pad_token_id=0, **kw)
    return out[0, ids.shape[1]:].tolist()


def test_vocabulary_bytes_spell_what_decode_gives(default):
    tok = default[0]
    data, offsets = tok.vocabulary_bytes()
    assert len(offsets) == tok.vocab_size + 1
    for i in range(tok.vocab_size):
        assert bytes(data[offsets[i]:offsets[i + 1]]).decode("utf-8", "replace") == tok.decode([i])


@pytest.mark.parametrize("stops", STOPS, ids=lambda s: "|".join(s))
def test_stop_strings_equal_transformers(default, stops):
    tok, hf, htok, engine = default
    crossing = 0
    for prompt in PROMPTS:
        ids = np.array([tok.encode(prompt)])
        out = engine.generate(ids, max_new_tokens=NEW, stop=stops, eos_token_id=-1)
        got = out["ids"][0][:out["lengths"][0]].tolist()
        want = hf_generate(hf, ids, stop_strings=stops, tokenizer=htok, eos_token_id=None)
        if got == want:
            continue
        # transformers found a stop string that begins in the prompt: its output is a
        # prefix of ours, and the match crosses the prompt's end.
        crossing += 1
        assert got[:len(want)] == want, (prompt, stops)
        text = prompt + tok.decode(want)
        assert any(0 <= text.find(s) < len(prompt) < text.find(s) + len(s) for s in stops)
        assert not any(s in tok.decode(want) for s in stops)
    assert crossing < len(PROMPTS)


def test_stop_string_ends_the_row_at_the_completing_token(default):
    tok, _, _, engine = default
    ids = np.array([tok.encode("The function returns")])
    free = engine.generate(ids, max_new_tokens=NEW, eos_token_id=-1)
    free_ids = free["ids"][0].tolist()
    text = tok.decode(free_ids)
    stop = text[6:9]  # three characters somewhere past the start
    out = engine.generate(ids, max_new_tokens=NEW, stop=[stop], eos_token_id=-1)
    n = int(out["lengths"][0])
    assert stop in tok.decode(free_ids[:n]) and stop not in tok.decode(free_ids[:n - 1])
    assert out["ids"][0][:n].tolist() == free_ids[:n]
    assert cut_at_stop(tok.decode(free_ids[:n]), [stop]) == text[:text.find(stop)]


@pytest.fixture(scope="module")
def tiny_families(tmp_path_factory):
    from families import make_hf

    out = []
    for name in ("gpt2", "llama-gqa"):
        hf = make_hf(name)
        d = tmp_path_factory.mktemp(name)
        hf.save_pretrained(d)
        out.append((name, hf, Engine.from_pretrained(d)))
    return out


def test_end_token_ids_equal_transformers(tiny_families):
    prompt = [5, 9, 14, 3, 77, 21, 8]
    ids = np.array([prompt])
    for name, hf, engine in tiny_families:
        free = engine.generate(ids, max_new_tokens=24, eos_token_id=-1)["ids"][0].tolist()
        ends = [free[9], free[4]]  # tokens the free run makes: the row ends at the first
        out = engine.generate(ids, max_new_tokens=24, eos_token_id=ends[0], end_token_ids=ends[1:])
        got = out["ids"][0][:out["lengths"][0]].tolist()
        with torch.no_grad():
            want = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24,
                               eos_token_id=ends, pad_token_id=0)[0, len(prompt):].tolist()
        n = min(i for i, t in enumerate(free) if t in ends) + 1
        assert got == free[:n] == [t for t in want][:n], name
        # min_length masks every end token, as transformers' min_new_tokens.
        out = engine.generate(ids, max_new_tokens=24, eos_token_id=ends[0], end_token_ids=ends[1:],
                              min_length=12)
        got = out["ids"][0][:out["lengths"][0]].tolist()
        with torch.no_grad():
            want = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24,
                               min_new_tokens=12, eos_token_id=ends, pad_token_id=0)[0, len(prompt):].tolist()
        assert len(got) >= 12 and not set(got[:11]) & set(ends)
        assert got == want[:len(got)] and (len(got) == len(want) or want[len(got)] == 0), name


def test_beam_search_with_several_end_tokens_equals_transformers(tiny_families):
    prompt = [40, 41, 7, 100]
    for name, hf, engine in tiny_families:
        free = engine.generate(np.array([prompt]), max_new_tokens=10, eos_token_id=-1)["ids"][0].tolist()
        ends = [free[2], free[5], 2]
        out = engine.generate(np.array([prompt]), max_new_tokens=10, num_beams=4,
                              num_return_sequences=4, eos_token_id=ends[0], end_token_ids=ends[1:],
                              pad_token_id=0)
        with torch.no_grad():
            ref = hf.generate(torch.tensor([prompt]), do_sample=False, num_beams=4,
                              num_return_sequences=4, max_new_tokens=10, eos_token_id=ends,
                              pad_token_id=0, output_scores=True, return_dict_in_generate=True)
        for r in range(4):
            seq = ref.sequences[r, len(prompt):].tolist()
            n = next((i + 1 for i, t in enumerate(seq) if t in ends), len(seq))
            assert out["ids"][r][:out["lengths"][r]].tolist() == seq[:n], (name, r)
            assert abs(float(out["scores"][r]) - float(ref.sequences_scores[r])) < 1e-4


def test_every_front_end_stops_alike(cpp_build, tmp_path, capsys):
    from fastergpt.cli.infer import main as infer_main
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    export = export_model("default", tmp_path / "export", log=lambda s: None)
    assert json.loads((export / "config.json").read_text())["stop_strings"] is True
    tok = Tokenizer.from_dir(DEFAULT_MODEL_DIR)
    prompts = ["The function returns", "If the file"]
    ids, mask = tok.encode_batch(prompts)
    kw = dict(max_new_tokens=30, decode_strategy="greedy_search", repetition_penalty=1.0,
              top_k=0, top_p=1.0, temperature=1.0)
    stops, ends = ["the ", "."], [13]
    want = Engine.from_pretrained().generate(ids, mask, stop=stops, end_token_ids=ends, **kw)
    assert want["lengths"].max() < 30  # the stops acted
    got = FasterGPT.from_pretrained().generate(ids, mask, stop=stops, end_token_ids=ends, **kw)
    np.testing.assert_array_equal(got.ids.numpy(), want["ids"])
    p = Predictor(export).generate(prompts, stop=stops, end_token_ids=ends, **kw)
    np.testing.assert_array_equal(p.ids, want["ids"])
    texts = [cut_at_stop(tok.decode(r[:n]), stops) for r, n in zip(want["ids"], want["lengths"])]
    assert p.texts == texts
    flags = ["--max_length", "30", "--decode_strategy", "greedy_search", "--repetition_penalty", "1",
             "--top_k", "0", "--top_p", "1", "--temperature", "1", "--end_token_ids", "13",
             "--stop", "the ", "--stop", "."]
    proc = subprocess.run([str(cpp_build / "gpt_infer"), "--model_dir", str(export), "--json",
                           *sum((["--prompt", q] for q in prompts), []), *flags], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    cpp = json.loads(proc.stdout)
    assert [row[:n] for row, n in zip(cpp["ids"], want["lengths"])] == \
        [row[:n].tolist() for row, n in zip(want["ids"], want["lengths"])]
    assert cpp["texts"] == texts
    assert infer_main(["--inference_model_dir", str(export), *sum((["--prompt", q] for q in prompts), []),
                       *flags]) == 0
    printed = capsys.readouterr().out
    for i, text in enumerate(texts):
        assert f"[{i}] {prompts[i]}{text}\n" in printed


def test_bad_stop_arguments_are_named(default, tmp_path):
    from helpers import tiny_model

    tok, _, _, engine = default
    ids = np.array([tok.encode("Return the")])
    cases = [
        (dict(stop=[""]), "stop: string 0 is empty"),
        (dict(stop=[3]), "stop: item 0 is a int"),
        (dict(stop=["x" * 5000]), "at most 4096"),
        (dict(stop=["x"] * 300), "at most 256"),
        (dict(end_token_ids=[tok.vocab_size]), f"end_token_ids: {tok.vocab_size} is outside"),
        (dict(end_token_ids=["a"]), "end_token_ids: 'a' is not an integer id"),
        (dict(stop=["."], num_beams=2), "stop strings are not supported with beam search"),
    ]
    faster = FasterGPT.from_pretrained()
    for kw, message in cases:
        for run in (lambda: engine.generate(ids, **kw), lambda: faster.generate(ids, **kw)):
            with pytest.raises(ValueError, match=message):
                run()
    # A model without a tokenizer cannot match stop strings; end ids still work.
    bare = Engine.from_model(tiny_model())
    with pytest.raises(ValueError, match="stop strings need the tokenizer's vocabulary"):
        bare.generate(np.array([[1, 2]]), stop=["x"])
    with pytest.raises(ValueError, match="stop strings need the tokenizer's vocabulary"):
        FasterGPT(tiny_model()).generate(np.array([[1, 2]]), stop=["x"])
    assert bare.generate(np.array([[1, 2]]), end_token_ids=[3], max_new_tokens=4)["ids"].shape[0] == 1
