"""Where models come from: resolving a model name or path and reading its weights.

Accepted: the built-in default model (None or "default"), a local HuggingFace or
PaddleNLP checkpoint directory (fastergpt.checkpoint), or a directory written by
fastergpt.export (its packed parameters are read back as they are).
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

from fastergpt.checkpoint import CheckpointError, load_checkpoint
from fastergpt.config import GPTConfig
from fastergpt.jsonfile import read_json_object
from fastergpt.packing import pack_weights, unpack_weights, weight_spec
from fastergpt.quantize import normalize_dtype, numpy_dtype

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
EXPORT_MARKER = "fastergpt_export"
GENERATION_DEFAULTS = {"max_new_tokens": 32, "decode_strategy": "sampling", "top_k": 4,
                       "top_p": 1.0, "temperature": 1.0, "repetition_penalty": 1.0,
                       "min_length": 0}


def resolve_model_path(model_name_or_path: Optional[str]) -> Path:
    if model_name_or_path in (None, "", "default"):
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise CheckpointError(f"the built-in default model is missing from {DEFAULT_MODEL_DIR}")
        return DEFAULT_MODEL_DIR
    path = Path(os.fspath(model_name_or_path)).expanduser()
    if not path.exists():
        raise CheckpointError(f"model {str(model_name_or_path)!r} is neither 'default' nor an "
                              "existing directory (no model hub is used: give a local path)")
    if not path.is_dir():
        raise CheckpointError(f"model path {str(path)!r} is a file; give the checkpoint's directory")
    return path


def tokenizer_or_none(model_name_or_path):
    """The tokenizer of a model source, or None when it has no tokenizer files (a
    tokenizer that is there but unreadable raises, naming its file)."""
    from fastergpt.tokenizer import Tokenizer, TokenizerError

    path = resolve_model_path(model_name_or_path)
    try:
        return Tokenizer.from_dir(path)
    except TokenizerError as e:
        if "no tokenizer found" in str(e):
            return None
        raise


def is_export_dir(path: Path) -> bool:
    try:
        return EXPORT_MARKER in read_json_object(path / "config.json")
    except ValueError:
        return False


def read_export_config(path: Path) -> dict:
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} is not an exported inference directory: config.json is missing")
    info = read_json_object(path / "config.json", CheckpointError)
    if EXPORT_MARKER not in info:
        raise CheckpointError(f"{path} is not a fastergpt inference directory (no "
                              f"'{EXPORT_MARKER}' entry in config.json); export it with export_model.py")
    _check_export_entries(path / "config.json", info)
    return info


# The types of the entries the readers of an export take from its config.json (an entry
# an older export lacks is left to them); a damaged or hand-edited file is refused here,
# by name, rather than failing somewhere in them.
_EXPORT_ENTRIES = {"model": dict, "files": dict, "op_library": dict, "generation": dict,
                   "settings": list, "dtype": str}
_EXPORT_FILES = ("model", "params", "op_library", "prefix")
_JSON_NAMES = {dict: "object", list: "array", str: "string"}


def _check_export_entries(file: Path, info: dict) -> None:
    def refuse(what):
        raise CheckpointError(f"{file}: {what}; re-export the model with export_model.py")

    for key, kind in _EXPORT_ENTRIES.items():
        if key in info and not isinstance(info[key], kind):
            refuse(f"'{key}' must be a JSON {_JSON_NAMES[kind]}, got {type(info[key]).__name__}")
    files = info.get("files", {})
    for key in _EXPORT_FILES:  # (every export has written all four)
        if key not in files:
            refuse(f"'files' names no '{key}'")
        if not isinstance(files[key], str):
            refuse(f"'files.{key}' must be a file name")
    if not all(isinstance(name, str) for name in info.get("settings", [])):
        refuse("'settings' must be setting names")


def _packed_from_export(path: Path) -> tuple[GPTConfig, list, str]:
    import paddle

    info = read_export_config(path)
    config = GPTConfig.from_dict(info["model"]).validate()
    dtype = info["dtype"]
    prefix = str(path / info["files"]["prefix"])
    if not str(info["files"].get("model", "")).endswith(".json"):
        # paddle.jit.load cannot read a ProgramDesc in PIR mode, and in legacy mode it renames
        # the weights, losing the order the engine needs.
        raise CheckpointError(
            f"{path}: a legacy-format (model.pdmodel) export cannot be read back into dygraph; "
            "load the source checkpoint, or export with the default PIR format")
    try:
        layer = paddle.jit.load(prefix)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read the exported parameters: {e}") from None
    # FasterGPT names each weight "fastergpt_w<index>_<engine name>" and the saved
    # program keeps the name (PIR appends "_<k>"); the index is its place in weight_spec.
    numbered = []
    for tensor in layer.parameters():
        m = re.match(r"fastergpt_w(\d+)_", tensor.name)
        if m:
            numbered.append((int(m.group(1)), tensor))
    numbered.sort(key=lambda item: item[0])
    spec = weight_spec(config, dtype)
    if len(numbered) != len(spec):
        raise CheckpointError(f"{path}: the export holds {len(numbered)} weights, the model "
                              f"described by config.json needs {len(spec)}")
    packed = []
    for entry, (_, tensor) in zip(spec, numbered):
        name, shape, dt = entry.name, entry.shape, entry.dtype
        arr = np.asarray(tensor.numpy())
        fits = len(arr.shape) == len(shape) and all(  # -1: any size (int4's group count)
            got == want or (want == -1 and got > 0) for got, want in zip(arr.shape, shape))
        if not fits or arr.dtype != numpy_dtype(dt):
            raise CheckpointError(f"{path}: exported weight {name} is {arr.dtype} "
                                  f"{tuple(arr.shape)}, expected {dt} {tuple(shape)}")
        packed.append((name, arr))
    return config, packed, dtype


def load_packed(model_name_or_path, dtype: Optional[str] = None,
                vocab_dtype: Optional[str] = None) -> tuple[GPTConfig, list, str]:
    """(config, packed engine weights, their format) for any accepted model source.
    dtype None means float32 for a checkpoint and the stored format for an
    exported directory (which cannot change format without a new export).
    vocab_dtype: the token table's and LM head's format (None: the weight format's
    own, which for int4 is int8, or int4 for a checkpoint whose LM head is 4-bit); the
    config records it."""
    dtype = None if dtype is None else normalize_dtype(dtype)
    vocab_dtype = None if vocab_dtype is None else normalize_dtype(vocab_dtype, "vocab_dtype")
    path = resolve_model_path(model_name_or_path)
    if is_export_dir(path):
        config, packed, exported = _packed_from_export(path)
        if dtype is not None and exported != dtype:
            raise ValueError(f"{path} was exported with dtype {exported}; load it with "
                             f"dtype={exported!r} or export the checkpoint again with --dtype {dtype}")
        stored = vocabulary_dtype(config, exported) if vocab_dtype is not None else None
        if stored is not None and vocab_dtype != stored:
            raise ValueError(f"{path} was exported with its token table and LM head in "
                             f"{stored}; leave vocab_dtype out or "
                             f"export the checkpoint again with --vocab_dtype {vocab_dtype}")
        return config, packed, exported
    config, state = load_checkpoint(path)
    dtype = dtype or "float32"
    if vocab_dtype is None and dtype == "int4" and _has_4bit_head(config, state):
        vocab_dtype = "int4"  # a GPTQ checkpoint's quantized LM head keeps its 4 bits
    config = config.with_vocab_dtype(vocab_dtype)
    return config, pack_weights(config, state, dtype), dtype


def _has_4bit_head(config: GPTConfig, state: dict) -> bool:
    """Whether the checkpoint's LM head is a 4-bit matrix (fastergpt quantize --lm_head)."""
    from fastergpt import int4
    from fastergpt.models import family

    return isinstance(state.get(family(config.model_type).LM_HEAD), int4.QuantizedMatrix)


def vocabulary_dtype(config: GPTConfig, dtype: str) -> str:
    """The format the LM head (and, but for an int4 vocabulary, which keeps its token
    table in int8, the token table) takes under weight format `dtype`."""
    formats = {e.name: e.format for e in weight_spec(config, dtype) if e.matrix}
    return formats.get("lm_head.weight", formats["token_embedding"])


def load_state_dict(model_name_or_path) -> tuple[GPTConfig, dict]:
    """(config, HF-named state dict) for any accepted model source (reference model use)."""
    path = resolve_model_path(model_name_or_path)
    if is_export_dir(path):
        config, packed, _ = _packed_from_export(path)
        state = unpack_weights(packed, config)
        if config.tie_word_embeddings and "lm_head.weight" in state:
            # an int4 vocabulary's head, packed apart from its int8 table: no longer the same
            config = dataclasses.replace(config, tie_word_embeddings=False)
        return config, state
    return load_checkpoint(path)


def generation_defaults(model_dir: Path, config, tokenizer) -> dict:
    """Default settings: the checkpoint's generation_config.json where it has one."""
    settings = dict(GENERATION_DEFAULTS)
    gc = model_dir / "generation_config.json"
    if gc.is_file():
        raw = read_json_object(gc, CheckpointError)
        for key in ("max_new_tokens", "top_k", "top_p", "temperature", "repetition_penalty"):
            if raw.get(key) is not None:
                settings[key] = raw[key]
        if "do_sample" in raw:
            settings["decode_strategy"] = "sampling" if raw["do_sample"] else "greedy_search"
    eos = config.eos_token_id if config.eos_token_id is not None else tokenizer.eos_token_id
    pad = config.pad_token_id if config.pad_token_id is not None else tokenizer.pad_token_id
    settings["eos_token_id"] = eos
    settings["pad_token_id"] = pad if pad is not None else eos
    return settings
