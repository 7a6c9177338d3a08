"""Bad input at the command lines: `infer/infer.py` (fastergpt-infer), the export
command (fastergpt-export) and the C++ `gpt_infer`. Every case must exit with
status 2 and a message on stderr that names the problem, never a traceback, a
crash or a hang; nothing the user had is changed. The tables here are rendered
into docs/bad-input.md by tools/bad_input_catalogue.py (checked by
tests/test_bad_input.py).

The Python commands run in-process (their `main(argv)`), gpt_infer as a process.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

# ---- the cases ---------------------------------------------------------------------
# A message is a regex searched in stderr, or {front end: regex} where they differ.

PROMPT = ["--prompt", "hello world", "--max_new_tokens", "4"]

# Generation settings given as flags: infer.py (over a checkpoint) and gpt_infer (over
# its export). The export's n_positions is 64 and its vocabulary 330 tokens.
SETTING_FLAGS = [
    ("top_p-0", ["--top_p", "0"], r"top_p must be in \(0, 1\], got 0"),
    ("top_p-1.5", ["--top_p", "1.5"], r"top_p must be in \(0, 1\], got 1.5"),
    ("top_p-nan", ["--top_p", "nan"], r"top_p must be in \(0, 1\], got nan"),
    ("top_k-negative", ["--top_k", "-1"], r"top_k must be >= 0"),
    ("top_k-fraction", ["--top_k", "2.5"],
     {"infer": r"--top_k.*invalid int value: '2.5'", "gpt_infer": r"top_k must be an integer, got 2.5"}),
    ("top_k-word", ["--topk", "many"],
     {"infer": r"--top(_)?k.*invalid int value: 'many'", "gpt_infer": r"--topk.*expected a number"}),
    ("temperature-0-sampling", ["--decode_strategy", "sampling", "--temperature", "0"],
     r"temperature must be > 0 for sampling"),
    ("temperature-negative", ["--temperature", "-0.5"], r"temperature must be >= 0 and finite, got -0.5"),
    ("temperature-inf", ["--temperature", "inf"], r"temperature must be >= 0 and finite, got inf"),
    ("max_new_tokens-0", ["--max_new_tokens", "0"], r"max_new_tokens must be >= 1, got 0"),
    ("max_new_tokens-huge", ["--max_new_tokens", "99999999999"],
     r"max_new_tokens must be <= 1073741824"),
    ("beyond-n_positions", ["--max_new_tokens", "100"],
     r"prompt 0 has \d+ tokens; with max_new_tokens=100 it needs \d+ positions but the model has 64"),
    ("num_return_sequences-0", ["--num_return_sequences", "0"], r"num_return_sequences must be >= 1, got 0"),
    ("num_return_sequences-huge", ["--num_return_sequences", "100000"],
     r"num_return_sequences must be <= 65536"),
    ("repetition_penalty-0", ["--repetition_penalty", "0"], r"repetition_penalty must be > 0"),
    ("repetition_penalty-negative", ["--repetition_penalty", "-1.3"], r"repetition_penalty must be > 0"),
    ("repetition_penalty-inf", ["--repetition_penalty", "inf"], r"repetition_penalty must be > 0"),
    ("decode_strategy-unknown", ["--decode_strategy", "beam"],
     {"infer": r"--decode_strategy: invalid choice: 'beam'", "gpt_infer": r"decode_strategy.*beam"}),
    ("eos-outside-vocab", ["--eos_token_id", "330"], r"eos_token_id 330 is outside the vocabulary"),
    ("pad-outside-vocab", ["--pad_token_id", "5000"], r"pad_token_id 5000 is outside the vocabulary"),
    ("min_length-negative", ["--min_length", "-1"], r"min_length must be >= 0"),
    ("num_threads-negative", ["--num_threads", "-1"], r"num_threads must be >= 0"),
    ("num_threads-huge", ["--threads", "5000"], r"num_threads must be <= 1024"),
    ("seed-negative", ["--seed", "-3"], r"seed must be >= 0, got -3"),
    ("seed-beyond-2^53", ["--seed", str(2**62)], r"seed must be <= 9007199254740991"),
    ("stop-empty", ["--stop", ""], r"stop: string 0 is empty"),
    ("stop-with-beam-search", ["--decode_strategy", "beam_search", "--num_beams", "2", "--stop", "x"],
     r"stop strings are not supported with beam search"),
    ("end_token_ids-outside-vocab", ["--end_token_ids", "3,330"],
     r"end_token_ids: 330 is outside the vocabulary"),
    ("end_token_ids-word", ["--end_token_ids", "x"],
     {"infer": r"--end_token_ids: expected token ids", "gpt_infer": r"--end_token_ids: expected a number"}),
    ("typical_p-0", ["--typical_p", "0"], r"typical_p must be in \(0, 1\]"),
    ("min_p-1.5", ["--min_p", "1.5"], r"min_p must be in \[0, 1\]"),
    ("memory-over-budget", ["--max_memory_mb", "1", "--num_return_sequences", "1000"],
     r"needs about \d+ MB .* but max_memory_mb allows 1 MB"),
    ("num_beams-0", ["--decode_strategy", "beam_search", "--num_beams", "0"], r"num_beams must be >= 1, got 0"),
    ("beams-fewer-than-returns", ["--decode_strategy", "beam_search", "--num_beams", "2",
                                  "--num_return_sequences", "3"],
     r"num_return_sequences \(3\) must be <= num_beams \(2\) for beam search"),
    ("beams-with-top_k", ["--num_beams", "2", "--top_k", "5"],
     r"top_k is a sampling setting that beam search does not use"),
    ("num_beams-with-sampling", ["--decode_strategy", "sampling", "--num_beams", "3"],
     r"num_beams is 3 but decode_strategy is not beam_search"),
    ("early_stopping-unknown", ["--num_beams", "2", "--early_stopping", "sometimes"],
     {"infer": r"--early_stopping: invalid choice: 'sometimes'", "gpt_infer": r"early_stopping.*sometimes"}),
    ("length_penalty-nan", ["--num_beams", "2", "--length_penalty", "nan"], r"length_penalty must be"),
    ("unknown-flag", ["--beam_size", "4"], r"unrecognized arguments: --beam_size|unknown flag --beam_size"),
    ("flag-without-value", ["--top_k"], r"--top_k.*(expected one argument|needs a value)"),
]


def _corrupt_json(d: Path, name: str, text: str) -> None:
    (d / name).write_text(text, encoding="utf-8")


def _edit_json(d: Path, name: str, **changes) -> None:
    data = json.loads((d / name).read_text(encoding="utf-8"))
    data.update(changes)
    (d / name).write_text(json.dumps(data), encoding="utf-8")


def _append_byte(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0")


def _vocab_id(d: Path, value: str) -> None:
    spec = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
    first = next(iter(spec["model"]["vocab"]))
    spec["model"]["vocab"][first] = "__BAD__"
    (d / "tokenizer.json").write_text(json.dumps(spec).replace('"__BAD__"', value), encoding="utf-8")


def _remove(*names):
    def mutate(d: Path) -> None:
        for name in names:
            (d / name).unlink(missing_ok=True)
    return mutate


# An exported directory made bad: infer.py --inference_model_dir and gpt_infer --model_dir.
BAD_EXPORTS = [
    ("missing-directory", lambda d: shutil.rmtree(d), r"does not exist"),
    ("not-an-export", _remove("model.json", "model.pdiparams"),
     r"model file .*model\.json is missing"),
    ("config-missing", _remove("config.json"), r"config\.json"),
    ("config-not-json", lambda d: _corrupt_json(d, "config.json", "{not json"),
     r"config\.json(: invalid JSON| is not valid JSON)"),
    ("config-too-deep", lambda d: _corrupt_json(d, "config.json", "[" * 100000 + "]" * 100000),
     {"infer": r"config\.json is not valid JSON: nested too deeply",
      "gpt_infer": r"nesting deeper than 64 levels"}),
    ("library-swapped", lambda d: _append_byte(d / "libfastergpt_ops.so"),
     {"infer": r"operator library .* differs .*--trust_library|trust_library",
      "gpt_infer": r"does not match the SHA-256 its config.json recorded"}),
    ("library-missing", _remove("libfastergpt_ops.so"), r"operator library|libfastergpt_ops\.so"),
    ("weights-truncated", lambda d: (d / "model.pdiparams").write_bytes(b"\0" * 16),
     r"Paddle Inference cannot load .*model\.json \+ .*model\.pdiparams \("),
    ("tokenizer-missing", _remove("tokenizer.json", "vocab.json", "merges.txt"),
     r"no tokenizer|tokenizer\.json|vocab\.json"),
    ("tokenizer-id-negative", lambda d: _vocab_id(d, "-1"),
     r"is not an integer in \[0, 2\^24\)|tokenizer\.json"),
    ("tokenizer-not-json", lambda d: _corrupt_json(d, "tokenizer.json", "]"),
     r"tokenizer\.json"),
]

# A checkpoint made bad: infer.py --model_name_or_path and the export command.
BAD_CHECKPOINTS = [
    ("missing-directory", lambda d: shutil.rmtree(d), r"is neither 'default' nor an existing directory"),
    ("no-weights", _remove("model.safetensors"), r"no weights found"),
    ("config-missing", _remove("config.json"), r"config\.json is missing"),
    ("config-not-json", lambda d: _corrupt_json(d, "config.json", "{"), r"config\.json is not valid JSON"),
    ("model_type-unsupported", lambda d: _edit_json(d, "config.json", model_type="bloom"),
     r"unsupported architecture model_type='bloom'"),
    ("activation-unsupported", lambda d: _edit_json(d, "config.json", activation_function="tanh"),
     r"activation_function 'tanh' is not supported"),
    ("n_layer-0", lambda d: _edit_json(d, "config.json", n_layer=0), r"n_layer"),
    ("n_head-negative", lambda d: _edit_json(d, "config.json", n_head=-2), r"n_head"),
    ("n_embd-not-divisible", lambda d: _edit_json(d, "config.json", n_head=5), r"n_head|n_embd"),
    ("vocab-absurd", lambda d: _edit_json(d, "config.json", vocab_size=2**40),
     r"transformer\.wte\.weight has shape \(330, 32\), expected \(1099511627776, 32\)"),
    ("safetensors-truncated", lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:-100]), r"model\.safetensors is corrupt or truncated"),
    ("safetensors-garbage", lambda d: (d / "model.safetensors").write_bytes(b"\xff" * 64),
     r"model\.safetensors is corrupt or truncated"),
    ("tensor-wrong-shape", lambda d: _rewrite_tensors(d, lambda t: t.update(
        {"transformer.wte.weight": t["transformer.wte.weight"][:, :-1]})),
     r"transformer\.wte\.weight has shape"),
    ("tensor-missing", lambda d: _rewrite_tensors(d, lambda t: t.pop("transformer.ln_f.bias")),
     r"missing tensor.*transformer\.ln_f\.bias"),
    ("tensor-unexpected", lambda d: _rewrite_tensors(d, lambda t: t.update(
        {"transformer.h.0.attn.rotary.weight": np.zeros(4, np.float32)})),
     r"unexpected tensor.*transformer\.h\.0\.attn\.rotary\.weight"),
    ("tensor-nan", lambda d: _rewrite_tensors(d, lambda t: t["transformer.ln_f.bias"].__setitem__(0, np.nan)),
     r"transformer\.ln_f\.bias holds NaN or Inf"),
    ("tensor-integer", lambda d: _rewrite_tensors(d, lambda t: t.update(
        {"transformer.ln_f.bias": t["transformer.ln_f.bias"].astype(np.int16)})),
     r"has dtype I16; model weights must be floating point"),
    ("pickle-runs-code", lambda d: _malicious_pdparams(d), r"refusing to load it: it references posix\.system"),
    ("pickle-not-a-state-dict", lambda d: _pickle_pdparams(d, [1, 2, 3]), r"does not hold a state dict"),
    ("tokenizer-not-json", lambda d: _corrupt_json(d, "tokenizer.json", "]"), r"tokenizer\.json"),
    ("tokenizer-missing", _remove("tokenizer.json"), r"tokenizer"),
    ("generation_config-not-json", lambda d: _corrupt_json(d, "generation_config.json", "{"),
     r"generation_config\.json is not valid JSON"),
    ("tokenizer_config-a-list", lambda d: _corrupt_json(d, "tokenizer_config.json", "[1]"),
     r"tokenizer_config\.json does not hold a JSON object \(it holds a list\)"),
    ("path-is-a-file", lambda d: (shutil.rmtree(d), d.write_bytes(b"x")), r"is a file"),
    ("pdparams-truncated", lambda d: _pickle_pdparams(d, {"w": np.zeros(3, np.float32)}, cut=20),
     r"model_state\.pdparams is corrupt or truncated"),
    ("torch-bin-runs-code", lambda d: _malicious_torch_bin(d), r"pytorch_model\.bin"),
    ("layer_norm_epsilon-inf", lambda d: _corrupt_json(
        d, "config.json", (d / "config.json").read_text().replace('"layer_norm_epsilon": 1e-05',
                                                                  '"layer_norm_epsilon": Infinity')),
     r"layer_norm_epsilon"),
    ("n_positions-0", lambda d: _edit_json(d, "config.json", n_positions=0, n_ctx=0), r"n_positions"),
    ("tied-head-differs", lambda d: _rewrite_tensors(d, lambda t: t.update(
        {"lm_head.weight": t["transformer.wte.weight"] + 1})),
     r"tie_word_embeddings but lm_head\.weight differs"),
]

MARKER = "pickle_ran"  # the file the malicious pickle would create, next to the checkpoint


def _rewrite_tensors(d: Path, edit) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(d / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(d / "model.safetensors"))


def _pickle_pdparams(d: Path, obj, cut: int = 0) -> None:
    (d / "model.safetensors").unlink()
    data = pickle.dumps(obj, protocol=4)
    (d / "model_state.pdparams").write_bytes(data[:len(data) - cut])


def _malicious_torch_bin(d: Path) -> None:
    import torch

    (d / "model.safetensors").unlink()
    torch.save({"transformer.wte.weight": _Marker(d.parent / MARKER)}, str(d / "pytorch_model.bin"))


class _Marker:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _malicious_pdparams(d: Path) -> None:
    _pickle_pdparams(d, {"transformer.wte.weight": _Marker(d.parent / MARKER)})


# Flags and files of one command: (id, front end, argv builder(ctx, tmp), message).
OTHER = [
    ("prompt_file-missing", "infer", lambda c, t: c.infer_args + ["--prompt_file", t / "none.txt"],
     r"--prompt_file .*none\.txt: No such file"),
    ("prompt_file-empty", "infer", lambda c, t: c.infer_args + ["--prompt_file", _file(t, b"\n \n")],
     r"--prompt_file .* holds no prompt"),
    ("prompt_file-not-utf8", "infer", lambda c, t: c.infer_args + ["--prompt_file", _file(t, b"\xff\xfe\n")],
     r"--prompt_file .* is not UTF-8 text"),
    ("batch_size-0", "infer", lambda c, t: c.infer_args + PROMPT + ["--batch_size", "0"],
     r"--batch_size must be >= 1"),
    ("start_token-unknown", "infer", lambda c, t: c.infer_args + ["--start_token", "<nope>"],
     r"--start_token '<nope>' is not in the vocabulary"),
    ("end_token-unknown", "infer", lambda c, t: c.infer_args + PROMPT + ["--end_token", "<nope>"],
     r"--end_token '<nope>' is not in the vocabulary"),
    ("dtype-unknown", "infer", lambda c, t: c.infer_args + PROMPT + ["--dtype", "int3"],
     r"--dtype: invalid choice: 'int3'"),
    ("vocab_dtype-unknown", "infer", lambda c, t: c.infer_args + PROMPT + ["--vocab_dtype", "int3"],
     r"--vocab_dtype: invalid choice: 'int3'"),
    # An export runs in its own formats: asking for others is refused, not ignored.
    ("dtype-other-than-export", "infer",
     lambda c, t: ["--inference_model_dir", c.exported] + PROMPT + ["--dtype", "int8"],
     r"the exported directory holds float32 weights where --dtype asks for int8"),
    ("vocab_dtype-other-than-export", "infer",
     lambda c, t: ["--inference_model_dir", c.exported] + PROMPT + ["--vocab_dtype", "int4"],
     r"the exported directory holds float32 weights where --vocab_dtype asks for int4"),
    ("device-unknown", "infer", lambda c, t: c.infer_args + PROMPT + ["--device", "tpu"],
     r"--device: invalid choice: 'tpu'"),
    # Where no GPU can run it, that is the error; on a GPU, int8's lack of CUDA kernels.
    ("device-gpu-int8", "infer", lambda c, t: c.infer_args + PROMPT + ["--device", "gpu", "--dtype", "int8"],
     r'device "gpu": (no CUDA GPU is visible|this build of fastergpt has no CUDA backend)'
     r"|int8 has no CUDA kernels; on the GPU use float32 or float16"),
    ("prompt_file-missing", "gpt_infer", lambda c, t: c.gpt_args + ["--prompt_file", t / "none.txt"],
     r"--prompt_file .*none\.txt cannot be opened"),
    ("prompt_file-empty", "gpt_infer", lambda c, t: c.gpt_args + ["--prompt_file", _file(t, b"\n \n")],
     r"--prompt_file .* holds no prompt"),
    ("no-prompt", "gpt_infer", lambda c, t: c.gpt_args, r"at least one --prompt"),
    ("model_dir-absent", "gpt_infer", lambda c, t: PROMPT, r"--model_dir is required"),
    ("batch_size-huge", "gpt_infer", lambda c, t: c.gpt_args + PROMPT + ["--batch_size", "1e30"],
     r"--batch_size must be an integer >= 0"),
    ("input_ids-not-numbers", "gpt_infer", lambda c, t: c.gpt_args + ["--input_ids", "1,x"],
     r"--input_ids"),
    ("input_ids-outside-vocab", "gpt_infer", lambda c, t: c.gpt_args + ["--input_ids", "1,99999"],
     r"id 99999 .* outside the vocabulary"),
    ("op_library-missing", "gpt_infer", lambda c, t: c.gpt_args + PROMPT + ["--op_library", t / "none.so"],
     r"--op_library .*none\.so does not exist"),
    ("output-not-empty", "export", lambda c, t: ["--model_name_or_path", c.checkpoint,
                                                 "--inference_model_dir", _nonempty(t)],
     r"is not empty.*--overwrite"),
    ("output-is-a-file", "export", lambda c, t: ["--model_name_or_path", c.checkpoint,
                                                 "--inference_model_dir", _file(t, b"x")],
     r"is a file|not a directory|exists"),
    ("dtype-unknown", "export", lambda c, t: ["--model_name_or_path", c.checkpoint,
                                              "--inference_model_dir", t / "o", "--dtype", "int3"],
     r"--dtype: invalid choice: 'int3'"),
    ("vocab_dtype-unknown", "export", lambda c, t: ["--model_name_or_path", c.checkpoint,
                                                    "--inference_model_dir", t / "o",
                                                    "--vocab_dtype", "q2"],
     r"--vocab_dtype: invalid choice: 'q2'"),
    ("format-unknown", "export", lambda c, t: ["--model_name_or_path", c.checkpoint,
                                               "--inference_model_dir", t / "o", "--format", "onnx"],
     r"--format: invalid choice: 'onnx'"),
    ("output-absent", "export", lambda c, t: ["--model_name_or_path", c.checkpoint],
     r"the following arguments are required: --inference_model_dir"),
    ("output-inside-checkpoint", "export", lambda c, t: ["--model_name_or_path", _copy(c.checkpoint, t),
                                                         "--inference_model_dir", t / "ckpt"],
     r"is not empty.*--overwrite"),
]


def _file(tmp: Path, data: bytes) -> Path:
    path = tmp / f"file{len(list(tmp.iterdir()))}"
    path.write_bytes(data)
    return path


def _nonempty(tmp: Path) -> Path:
    d = tmp / "taken"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    return d


def _copy(src: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(src, tmp / "ckpt"))


FRONT_ENDS = {"infer": "infer/infer.py (fastergpt-infer)", "export": "fastergpt-export",
              "gpt_infer": "infer/cpp/gpt_infer"}


def message_for(message, front_end: str) -> str:
    return message[front_end] if isinstance(message, dict) else message


def cases_per_front_end() -> dict:
    """{front end: number of cases}: the catalogue's and the issue's count."""
    n = {k: 0 for k in FRONT_ENDS}
    n["infer"] += len(SETTING_FLAGS) + len(BAD_EXPORTS) + len(BAD_CHECKPOINTS)
    n["gpt_infer"] += len(SETTING_FLAGS) + len(BAD_EXPORTS)
    n["export"] += len(BAD_CHECKPOINTS)
    for _, front_end, _, _ in OTHER:
        n[front_end] += 1
    return n


# ---- running them ------------------------------------------------------------------

class Ctx:
    def __init__(self, checkpoint: Path, exported: Path, request):
        self.checkpoint, self.exported, self.request = checkpoint, exported, request
        self.infer_args = ["--model_name_or_path", str(checkpoint)]
        self.gpt_args = ["--model_dir", str(exported)]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, request):
    from layouts import tokenizer_model, write_hf_numpy, write_tokenizer

    from fastergpt.export import export_model

    checkpoint = tmp_path_factory.mktemp("cli_checkpoint")
    write_hf_numpy(checkpoint, tokenizer_model(seed=4))
    write_tokenizer(checkpoint)
    exported = tmp_path_factory.mktemp("cli_export") / "model"
    export_model(checkpoint, exported, log=lambda s: None)
    return Ctx(checkpoint, exported, request)


def run_python(main, argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            code = e.code
    return code, err.getvalue()


def run(ctx: Ctx, front_end: str, argv) -> tuple[int, str]:
    if front_end == "infer":
        from fastergpt.cli.infer import main
        return run_python(main, argv)
    if front_end == "export":
        from fastergpt.cli.export import main
        return run_python(main, argv)
    if front_end == "gpt_infer":
        build, env = ctx.request.getfixturevalue("cpp_build"), None
    else:  # the same binary under AddressSanitizer + UndefinedBehaviorSanitizer
        build, env = ctx.request.getfixturevalue("cpp_build_sanitized")
    proc = subprocess.run([str(build / "gpt_infer"), *map(str, argv)], capture_output=True,
                          timeout=120, env=env)
    err = proc.stderr.decode("utf-8", "replace")
    assert "Sanitizer" not in err and "runtime error:" not in err, err
    return proc.returncode, err


def expect(ctx, front_end, argv, message) -> None:
    code, err = run(ctx, front_end, argv)
    assert "Traceback" not in err, err
    assert code == 2, f"exit status {code}, stderr:\n{err}"
    import re
    assert re.search(message_for(message, front_end.removesuffix("+asan")), err), err


@pytest.mark.parametrize("front_end", ["infer", "gpt_infer", "gpt_infer+asan"])
@pytest.mark.parametrize("flags, message", [pytest.param(f, m, id=i) for i, f, m in SETTING_FLAGS])
def test_bad_setting_flag(ctx, front_end, flags, message):
    base = ctx.infer_args if front_end == "infer" else ctx.gpt_args
    expect(ctx, front_end, base + PROMPT + flags, message)


@pytest.mark.parametrize("front_end", ["infer", "gpt_infer", "gpt_infer+asan"])
@pytest.mark.parametrize("mutate, message", [pytest.param(f, m, id=i) for i, f, m in BAD_EXPORTS])
def test_bad_exported_directory(ctx, tmp_path, front_end, mutate, message):
    d = Path(shutil.copytree(ctx.exported, tmp_path / "model"))
    mutate(d)
    flag = "--inference_model_dir" if front_end == "infer" else "--model_dir"
    expect(ctx, front_end, [flag, d] + PROMPT, message)


@pytest.mark.parametrize("front_end", ["infer", "export"])
@pytest.mark.parametrize("mutate, message", [pytest.param(f, m, id=i) for i, f, m in BAD_CHECKPOINTS])
def test_bad_checkpoint(ctx, tmp_path, front_end, mutate, message):
    d = Path(shutil.copytree(ctx.checkpoint, tmp_path / "ckpt"))
    mutate(d)
    out = tmp_path / "out"
    argv = (["--model_name_or_path", d] + PROMPT if front_end == "infer"
            else ["--model_name_or_path", d, "--inference_model_dir", out])
    expect(ctx, front_end, argv, message)
    assert not (tmp_path / MARKER).exists(), "the checkpoint's pickle ran code"
    assert not out.exists(), "a failed export left an output directory behind"


@pytest.mark.parametrize("front_end, build, message",
                         [pytest.param(fe2, b, m, id=f"{fe2}-{i}") for i, fe, b, m in OTHER
                          for fe2 in ([fe, fe + "+asan"] if fe == "gpt_infer" else [fe])])
def test_bad_command_line(ctx, tmp_path, front_end, build, message):
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    argv = build(ctx, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    expect(ctx, front_end, argv, message)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, "a refused command changed the user's files"


def test_thirty_cases_per_command_line():
    counts = cases_per_front_end()
    assert min(counts.values()) >= 30, counts
