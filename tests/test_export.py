"""fastergpt.export.export_model -> a deployable directory; fastergpt.predictor.Predictor
runs it in a fresh process with output identical to dygraph FasterGPT, with every
generation setting still a runtime input."""
import json
import os
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from fastergpt import FasterGPT
from fastergpt.checkpoint import CheckpointError
from fastergpt.export import ExportError, export_model, verify_export
from fastergpt.predictor import Predictor, PredictorError
from fastergpt.tokenizer import Tokenizer
from helpers import tiny_model
from layouts import run_python, tokenizer_model, write_hf_numpy, write_tokenizer

PROMPTS = ["The function returns", "hi", "café 日本 😀 and a somewhat longer prompt here"]
FORMATS = {"pir": "model.json", "legacy": "model.pdmodel"}

# Named runtime settings; each is run by the predictor and by dygraph FasterGPT.
BASE = dict(max_new_tokens=8, top_p=1.0, repetition_penalty=1.0, min_length=0)
REQUESTS = {
    "greedy": dict(BASE, decode_strategy="greedy_search"),
    "sample": dict(BASE, decode_strategy="sampling", top_k=4, temperature=1.0, seed=7),
    "sample_again": dict(BASE, decode_strategy="sampling", top_k=4, temperature=1.0, seed=7),
    "sample_seed8": dict(BASE, decode_strategy="sampling", top_k=4, temperature=1.0, seed=8),
    "sample_hot": dict(BASE, decode_strategy="sampling", top_k=4, temperature=4.0, seed=7),
    "sample_topk0": dict(BASE, decode_strategy="sampling", top_k=0, temperature=1.0, seed=7),
    "sample_topk1": dict(BASE, decode_strategy="sampling", top_k=1, temperature=1.0, seed=7),
    "greedy_short": dict(BASE, decode_strategy="greedy_search", max_new_tokens=3),
    "defaults_seed5": dict(seed=5),  # everything else from the directory's config.json
}

PREDICT_SCRIPT = r"""
import json, sys
from fastergpt.predictor import Predictor
directory, prompts, requests = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
predictor = Predictor(directory)
results = {}
for name, settings in requests.items():
    out = predictor.generate(prompts, **settings)
    results[name] = {"ids": out.ids.tolist(), "lengths": out.lengths.tolist(), "texts": out.texts}
errors = {}
for name, kwargs in json.loads(sys.argv[4]).items():
    try:
        predictor.generate(prompts, **kwargs)
        errors[name] = None
    except Exception as e:
        errors[name] = [type(e).__name__, str(e)]
results["errors"] = errors
print("RESULTS " + json.dumps(results))
"""

# Bad runtime input: a ValueError naming the problem (Paddle Inference itself only
# reports "std::exception" when the operator refuses its input).
BAD_REQUESTS = {
    "too_long": (dict(max_new_tokens=90), r"input_ids: prompt 2 has \d+ tokens; with max_new_tokens=90 "
                                          r"it needs \d+ positions but the model has 96"),
    "top_p": (dict(top_p=0.0), r"top_p must be in \(0, 1\], got 0"),
    "temperature": (dict(decode_strategy="sampling", temperature=0.0),
                    r"temperature must be > 0 for sampling"),
    "top_k": (dict(top_k=-2), r"top_k must be >= 0"),
    "max_new_tokens": (dict(max_new_tokens=0), r"max_new_tokens must be >= 1"),
    "eos": (dict(eos_token_id=100000), r"eos_token_id 100000 is outside the vocabulary"),
    "unknown": (dict(beam_size=4), r"unknown generation setting\(s\) \['beam_size'\]"),
}


@pytest.fixture(scope="module")
def model():
    # Untied head with the exact GELU: the less common path through packing and the op.
    return tokenizer_model("gelu", tied=False, seed=21, n_positions=96)


@pytest.fixture(scope="module")
def src_dir(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("src")
    write_hf_numpy(d, model)
    write_tokenizer(d, "json")
    return d


@pytest.fixture(scope="module")
def exported(tmp_path_factory, src_dir):
    """{"pir": dir, "legacy": dir}, each written (and verified) by export_model."""
    root = tmp_path_factory.mktemp("exports")
    logs = {}
    out = {}
    for fmt in FORMATS:
        logs[fmt] = []
        # Neutral names, so that a message naming the format cannot match on the path.
        name = {"pir": "exp_a", "legacy": "exp_b"}[fmt]
        out[fmt] = export_model(src_dir, root / name, fmt=fmt, log=logs[fmt].append)
    out["logs"] = logs
    return out


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, exported):
    """{fmt: {request name: {"ids", "lengths", "texts"}}} from a fresh process per directory."""
    script = tmp_path_factory.mktemp("script") / "predict.py"
    script.write_text(PREDICT_SCRIPT, encoding="utf-8")
    results = {}
    for fmt in FORMATS:
        bad = {name: kwargs for name, (kwargs, _) in BAD_REQUESTS.items()}
        proc = run_python([script, exported[fmt], json.dumps(PROMPTS), json.dumps(REQUESTS),
                           json.dumps(bad)])
        assert proc.returncode == 0, proc.stderr[-3000:]
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")][-1]
        results[fmt] = json.loads(line[len("RESULTS "):])
    return results


@pytest.fixture(scope="module")
def dygraph(src_dir, exported):
    """The same requests through dygraph FasterGPT.from_pretrained(src_dir)."""
    faster = FasterGPT.from_pretrained(src_dir)
    tok = Tokenizer.from_dir(src_dir)
    defaults = json.loads((exported["pir"] / "config.json").read_text())["generation"]
    ids, mask = tok.encode_batch(PROMPTS)
    results = {}
    for name, settings in REQUESTS.items():
        out = faster.generate(ids, mask, **dict(defaults, **settings))
        results[name] = {"ids": out.ids.numpy().tolist(), "lengths": out.lengths.numpy().tolist(),
                         "texts": [tok.decode(r[:n]) for r, n in
                                   zip(out.ids.numpy(), out.lengths.numpy())]}
    return results


# ---- the directory ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_directory_contents(exported, src_dir, model, fmt):
    d = exported[fmt]
    names = {p.name for p in d.iterdir()}
    assert {FORMATS[fmt], "model.pdiparams", "tokenizer.json", "libfastergpt_ops.so",
            "config.json"} <= names
    other = FORMATS["legacy" if fmt == "pir" else "pir"]
    assert other not in names
    # No temporary directory is left next to the export.
    assert not [p for p in d.parent.iterdir() if ".export-" in p.name]
    info = json.loads((d / "config.json").read_text())
    assert info["format"] == fmt and info["dtype"] == "float32"
    c = model.config
    assert {k: info["model"][k] for k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                                          "activation_function", "tie_word_embeddings")} == {
        "vocab_size": c.vocab_size, "n_positions": c.n_positions, "n_embd": c.n_embd,
        "n_layer": c.n_layer, "n_head": c.n_head, "activation_function": "gelu",
        "tie_word_embeddings": False}
    gen = info["generation"]
    for key in ("max_new_tokens", "decode_strategy", "top_k", "top_p", "temperature",
                "repetition_penalty", "eos_token_id", "pad_token_id"):
        assert key in gen, key
    eot = Tokenizer.from_dir(src_dir).eos_token_id
    assert gen["eos_token_id"] == eot and gen["pad_token_id"] == eot
    assert info["files"]["model"] == FORMATS[fmt]
    assert info["files"]["op_library"] == "libfastergpt_ops.so"
    assert (d / "tokenizer.json").read_bytes() == (src_dir / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_logged_its_verification(exported, fmt):
    assert any(line.startswith("verified:") for line in exported["logs"][fmt]), exported["logs"][fmt]


def test_verification_catches_a_mismatch(exported, src_dir):
    """verify_export compares the predictor against a dygraph model: a different model fails."""
    other = FasterGPT(tokenizer_model("gelu", tied=False, seed=99))
    with pytest.raises(ExportError, match="verification failed"):
        verify_export(exported["pir"], other, Tokenizer.from_dir(src_dir), log=lambda s: None)


# ---- the predictor in a fresh process ----------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("request_name", REQUESTS)
def test_predictor_equals_dygraph(predicted, dygraph, fmt, request_name):
    got, want = predicted[fmt][request_name], dygraph[request_name]
    assert got["ids"] == want["ids"]
    assert got["lengths"] == want["lengths"]
    assert got["texts"] == want["texts"]
    assert len(got["ids"]) == len(PROMPTS)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_predictor_bad_input_is_a_value_error(predicted, fmt, name):
    got = predicted[fmt]["errors"][name]
    assert got is not None, f"{name}: no error raised"
    kind, message = got
    assert kind == "ValueError", got
    assert re.search(BAD_REQUESTS[name][1], message), message


@pytest.mark.parametrize("fmt", FORMATS)
def test_runtime_settings_change_output(predicted, fmt):
    r = predicted[fmt]
    ids = {name: np.array(r[name]["ids"]) for name in REQUESTS}
    np.testing.assert_array_equal(ids["sample"], ids["sample_again"])  # same seed, same ids
    assert not np.array_equal(ids["sample"], ids["greedy"])
    assert not np.array_equal(ids["sample"], ids["sample_seed8"])  # seed
    assert not np.array_equal(ids["sample"], ids["sample_hot"])  # temperature
    assert not np.array_equal(ids["sample"], ids["sample_topk0"])  # top_k
    np.testing.assert_array_equal(ids["sample_topk1"], ids["greedy"])  # top_k=1 is greedy
    assert ids["greedy_short"].shape[1] <= 3 < ids["greedy"].shape[1]  # max_new_tokens
    np.testing.assert_array_equal(ids["greedy_short"], ids["greedy"][:, :ids["greedy_short"].shape[1]])
    assert ids["defaults_seed5"].shape[0] == len(PROMPTS)


def test_formats_agree(predicted):
    assert predicted["pir"] == predicted["legacy"]


def greedy_from(directory, ids, mask):
    out = FasterGPT.from_pretrained(directory).generate(ids, mask, max_new_tokens=12, eos_token_id=-1)
    return out.ids.numpy(), out.lengths.numpy()


def test_from_pretrained_exported_dir(exported, src_dir):
    tok = Tokenizer.from_dir(src_dir)
    ids, mask = tok.encode_batch(PROMPTS)
    want = greedy_from(src_dir, ids, mask)
    again = FasterGPT.from_pretrained(exported["pir"])
    assert again.config.to_dict() == FasterGPT.from_pretrained(src_dir).config.to_dict()
    got = greedy_from(exported["pir"], ids, mask)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # Loading it twice in one process (Paddle renames repeated parameters) changes nothing.
    np.testing.assert_array_equal(greedy_from(exported["pir"], ids, mask)[0], want[0])
    # The exported tokenizer is the source's.
    assert Tokenizer.from_dir(exported["pir"]).encode(PROMPTS[2]) == tok.encode(PROMPTS[2])


def test_from_pretrained_legacy_export(exported, src_dir):
    """A legacy export either loads with the source's output or is refused by name."""
    tok = Tokenizer.from_dir(src_dir)
    ids, mask = tok.encode_batch(PROMPTS)
    try:
        got = greedy_from(exported["legacy"], ids, mask)
    except CheckpointError as e:
        assert "legacy" in str(e) and "exp_b" in str(e), str(e)
        return
    want = greedy_from(src_dir, ids, mask)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


# ---- refusals and errors ---------------------------------------------------------------

def test_refuses_non_empty_directory_then_overwrites(tmp_path, src_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    (out / "model.json").write_text("old", encoding="utf-8")
    with pytest.raises(ExportError, match="not empty.*overwrite"):
        export_model(src_dir, out, log=lambda s: None)
    # --overwrite replaces an earlier export only, never a directory of other files.
    with pytest.raises(ExportError, match="is not a fastergpt export.*refusing to overwrite"):
        export_model(src_dir, out, overwrite=True, log=lambda s: None)
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "notes.txt"]
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "model.json").read_text() == "old"

    export = tmp_path / "export"
    export_model(src_dir, export, log=lambda s: None)
    (export / "stale.txt").write_text("from the old export", encoding="utf-8")
    export_model(src_dir, export, overwrite=True, log=lambda s: None)
    names = {p.name for p in export.iterdir()}
    assert "stale.txt" not in names
    assert {"model.json", "model.pdiparams", "libfastergpt_ops.so", "config.json"} <= names
    assert json.loads((export / "config.json").read_text())["format"] == "pir"
    assert not [p for p in tmp_path.iterdir() if ".export-" in p.name]
    # Readable by others as the umask allows (not mkdtemp's 0700).
    assert stat.S_IMODE(export.stat().st_mode) == 0o777 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_failed_export_leaves_the_previous_export(tmp_path, src_dir, monkeypatch):
    import fastergpt.export as export_mod

    out = tmp_path / "out"
    export_model(src_dir, out, log=lambda s: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing_verify(*args, **kwargs):
        raise ExportError("verification failed: simulated")

    monkeypatch.setattr(export_mod, "verify_export", failing_verify)
    with pytest.raises(ExportError, match="simulated"):
        export_model(src_dir, out, overwrite=True, log=lambda s: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if ".export-" in p.name]


def test_temporaries_of_a_killed_export_are_cleaned(tmp_path, src_dir):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".out.export-{dead}-abc"
    stale.mkdir()
    (stale / "model.pdiparams").write_bytes(b"x" * 1000)
    mine = tmp_path / f".out.export-{os.getpid()}-live"  # a live process's: kept
    mine.mkdir()
    export_model(src_dir, out, log=lambda s: None)
    assert not stale.exists() and mine.exists()


def test_export_argument_errors(tmp_path, src_dir, model):
    with pytest.raises(ExportError, match="format must be one of"):
        export_model(src_dir, tmp_path / "x", fmt="onnx", log=lambda s: None)
    with pytest.raises(ValueError, match="dtype 'float8' is not supported"):
        export_model(src_dir, tmp_path / "x", dtype="float8", log=lambda s: None)
    with pytest.raises(CheckpointError, match="no_model"):
        export_model(tmp_path / "no_model", tmp_path / "x", log=lambda s: None)
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        export_model(src_dir, f, log=lambda s: None)
    assert not (tmp_path / "x").exists()


def test_tokenizer_larger_than_model(tmp_path):
    small = tiny_model(seed=22, vocab_size=100)
    write_hf_numpy(tmp_path / "src", small)
    write_tokenizer(tmp_path / "src", "json")
    with pytest.raises(ExportError, match="tokenizer has 330 tokens but the model only 100"):
        export_model(tmp_path / "src", tmp_path / "out", log=lambda s: None)


def test_missing_operator_library(tmp_path, exported):
    d = tmp_path / "copy"
    shutil.copytree(exported["pir"], d)
    (d / "libfastergpt_ops.so").unlink()
    with pytest.raises(PredictorError, match=r"operator library libfastergpt_ops\.so is missing"):
        Predictor(d)


def test_missing_params_file(tmp_path, exported):
    d = tmp_path / "copy"
    shutil.copytree(exported["legacy"], d)
    (d / "model.pdiparams").unlink()
    with pytest.raises(PredictorError, match=r"params file model\.pdiparams is missing"):
        Predictor(d)


def test_not_an_export(tmp_path, src_dir):
    with pytest.raises(PredictorError, match="does not exist"):
        Predictor(tmp_path / "nowhere")
    with pytest.raises((PredictorError, CheckpointError), match="not an exported inference directory"):
        Predictor(tmp_path)  # empty: no config.json
    with pytest.raises((PredictorError, CheckpointError),
                       match="not a fastergpt inference directory.*export_model"):
        Predictor(src_dir)  # a checkpoint, not an export


@pytest.mark.parametrize("entry, value, message", [
    ("files", None, r"'files' must be a JSON object, got NoneType"),
    ("files", {"a": 1}, r"'files' names no 'model'"),
    ("files", {"model": "model.json", "params": "model.pdiparams",
               "op_library": "libfastergpt_ops.so"}, r"'files' names no 'prefix'"),
    ("model", [1], r"'model' must be a JSON object, got list"),
    ("op_library", "x", r"'op_library' must be a JSON object, got str"),
    ("settings", 5, r"'settings' must be a JSON array, got int"),
    ("settings", [1], r"'settings' must be setting names"),
    ("generation", [1], r"'generation' must be a JSON object, got list"),
])
def test_export_description_of_the_wrong_shape_is_refused(tmp_path, exported, entry, value, message):
    """(These had escaped from the Predictor as TypeError, AttributeError or KeyError; a
    missing prefix, from FasterGPT.from_pretrained as KeyError.)"""
    d = tmp_path / "copy"
    shutil.copytree(exported["pir"], d)
    info = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**info, entry: value}))
    with pytest.raises(CheckpointError, match=r"config\.json: " + message + ".*re-export"):
        Predictor(d)


def test_predictor_shared_by_threads(exported):
    """One Predictor used by 4 threads at once gives every call its own result."""
    from concurrent.futures import ThreadPoolExecutor

    predictor = Predictor(exported["pir"])
    requests = [dict(max_new_tokens=5 + i % 4, decode_strategy="sampling", top_k=5, seed=i)
                for i in range(16)]
    serial = [predictor.generate(PROMPTS, **r).ids.tolist() for r in requests]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda r: predictor.generate(PROMPTS, **r).ids.tolist(), requests))
    assert parallel == serial
    assert len({json.dumps(s) for s in serial}) > 1  # the requests really differ


def test_swapped_operator_library_is_refused(tmp_path, exported):
    """The directory's library is code: one that differs from what the export recorded
    (or from the installed build) is not loaded without trust_library; the untouched
    export still runs, on the installed library."""
    d = tmp_path / "swapped"
    shutil.copytree(exported["pir"], d)
    lib = d / "libfastergpt_ops.so"
    lib.write_bytes(lib.read_bytes() + b"\0")  # any change at all
    with pytest.raises(PredictorError, match=r"does not match the hash its config.json recorded.*trust_library"):
        Predictor(d)
    info = json.loads((d / "config.json").read_text())
    info["op_library"]["sha256"] = "0" * 64
    shutil.copy(exported["pir"] / "libfastergpt_ops.so", lib)
    (d / "config.json").write_text(json.dumps(info))
    with pytest.raises(PredictorError, match="does not match the hash"):
        Predictor(d)
    assert Predictor(exported["pir"]).generate(PROMPTS, max_new_tokens=3).ids.shape[1] == 3


def test_rss_is_flat_over_200_predictor_calls(exported):
    script = (
        "import sys, json\n"
        "from fastergpt.predictor import Predictor\n"
        "def rss():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
        f"p = Predictor({str(exported['pir'])!r})\n"
        f"prompts = {PROMPTS!r}\n"
        "for i in range(50):\n"
        "    p.generate(prompts, max_new_tokens=6, seed=i)\n"
        "before = rss()\n"
        "for i in range(200):\n"
        "    p.generate(prompts, max_new_tokens=6, seed=i)\n"
        "print('RSS', before, rss())\n")
    proc = run_python(["-c", script], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = map(int, proc.stdout.split("RSS")[-1].split())
    assert after <= before * 1.02, (before, after)
