"""Exports a model to a deployable Paddle inference directory, then verifies it.

The directory holds the static program (PIR `model.json` by default, legacy
`model.pdmodel` on request), the packed parameters (`model.pdiparams`), the
tokenizer files, the operator library the program needs, and a `config.json`
with the model shape, dtype, file names and default generation settings.
Every generation setting stays a runtime input of the program.

After writing, the directory is loaded by the Paddle Inference predictor in a
fresh process; a probe prompt is generated greedily and compared with the
dygraph FasterGPT. Writing goes to a temporary sibling directory that replaces
the target only once everything succeeded, so a failed export leaves the
user's files as they were.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Optional

import fastergpt
from fastergpt.pretrained import (EXPORT_MARKER, generation_defaults, is_export_dir,
                                  resolve_model_path)
from fastergpt.quantize import normalize_dtype

PREFIX = "model"
FORMATS = {"pir": ".json", "legacy": ".pdmodel"}
PROBE_PROMPT = "The function returns"
# Spelled out: the directory's defaults (config.json "generation", e.g. a
# repetition penalty) must not differ from what the dygraph side uses.
PROBE_SETTINGS = dict(decode_strategy="greedy_search", eos_token_id=-1, repetition_penalty=1.0,
                      min_length=0, top_k=0, top_p=1.0, temperature=1.0)


class ExportError(RuntimeError):
    """Export refused or failed; the message says why."""


def _subprocess_env(fmt: Optional[str] = None) -> dict:
    env = dict(os.environ)
    root = str(Path(fastergpt.__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if fmt == "legacy":
        env["FLAGS_enable_pir_api"] = "0"  # only read at start-up, hence the subprocess
    else:
        env.pop("FLAGS_enable_pir_api", None)
    return env


def _run_worker(args: list, fmt: Optional[str] = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "fastergpt._export_worker", *args],
                          capture_output=True, text=True, env=_subprocess_env(fmt))
    if proc.returncode != 0:
        raise ExportError(f"`{' '.join(args[:1])}` step failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def export_model(model_name_or_path, inference_model_dir, dtype: str = "float32",
                 fmt: str = "pir", overwrite: bool = False, verify: bool = True,
                 log: Callable[[str], None] = print, vocab_dtype: Optional[str] = None) -> Path:
    from fastergpt.faster_gpt import FasterGPT
    from fastergpt.ops import library_sha256, op_library_path
    from fastergpt.settings import setting_names
    from fastergpt.tokenizer import Tokenizer

    dtype = normalize_dtype(dtype)
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    out = Path(os.fspath(inference_model_dir)).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ExportError(f"{out} is not empty; pass --overwrite to replace its contents")
        if not is_export_dir(out):
            # --overwrite replaces an earlier export, never a directory of other files.
            raise ExportError(f"{out} is not empty and is not a fastergpt export (no config.json "
                              "with its marker); refusing to overwrite it, choose another directory")
    src = resolve_model_path(model_name_or_path)
    model = FasterGPT.from_pretrained(src, dtype=dtype, vocab_dtype=vocab_dtype)
    tokenizer = Tokenizer.from_dir(src)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ExportError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only "
                          f"{model.config.vocab_size}")

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(out)}{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the export private
    try:
        log(f"exporting {src} ({dtype}, {fmt}) ...")
        _run_worker(["save", str(src), str(tmp / PREFIX), dtype, vocab_dtype or ""], fmt)
        for f in tokenizer.files:
            shutil.copy(f, tmp / f.name)
        lib = op_library_path()
        shutil.copy(lib, tmp / lib.name)
        import paddle

        info = {
            EXPORT_MARKER: fastergpt.__version__,
            "format": fmt,
            "dtype": model.weight_format,
            "files": {"prefix": PREFIX, "model": PREFIX + FORMATS[fmt],
                      "params": PREFIX + ".pdiparams", "op_library": lib.name,
                      "tokenizer": [f.name for f in tokenizer.files]},
            "paddle_version": paddle.__version__,
            # Which build the directory's library is: a loader runs it only when it
            # matches the installed fastergpt's, or when the caller trusts it.
            "op_library": {"sha256": library_sha256(lib), "build_key": lib.parent.name},
            "model": model.config.to_dict(),
            "architecture": model.config.architecture_string(),  # for gpt_infer
            # The layout of the graph's `settings` input (also an attribute of its op).
            "settings": list(setting_names()),
            # Whether the graph holds the tokenizer's vocabulary as bytes, which the
            # engine matches stop strings on (fastergpt.stops).
            "stop_strings": model.no_vocabulary_reason is None,
            "generation": generation_defaults(src, model.config, tokenizer),
        }
        (tmp / "config.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        if verify:
            verify_export(tmp, model, tokenizer, log)
        _replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out}")
    return out


def _temp_prefix(out: Path) -> str:
    return f".{out.name}.export-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(out: Path) -> None:
    """Removes the temporaries of earlier exports to `out` whose process is gone
    (killed mid-export); the pid is part of the name."""
    for d in out.parent.glob(_temp_prefix(out) + "*"):
        pid = d.name[len(_temp_prefix(out)):].split("-", 1)[0]
        if not pid.isdigit() or not d.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def _replace(new: Path, out: Path) -> None:
    """Puts `new` at `out` with renames only: the old export moves aside first and is
    deleted after, so at every moment `out` is either the old or the new export."""
    if not out.exists():
        new.rename(out)
        return
    old = out.parent / f"{_temp_prefix(out)}{os.getpid()}-old"
    out.rename(old)
    try:
        new.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def verify_export(directory: Path, model, tokenizer, log: Callable[[str], None] = print,
                  prompt: str = PROBE_PROMPT, max_new_tokens: int = 16) -> None:
    """Predictor in a fresh process vs dygraph FasterGPT, greedy on a probe prompt."""
    ids, mask = tokenizer.encode_batch([prompt])
    want = model.generate(ids, mask, max_new_tokens=max_new_tokens, **PROBE_SETTINGS).ids.numpy()
    got = json.loads(_run_worker(["probe", str(directory), prompt, str(max_new_tokens)])
                     .strip().splitlines()[-1])
    if got != want.tolist():
        raise ExportError(f"verification failed: the predictor generated {got}, dygraph "
                          f"FasterGPT {want.tolist()}")
    log(f"verified: the Paddle Inference predictor (fresh process) matches dygraph FasterGPT on "
        f"{prompt!r}: {tokenizer.decode(want[0])!r}")
