"""The C++ deployment path (infer/cpp): gpt_infer against the Python Predictor on
the same exported directory, the C++ GPT-2 tokenizer against the Python one,
and every bad input exiting non-zero with its message."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_config, tiny_model

ROOT = Path(__file__).resolve().parents[1]

CORPUS = [
    "The function returns a new list of values.",
    "  leading spaces, trailing spaces   ",
    "Tabs\tand\nnewlines\r\nmixed  \t up",
    "don't won't it's we're they've I'm you'll he'd",
    "Numbers 12345 and 3.14159 and ½ ⅓ ٣",
    "Accents: café, naïve, über, señor, Ærøskøbing, Łódź",
    "CJK: 日本語のテキスト、中文文本，한국어 텍스트",
    "Emoji: 🙂🚀👍🏽 and flags 🇫🇷 and ZWJ 👨‍👩‍👧",
    "Symbols: <tag> {json: [1, 2]} $100 #hash @user ~tilde",
    "Special <|endoftext|> token inside text<|endoftext|>",
]

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny HF-layout model with a byte-level BPE tokenizer trained on CORPUS."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    d = tmp_path_factory.mktemp("tiny_model")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 20, trainer)
    tok.save(str(d / "tokenizer.json"))
    tok.model.save(str(d))
    vocab = tok.get_vocab_size()
    config = tiny_config(vocab_size=vocab, n_positions=96, eos_token_id=0)
    model = tiny_model(config, seed=5)
    save_file(model.state_dict_numpy(), str(d / "model.safetensors"))
    cfg = config.to_dict()
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    from fastergpt.export import export_model

    out = tmp_path_factory.mktemp("exported") / "model"
    export_model(model_dir, out, log=lambda s: None)
    return out


def run_infer(build, *args):
    return subprocess.run([str(build / "gpt_infer"), *map(str, args)], capture_output=True)


PROMPTS = ["The function returns", "café", "日本語のテキスト and more words here"]


@pytest.mark.parametrize("settings", [
    {"decode_strategy": "greedy_search", "max_new_tokens": 12},
    {"decode_strategy": "sampling", "top_k": 5, "seed": 7, "max_new_tokens": 12},
    {"decode_strategy": "sampling", "top_p": 0.8, "temperature": 0.7, "seed": 3,
     "max_new_tokens": 9, "repetition_penalty": 1.2, "min_length": 4},
    # Settings added after the export format: flags derived from the engine's table.
    {"decode_strategy": "sampling", "typical_p": 0.7, "min_p": 0.05, "seed": 11,
     "max_new_tokens": 10},
    # Prompt lookup: the drafts' counts as well.
    {"decode_strategy": "greedy_search", "max_new_tokens": 12, "prompt_lookup_num_tokens": 3},
])
def test_gpt_infer_matches_python_predictor(cpp_build, exported, settings):
    from fastergpt.predictor import Predictor

    # PaddleNLP's spellings for some, the table's `--<name>` for the rest.
    flags = {"max_new_tokens": "--max_length", "top_k": "--topk", "top_p": "--topp"}
    args = ["--model_dir", exported, "--json"]
    for p in PROMPTS:
        args += ["--prompt", p]
    for k, v in settings.items():
        args += [flags.get(k, "--" + k), v]
    proc = run_infer(cpp_build, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    got = json.loads(proc.stdout.decode("utf-8"))
    want = Predictor(exported).generate(PROMPTS, **settings)
    assert got["ids"] == want.ids.tolist()
    assert got["texts"] == want.texts
    assert (got["drafted_tokens"], got["accepted_tokens"]) == \
        (want.drafted_tokens, want.accepted_tokens)
    if settings.get("prompt_lookup_num_tokens"):
        assert got["drafted_tokens"] > 0


def test_prompt_file_and_batches(cpp_build, exported, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(PROMPTS) + "\n\n", encoding="utf-8")
    one = run_infer(cpp_build, "--model_dir", exported, "--prompt_file", f, "--json",
                    "--decode_strategy", "greedy_search", "--max_length", 6)
    split = run_infer(cpp_build, "--model_dir", exported, "--prompt_file", f, "--json",
                      "--decode_strategy", "greedy_search", "--max_length", 6, "--batch_size", 1)
    assert one.returncode == 0 and split.returncode == 0, one.stderr + split.stderr
    # A row's output does not depend on the other prompts in its batch.
    assert json.loads(one.stdout)["texts"] == json.loads(split.stdout)["texts"]


def test_benchmark_reports(cpp_build, exported):
    proc = run_infer(cpp_build, "--model_dir", exported, "--prompt", "hello", "--max_length", 4,
                     "--benchmark", 2)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "ms/run" in out and "QPS" in out and "tokens/s" in out


def test_cpp_tokenizer_matches_python(cpp_build, model_dir):
    from fastergpt.tokenizer import Tokenizer

    tok = Tokenizer.from_dir(model_dir)
    text = "".join(json.dumps(line) + "\n" for line in CORPUS)
    proc = subprocess.run([str(cpp_build / "bpe_tokenize"), str(model_dir / "vocab.json"),
                           str(model_dir / "merges.txt")], input=text.encode("utf-8"),
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [json.loads(l) for l in proc.stdout.decode("utf-8").splitlines()]
    assert len(rows) == len(CORPUS)
    for line, row in zip(CORPUS, rows):
        assert row["ids"] == tok.encode(line), line
        assert row["text"] == tok.decode(row["ids"], skip_special_tokens=False) == line


def test_sanitized_gpt_infer_and_tokenizer_give_the_plain_output(cpp_build, cpp_build_sanitized,
                                                                   exported, model_dir, tmp_path):
    """gpt_infer and bpe_tokenize built with ASan + UBSan: every path of a normal run
    (text prompts, a prompt file in batches, token ids, sampling filters, --benchmark,
    tokenizer.json and vocab.json + merges.txt) finishes without a finding and prints
    what the plain build prints."""
    build, env = cpp_build_sanitized
    f = tmp_path / "prompts.txt"
    f.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    vocab_only = tmp_path / "vocab_only"
    shutil.copytree(exported, vocab_only)
    (vocab_only / "tokenizer.json").unlink(missing_ok=True)
    runs = [
        ["--model_dir", exported, "--json", "--max_length", 6, "--decode_strategy", "greedy_search",
         *sum((["--prompt", p] for p in PROMPTS), [])],
        ["--model_dir", vocab_only, "--json", "--prompt_file", f, "--batch_size", 2, "--max_length", 5,
         "--decode_strategy", "sampling", "--top_k", 5, "--top_p", 0.9, "--seed", 3],
        ["--model_dir", exported, "--json", "--input_ids", "5,6,7", "--input_ids", "9", "--max_length", 4,
         "--decode_strategy", "sampling", "--typical_p", 0.8, "--min_p", 0.02, "--seed", 1,
         "--repetition_penalty", 1.3, "--num_return_sequences", 2],
    ]
    for args in runs:
        plain = run_infer(cpp_build, *args)
        san = subprocess.run([str(build / "gpt_infer"), *map(str, args)], capture_output=True, env=env)
        err = san.stderr.decode("utf-8", "replace")
        assert san.returncode == 0 and "Sanitizer" not in err and "runtime error:" not in err, err
        assert plain.returncode == 0, plain.stderr.decode()
        assert json.loads(san.stdout) == json.loads(plain.stdout)
    bench = subprocess.run([str(build / "gpt_infer"), "--model_dir", str(exported), "--prompt", "hi",
                            "--max_length", "3", "--benchmark", "1"], capture_output=True, env=env)
    assert bench.returncode == 0, bench.stderr.decode("utf-8", "replace")
    text = "".join(json.dumps(line) + "\n" for line in CORPUS)
    tok = [str(model_dir / "vocab.json"), str(model_dir / "merges.txt")]
    plain = subprocess.run([str(cpp_build / "bpe_tokenize"), *tok], input=text.encode(), capture_output=True)
    san = subprocess.run([str(build / "bpe_tokenize"), *tok], input=text.encode(), capture_output=True, env=env)
    assert san.returncode == 0, san.stderr.decode("utf-8", "replace")
    assert san.stdout == plain.stdout


def bad(cpp_build, args, message):
    proc = run_infer(cpp_build, *args)
    assert proc.returncode != 0
    assert message in proc.stderr.decode(), proc.stderr.decode()


def test_bad_inputs_exit_nonzero(cpp_build, exported, tmp_path):
    bad(cpp_build, ["--model_dir", tmp_path / "nope", "--prompt", "x"], "does not exist")
    bad(cpp_build, ["--prompt", "x"], "--model_dir is required")
    bad(cpp_build, ["--model_dir", tmp_path, "--prompt", "x"], "config")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    bad(cpp_build, ["--model_dir", exported, "--prompt_file", empty], "holds no prompt")
    bad(cpp_build, ["--model_dir", exported, "--prompt_file", tmp_path / "missing.txt"],
        "cannot be opened")
    bad(cpp_build, ["--model_dir", exported], "at least one --prompt")
    bad(cpp_build, ["--model_dir", exported, "--prompt", "x", "--topk", "many"], "expected a number")
    bad(cpp_build, ["--model_dir", exported, "--prompt", "x", "--topp", "1.5"], "top_p")
    broken = tmp_path / "no_op"
    shutil.copytree(exported, broken)
    (broken / "libfastergpt_ops.so").unlink()
    bad(cpp_build, ["--model_dir", broken, "--prompt", "x"], "operator library")
    no_vocab = tmp_path / "no_vocab"
    shutil.copytree(exported, no_vocab)
    (no_vocab / "vocab.json").unlink()
    (no_vocab / "tokenizer.json").unlink()
    bad(cpp_build, ["--model_dir", no_vocab, "--prompt", "x"], "vocab.json")


@pytest.mark.parametrize("dtype,vocab_dtype", [("int8", None), ("int4", "int4"), ("bfloat16", None)])
def test_gpt_infer_quantized_export_matches_python_predictor(cpp_build, model_dir, tmp_path, dtype,
                                                             vocab_dtype):
    """int8, int4 with the token table and LM head in int4 too (which gpt_infer learns
    from the export's architecture string), and bfloat16."""
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    out = export_model(model_dir, tmp_path / dtype, dtype=dtype, vocab_dtype=vocab_dtype,
                       log=lambda s: None)
    args = ["--model_dir", out, "--json", "--decode_strategy", "sampling", "--topk", 5, "--seed", 9,
            "--max_length", 10]
    for p in PROMPTS:
        args += ["--prompt", p]
    proc = run_infer(cpp_build, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    got = json.loads(proc.stdout.decode("utf-8"))
    want = Predictor(out).generate(PROMPTS, decode_strategy="sampling", top_k=5, seed=9, max_new_tokens=10)
    assert got["ids"] == want.ids.tolist() and got["texts"] == want.texts


@pytest.mark.parametrize("family", ["llama-gqa", "gpt_neox"])
def test_other_families_export_predictor_and_gpt_infer_agree(cpp_build, model_dir, tmp_path,
                                                            family):
    """A LLaMA (grouped-query) and a GPT-NeoX model from transformers, exported: the
    Python predictor and gpt_infer give dygraph FasterGPT's ids."""
    transformers = pytest.importorskip("transformers")
    import families
    from fastergpt import FasterGPT
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor
    from fastergpt.tokenizer import Tokenizer

    config_cls, model_cls, kwargs = families.FAMILIES[family]
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    config = getattr(transformers, config_cls)(vocab_size=vocab, bos_token_id=0, eos_token_id=0,
                                               pad_token_id=0, **kwargs)
    src = tmp_path / "src"
    getattr(transformers, model_cls)(config).save_pretrained(src)
    for f in ("vocab.json", "merges.txt", "tokenizer.json"):
        shutil.copy(model_dir / f, src / f)
    out = export_model(src, tmp_path / "exported", log=lambda s: None)
    assert json.loads((out / "config.json").read_text())["model"]["model_type"] == config.model_type

    settings = {"decode_strategy": "greedy_search", "max_new_tokens": 10, "eos_token_id": -1}
    want = Predictor(out).generate(PROMPTS, **settings)
    ids, mask = Tokenizer.from_dir(src).encode_batch(PROMPTS)
    dygraph = FasterGPT.from_pretrained(src).generate(ids, mask, **settings)
    assert want.ids.tolist() == dygraph.ids.numpy().tolist()
    args = ["--model_dir", out, "--json", "--max_length", 10, "--decode_strategy", "greedy_search",
            "--eos_token_id", -1]
    for p in PROMPTS:
        args += ["--prompt", p]
    proc = run_infer(cpp_build, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout.decode("utf-8"))["ids"] == want.ids.tolist()
    # The same prompts as token ids (what a tokenizer gpt_infer cannot read needs).
    args = args[:args.index("--prompt")]
    for row, m in zip(ids, mask):
        args += ["--input_ids", ",".join(str(int(i)) for i in row[m == 1])]
    proc = run_infer(cpp_build, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout.decode("utf-8"))["ids"] == want.ids.tolist()


def test_input_ids_without_a_readable_tokenizer(cpp_build, exported, tmp_path):
    """An export whose tokenizer gpt_infer cannot read runs from --input_ids; text
    prompts then get an error that says so."""
    d = tmp_path / "no_bpe"
    shutil.copytree(exported, d)
    (d / "vocab.json").unlink()
    (d / "merges.txt").unlink()
    (d / "tokenizer.json").unlink()
    proc = run_infer(cpp_build, "--model_dir", d, "--input_ids", "5,6,7", "--max_length", 4,
                     "--decode_strategy", "greedy_search")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "[5 6 7] ->" in proc.stdout.decode()
    bad(cpp_build, ["--model_dir", d, "--prompt", "x"], "pass the prompts as --input_ids")
    bad(cpp_build, ["--model_dir", exported, "--input_ids", "1,x"], "expected a number")
    bad(cpp_build, ["--model_dir", exported, "--input_ids", "1,99999"], "outside the vocabulary")
    bad(cpp_build, ["--model_dir", exported, "--input_ids", "1", "--prompt", "x"], "not both")


def test_hostile_files_and_numbers_exit_2(cpp_build, exported, tmp_path):
    """Inputs that used to abort, segfault or be misread: a vocab id of -1, 1e300 or
    NaN, a deeply nested config.json, huge or NaN numbers for integer flags."""
    for bad_id, message in (("-1", "is not an integer in [0, 2^24)"),
                            ("1e300", "is not an integer in [0, 2^24)"),
                            ("2.5", "is not an integer in [0, 2^24)"),
                            ("NaN", "invalid JSON")):
        d = tmp_path / f"vocab_{bad_id}"
        shutil.copytree(exported, d)
        vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
        vocab[next(iter(vocab))] = "__BAD__"
        (d / "vocab.json").write_text(json.dumps(vocab).replace('"__BAD__"', bad_id),
                                      encoding="utf-8")
        bad(cpp_build, ["--model_dir", d, "--prompt", "x"], message)
    deep = tmp_path / "deep"
    shutil.copytree(exported, deep)
    (deep / "config.json").write_text("[" * 100000 + "]" * 100000)
    bad(cpp_build, ["--model_dir", deep, "--prompt", "x"], "nesting deeper than 64 levels")
    # The engine's architecture entry, which sizes the memory check: not a string, or a
    # string without the sizes (it had divided by a head count of 0).
    for architecture, message in ((None, "'architecture' must be a string"),
                                  ("", "'architecture': num_layers must be >= 1"),
                                  ("num_layers=2;", "'architecture': num_heads must be >= 1")):
        d = tmp_path / f"architecture_{len(str(architecture))}"
        shutil.copytree(exported, d)
        info = json.loads((d / "config.json").read_text(encoding="utf-8"))
        (d / "config.json").write_text(json.dumps({**info, "architecture": architecture}),
                                       encoding="utf-8")
        bad(cpp_build, ["--model_dir", d, "--prompt", "x"], message)
    bad(cpp_build, ["--model_dir", exported, "--prompt", "x", "--max_length", "1e30"],
        "max_new_tokens must be <= 1073741824")
    bad(cpp_build, ["--model_dir", exported, "--prompt", "x", "--max_length", "nan"],
        "max_new_tokens must be >= 1, got")
    bad(cpp_build, ["--model_dir", exported, "--prompt", "x", "--batch_size", "1e30"],
        "--batch_size must be an integer >= 0")
    bad(cpp_build, ["--model_dir", exported, "--prompt", "x", "--seed", "-3"],
        "seed must be >= 0, got -3")


def test_tokenizer_json_alone(cpp_build, exported, tmp_path):
    """With only tokenizer.json (a ByteLevel BPE, as GPT-NeoX ships), gpt_infer gives
    the ids it gives from vocab.json + merges.txt; a tokenizer.json with another
    pre-tokenizer (LLaMA-3's Split pattern) is named, and --input_ids still works."""
    d = tmp_path / "json_only"
    shutil.copytree(exported, d)
    (d / "vocab.json").unlink()
    (d / "merges.txt").unlink()
    args = ["--json", "--max_length", 6, "--decode_strategy", "greedy_search"]
    for p in PROMPTS:
        args += ["--prompt", p]
    want = run_infer(cpp_build, "--model_dir", exported, *args)
    got = run_infer(cpp_build, "--model_dir", d, *args)
    assert want.returncode == 0 and got.returncode == 0, got.stderr.decode()
    assert json.loads(got.stdout.decode("utf-8")) == json.loads(want.stdout.decode("utf-8"))
    spec = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    spec["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"},
                             "behavior": "Isolated", "invert": False}
    (d / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    bad(cpp_build, ["--model_dir", d, "--prompt", "x"], "pre-tokenizer 'Split' is not GPT-2's")
    proc = run_infer(cpp_build, "--model_dir", d, "--input_ids", "5,6", "--max_length", 2)
    assert proc.returncode == 0, proc.stderr.decode()


def test_swapped_operator_library_is_refused(cpp_build, exported, tmp_path):
    """gpt_infer loads the directory's library only when its SHA-256 (computed in C++)
    equals the one export recorded (hashlib's): the untouched export runs (every test
    here does), a changed one is refused; --op_library names a library explicitly."""
    from fastergpt.ops import op_library_path

    d = tmp_path / "swapped"
    shutil.copytree(exported, d)
    lib = d / "libfastergpt_ops.so"
    lib.write_bytes(lib.read_bytes() + b"\0")
    bad(cpp_build, ["--model_dir", d, "--prompt", "x"],
        "does not match the SHA-256 its config.json recorded")
    args = ["--prompt", "x", "--max_length", 3, "--json", "--decode_strategy", "greedy_search"]
    ok = run_infer(cpp_build, "--model_dir", d, "--op_library", op_library_path(), *args)
    assert ok.returncode == 0, ok.stderr.decode()
    want = run_infer(cpp_build, "--model_dir", exported, *args)
    assert json.loads(ok.stdout) == json.loads(want.stdout)
    bad(cpp_build, ["--model_dir", d, "--prompt", "x", "--op_library", tmp_path / "none.so"],
        "does not exist")


def test_memory_budget(cpp_build, exported):
    bad(cpp_build, ["--model_dir", exported, "--prompt", "x", "--max_memory_mb", 1,
                    "--num_return_sequences", 64], "but max_memory_mb allows 1 MB")
    from fastergpt.predictor import Predictor

    with pytest.raises(ValueError, match="but max_memory_mb allows 1 MB"):
        Predictor(exported).generate(PROMPTS, max_memory_mb=1, num_return_sequences=64)
