"""Beam search against transformers' generate(num_beams=N): token for token, and
sequence scores within 1e-4 of `sequences_scores`, for GPT-2 and LLaMA, N in
{1, 2, 4, 5}, several length penalties, each early_stopping mode, a left-padded
ragged batch, num_return_sequences < N, and composed with repetition_penalty,
no_repeat_ngram_size, min_length and the end token. Then the same result from
every front end (FasterGPT, Engine, Predictor, infer.py, gpt_infer), and
no_repeat_ngram_size for greedy search too."""
import itertools
import json
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from fastergpt import Engine, FasterGPT  # noqa: E402
from families import saved_hf  # noqa: E402

EOS, PAD = 2, 0
PROMPTS = [[5, 9, 14, 3, 77, 21, 8], [40, 41], [7, 100, 12, 99]]
LENGTH_PENALTIES = [1.0, 0.0, 2.0, -0.5]
EARLY_STOPPING = [False, True, "never"]
SCORE_TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=["gpt2", "llama-gqa"])
def family(request, tmp_path_factory):
    hf, directory = saved_hf(request.param, tmp_path_factory)
    return request.param, hf, Engine.from_pretrained(directory), directory


def ragged(prompts):
    L = max(map(len, prompts))
    ids = np.array([[PAD] * (L - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (L - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    return ids, mask


def hf_beams(hf, prompt, **kw):
    """transformers on one prompt alone: [(tokens, score or None)] best first."""
    hx = dict(kw)
    if "min_length" in hx:  # ours counts new tokens, as transformers' min_new_tokens
        hx["min_new_tokens"] = hx.pop("min_length")
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                          do_sample=False, output_scores=True, return_dict_in_generate=True,
                          eos_token_id=EOS, pad_token_id=PAD, **hx)
    rows = []
    for r, seq in enumerate(out.sequences[:, len(prompt):].tolist()):
        n = seq.index(EOS) + 1 if EOS in seq else len(seq)
        score = None if out.get("sequences_scores") is None else float(out.sequences_scores[r])
        rows.append((seq[:n], score))
    return rows


def ours(out, R):
    """[[(tokens, score)] per prompt] from an {'ids', 'lengths', 'scores'} result."""
    rows = [(list(map(int, out["ids"][i][:out["lengths"][i]])), float(out["scores"][i]))
            for i in range(len(out["lengths"]))]
    return [rows[b * R:(b + 1) * R] for b in range(len(rows) // R)]


def check_equal(got, want, label):
    assert len(got) == len(want), label
    for r, ((tokens, score), (hf_tokens, hf_score)) in enumerate(zip(got, want)):
        assert tokens == hf_tokens, f"{label}, sequence {r}: {tokens} != transformers' {hf_tokens}"
        if hf_score is not None:
            assert abs(score - hf_score) <= SCORE_TOLERANCE, (label, r, score, hf_score)


@pytest.mark.parametrize("num_beams", [1, 2, 4, 5])
def test_equals_transformers(family, num_beams):
    name, hf, engine, _ = family
    ids, mask = ragged(PROMPTS)
    R = min(num_beams, 2)
    for lp, es in itertools.product(LENGTH_PENALTIES, EARLY_STOPPING):
        kw = dict(num_beams=num_beams, num_return_sequences=R, length_penalty=lp,
                  early_stopping=es, max_new_tokens=12)
        out = engine.generate(ids, mask, decode_strategy="beam_search", eos_token_id=EOS,
                              pad_token_id=PAD, **kw)
        for b, got in enumerate(ours(out, R)):
            check_equal(got, hf_beams(hf, PROMPTS[b], **kw), f"{name} N={num_beams} lp={lp} "
                        f"early_stopping={es} prompt {b}")


@pytest.mark.parametrize("extra", [dict(repetition_penalty=1.3), dict(no_repeat_ngram_size=2),
                                   dict(min_length=5), dict(repetition_penalty=0.8, no_repeat_ngram_size=3,
                                                            min_length=2)],
                         ids=["repetition_penalty", "no_repeat_ngram", "min_length", "all"])
def test_composes_with_processors(family, extra):
    name, hf, engine, _ = family
    ids, mask = ragged(PROMPTS)
    kw = dict(num_beams=4, num_return_sequences=3, max_new_tokens=10, **extra)
    out = engine.generate(ids, mask, eos_token_id=EOS, pad_token_id=PAD, **kw)  # num_beams alone asks for it
    for b, got in enumerate(ours(out, 3)):
        check_equal(got, hf_beams(hf, PROMPTS[b], **kw), f"{name} {extra} prompt {b}")


def test_finishing_beams_end_tokens_and_padding(family):
    """A model made to end often: hypotheses finish at different lengths, rows are padded
    with pad_token_id after their end token, and a prompt's result does not depend on
    the other prompts of the batch."""
    name, hf, engine, _ = family
    ids, mask = ragged(PROMPTS)
    kw = dict(num_beams=5, num_return_sequences=5, max_new_tokens=16, early_stopping="never")
    eos = int(np.argsort(engine.logits(ids, mask)[:, -1].mean(0))[-3])  # a likely token ends
    out = engine.generate(ids, mask, eos_token_id=eos, pad_token_id=PAD, **kw)
    lengths = out["lengths"]
    for i, n in enumerate(lengths):
        assert (out["ids"][i][n:] == PAD).all()
    for b in range(len(PROMPTS)):
        alone = engine.generate(np.array([PROMPTS[b]]), eos_token_id=eos, pad_token_id=PAD, **kw)
        np.testing.assert_array_equal(alone["lengths"], lengths[b * 5:(b + 1) * 5])
        for r in range(5):
            n = lengths[b * 5 + r]
            np.testing.assert_array_equal(alone["ids"][r][:n], out["ids"][b * 5 + r][:n])
        np.testing.assert_allclose(alone["scores"], out["scores"][b * 5:(b + 1) * 5], atol=1e-6)


def test_every_front_end_gives_the_engine_result(tmp_path):
    """FasterGPT (the Paddle op) and the Predictor over an export give what Engine
    gives, scores included."""
    from layouts import tokenizer_model, write_hf_numpy, write_tokenizer

    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    model = tokenizer_model(seed=21, n_positions=64)
    src = write_tokenizer(write_hf_numpy(tmp_path / "src", model))
    export = export_model(src, tmp_path / "export", log=lambda s: None)
    settings = dict(decode_strategy="beam_search", num_beams=4, num_return_sequences=2,
                    length_penalty=0.7, early_stopping="never", max_new_tokens=8,
                    no_repeat_ngram_size=2, eos_token_id=-1)
    predictor = Predictor(export)
    ids, mask = predictor.tokenizer.encode_batch(["hello world", "the function returns a"])
    want = Engine.from_model(model).generate(ids, mask, **settings)
    got = FasterGPT(model).generate(ids, mask, **settings)
    np.testing.assert_array_equal(got.ids.numpy(), want["ids"])
    np.testing.assert_allclose(got.scores.numpy(), want["scores"], atol=1e-6)
    p = predictor.generate(input_ids=ids, attention_mask=mask, **settings)
    np.testing.assert_array_equal(p.ids, want["ids"])
    np.testing.assert_allclose(p.scores, want["scores"], atol=1e-6)
    # The export's defaults sample (top_k, top_p...): asking for beam search drops them.
    p2 = predictor.generate(input_ids=ids, attention_mask=mask, num_beams=4, num_return_sequences=2,
                            length_penalty=0.7, early_stopping="never", max_new_tokens=8,
                            no_repeat_ngram_size=2, eos_token_id=-1)
    np.testing.assert_array_equal(p2.ids, want["ids"])


def test_gpt_infer_and_infer_cli_beam_search(cpp_build, tmp_path, capsys):
    from layouts import tokenizer_model, write_hf_numpy, write_tokenizer

    from fastergpt.cli.infer import main as infer_main
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    model = tokenizer_model(seed=22, n_positions=64)
    src = write_tokenizer(write_hf_numpy(tmp_path / "src", model))
    export = export_model(src, tmp_path / "export", log=lambda s: None)
    prompts = ["hello world", "café"]
    want = Predictor(export).generate(prompts, decode_strategy="beam_search", num_beams=3,
                                      num_return_sequences=3, length_penalty=1.5, max_new_tokens=6,
                                      eos_token_id=-1)
    args = ["--decode_strategy", "beam_search", "--num_beams", "3", "--num_return_sequences", "3",
            "--length_penalty", "1.5", "--max_length", "6", "--eos_token_id", "-1"]
    proc = subprocess.run([str(cpp_build / "gpt_infer"), "--model_dir", str(export), "--json",
                           *sum((["--prompt", p] for p in prompts), []), *args], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    got = json.loads(proc.stdout)
    assert got["ids"] == want.ids.tolist()
    np.testing.assert_allclose(got["scores"], want.scores, atol=1e-6)
    # infer.py: the export's sampling defaults are dropped, the texts are the Predictor's.
    assert infer_main(["--inference_model_dir", str(export), *sum((["--prompt", p] for p in prompts), []),
                       *args]) == 0
    printed = capsys.readouterr().out
    for i, text in enumerate(want.texts):
        assert f"[{i // 3}.{i % 3}] {prompts[i // 3]}{text}" in printed


def test_no_repeat_ngram_greedy_and_sampling_equal_transformers(family):
    name, hf, engine, _ = family
    for n in (1, 2, 3):
        for b, prompt in enumerate(PROMPTS):
            out = engine.generate(np.array([prompt]), max_new_tokens=14, no_repeat_ngram_size=n,
                                  eos_token_id=EOS, pad_token_id=PAD)
            got = list(map(int, out["ids"][0][:out["lengths"][0]]))
            want = hf_beams(hf, prompt, num_beams=1, max_new_tokens=14, no_repeat_ngram_size=n)[0][0]
            assert got == want, (name, n, b)
    # Sampling never draws a banned token: with n=1 no token repeats in prompt + output.
    out = engine.generate(np.array([PROMPTS[0]]), decode_strategy="sampling", max_new_tokens=30,
                          no_repeat_ngram_size=1, eos_token_id=-1, seed=4, num_return_sequences=4)
    for row in out["ids"]:
        seq = PROMPTS[0] + list(map(int, row))
        assert len(set(seq)) == len(seq)


def test_memory_check_counts_the_beams(family):
    _, _, engine, _ = family
    with pytest.raises(ValueError, match=r"needs about \d+ MB .* num_beams"):
        engine.generate(np.array([PROMPTS[0]]), num_beams=256, max_new_tokens=30, max_memory_mb=1)
