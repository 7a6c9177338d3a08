"""Reads checkpoints from local directories into (GPTConfig, state dict).

Two layouts, no hub access:
- HuggingFace: config.json (any model_type of fastergpt.models: gpt2, opt, gptj,
  codegen, gpt_neox, llama, mistral, qwen2), model.safetensors (read by its
  specification, no torch) or pytorch_model.bin (only with torch
  installed, loaded with weights_only=True).
- PaddleNLP: model_config.json or config.json, model_state.pdparams (GPT, LLaMA),
  read by fastergpt.safe_pickle: only numpy arrays are rebuilt, no code runs.

The state dict keeps the family's own (HF) names; the family's file says how
they become engine weights. Missing, unexpected and mis-shaped tensors are
reported by name; nothing is guessed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.jsonfile import read_json_object

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PADDLENLP_WEIGHT_FILE = "model_state.pdparams"


class CheckpointError(ValueError):
    """A checkpoint directory is missing, malformed or of an unsupported architecture."""


def detect_layout(path: Path) -> str:
    """'hf' or 'paddlenlp', from the files present."""
    if not path.is_dir():
        raise CheckpointError(f"model directory {str(path)!r} does not exist")
    if any((path / f).is_file() for f in HF_WEIGHT_FILES):
        return "hf"
    if (path / PADDLENLP_WEIGHT_FILE).is_file():
        return "paddlenlp"
    raise CheckpointError(
        f"{path}: no weights found (expected one of {', '.join(HF_WEIGHT_FILES)} for the "
        f"HuggingFace layout or {PADDLENLP_WEIGHT_FILE} for the PaddleNLP layout)")


def _read_json(path: Path) -> dict:
    return read_json_object(path, CheckpointError)


# ---- HuggingFace ---------------------------------------------------------------

# What mapping an untrusted config.json can raise: each becomes a CheckpointError.
_CONFIG_ERRORS = (TypeError, ValueError, KeyError, ZeroDivisionError, AttributeError, OverflowError)


def _config_error(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"missing key {e}"
    if isinstance(e, (ZeroDivisionError, AttributeError, OverflowError)):
        return f"inconsistent or malformed values ({type(e).__name__}: {e})"
    return str(e)


def _hf_config(path: Path) -> GPTConfig:
    from fastergpt.models import FAMILIES

    raw = _read_json(path / "config.json")
    model_type = raw.get("model_type")
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        arch = raw.get("architectures")
        raise CheckpointError(f"{path / 'config.json'}: unsupported architecture model_type="
                              f"{model_type!r} architectures={arch!r}; fastergpt runs "
                              f"{', '.join(sorted(FAMILIES))}")
    try:
        return FAMILIES[model_type].config_from_hf(raw).validate()
    except _CONFIG_ERRORS as e:
        raise CheckpointError(f"{path / 'config.json'} ({model_type}): {_config_error(e)}") from None


# ---- safetensors by its specification, any dtype -----------------------------------

# safetensors dtype -> numpy dtype of the stored bytes (BF16: the raw 16 bits).
ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
             "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
             "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
             "BOOL": np.bool_}
FLOATS = ("F64", "F32", "F16", "BF16")
NP_TO_ST = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32",
            np.dtype(np.float16): "F16", np.dtype(np.int64): "I64", np.dtype(np.int32): "I32",
            np.dtype(np.int16): "I16", np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8",
            np.dtype(np.bool_): "BOOL"}


def read_safetensors_typed(path: Path) -> dict:
    """{name: (safetensors dtype, array of the stored values)}: a safetensors file read by
    its specification, keeping each tensor's dtype (BF16 as its raw uint16 bits). A header
    or offset that does not fit the file is reported as corrupt or truncated."""
    path = Path(path)
    data = path.read_bytes()
    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 or n > len(data) - 8:
            raise ValueError(f"header of {n} bytes in a file of {len(data)}")
        header = json.loads(data[8:8 + n])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path} is corrupt or truncated: {e}") from None
    body = memoryview(data)[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], [int(d) for d in meta["shape"]], meta["data_offsets"]
            begin, end = int(begin), int(end)
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path} is corrupt or truncated: bad header entry for {name!r}") from None
        if dtype not in ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype!r}, which fastergpt "
                                  f"does not read ({', '.join(ST_DTYPES)})")
        np_dtype = np.dtype(ST_DTYPES[dtype]).newbyteorder("<")
        count = int(np.prod(shape)) if shape else 1
        if (min(shape, default=1) < 0 or not (0 <= begin <= end <= len(body))
                or end - begin != count * np_dtype.itemsize):
            raise CheckpointError(f"{path} is corrupt or truncated: tensor {name!r} ({dtype} "
                                  f"{shape}) does not fit bytes [{begin}, {end}) of {len(body)}")
        arr = np.frombuffer(body[begin:end], dtype=np_dtype).reshape(shape)
        out[name] = (dtype, np.ascontiguousarray(arr, dtype=np_dtype.newbyteorder("=")))
    return out


def to_float32(dtype: str, arr: np.ndarray) -> np.ndarray:
    """float32 values of a float tensor read by read_safetensors_typed."""
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)


def write_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> None:
    """Writes {name: array or (safetensors dtype, array)} by the specification: larger
    elements first so every tensor is aligned, no holes, header padded to 8 bytes."""
    entries = []
    for name, value in tensors.items():
        dtype, arr = value if isinstance(value, tuple) else (None, value)
        arr = np.ascontiguousarray(arr)
        dtype = dtype or NP_TO_ST.get(arr.dtype)
        if dtype is None:
            raise ValueError(f"tensor {name!r}: dtype {arr.dtype} cannot be stored in safetensors")
        entries.append((-arr.dtype.itemsize, name, dtype, arr))
    entries.sort(key=lambda e: (e[0], e[1]))
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for _, name, dtype, arr in entries:
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for _, _, _, arr in entries:
            f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())


def read_safetensors(path: Path) -> dict:
    """{name: float32 array} from a safetensors file (read_safetensors_typed): float
    tensors of any width (BF16 included) widened to float32; integer tensors are refused
    by name, never cast."""
    out = {}
    for name, (dtype, arr) in read_safetensors_typed(path).items():
        if dtype not in FLOATS:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}; model weights must "
                                  f"be floating point ({', '.join(FLOATS)})")
        out[name] = to_float32(dtype, arr)
    return out


def _hf_tensors(path: Path) -> dict:
    st = path / "model.safetensors"
    if st.is_file():
        return read_safetensors(st)
    binf = path / "pytorch_model.bin"
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{binf} needs torch to read; install torch or convert the "
                              "checkpoint to model.safetensors") from None
    try:
        sd = torch.load(str(binf), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{binf} is corrupt or truncated: {e}") from None
    return {k: v.float().numpy() for k, v in sd.items()}


def _hf_names(config: GPTConfig, tensors: dict) -> dict:
    """The family's canonical names, without the non-weight buffers some files hold."""
    from fastergpt.models import family

    fam = family(config.model_type)
    tensors = {k: v for k, v in tensors.items() if not any(ig in k for ig in fam.IGNORED)}
    return fam.from_hf_tensors(tensors)


# ---- PaddleNLP -----------------------------------------------------------------
# The key and name mapping of each family lives in fastergpt/models/paddlenlp_layout.py
# (shared with live PaddleNLP models, fastergpt/paddlenlp.py).

def _paddlenlp_init_args(raw: dict, file: Path) -> dict:
    """The model's arguments from PaddleNLP 2.x's {"init_args": [{...}], ...}, where the
    first argument may wrap them once more in an "init_args" of its own."""
    def first(args) -> dict:
        if not isinstance(args, list) or not all(isinstance(a, dict) for a in args[:1]):
            raise CheckpointError(f"{file}: 'init_args' must be a list whose first entry is "
                                  "the model's arguments (a JSON object)")
        return args[0] if args else {}

    args = first(raw["init_args"])
    return dict(first(args["init_args"])) if "init_args" in args else dict(args)


def _paddlenlp_config(path: Path) -> GPTConfig:
    from fastergpt.models.paddlenlp_layout import LayoutError, config_from_paddlenlp

    for name in ("model_config.json", "config.json"):
        if (path / name).is_file():
            raw = _read_json(path / name)
            break
    else:
        raise CheckpointError(f"{path}: model_config.json or config.json is missing")
    if "init_args" in raw:  # PaddleNLP 2.x wrote {"init_args": [{...}], "init_class": ...}
        raw = _paddlenlp_init_args(raw, path / name)
    model_type = raw.get("model_type", "gpt")
    try:
        return config_from_paddlenlp(raw)
    except LayoutError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except _CONFIG_ERRORS as e:
        raise CheckpointError(f"{path} (PaddleNLP {model_type}): {_config_error(e)}") from None


def _paddlenlp_tensors(path: Path, config: GPTConfig) -> dict:
    from fastergpt.models.paddlenlp_layout import LayoutError, state_from_paddlenlp
    from fastergpt.safe_pickle import UnsafePickleError, load_parameters

    f = path / PADDLENLP_WEIGHT_FILE
    try:
        raw = load_parameters(f)  # never paddle.load: that unpickles, running the file's code
    except UnsafePickleError as e:
        raise CheckpointError(str(e)) from None
    try:
        return state_from_paddlenlp(config, raw)
    except LayoutError as e:
        raise CheckpointError(f"{f}: {e}") from None


# ---- common ----------------------------------------------------------------------

def check_state_dict(config: GPTConfig, state: dict, source: str) -> dict:
    """Drops a redundant tied lm_head; raises naming every missing/unexpected/mis-shaped
    tensor against the family's table (fastergpt/models/<family>.py)."""
    from fastergpt.models import family

    fam = family(config.model_type)
    state = dict(state)
    if config.tie_word_embeddings and "lm_head.weight" in state:
        if not np.array_equal(state["lm_head.weight"], state.get(fam.TOKEN_EMBEDDING)):
            raise CheckpointError(f"{source}: config says tie_word_embeddings but lm_head.weight "
                                  "differs from the token embedding")
        del state["lm_head.weight"]
    # (Every layer holds tensors: a count past them is refused before the table of
    # expected tensors, which grows with it, is built.)
    if config.n_layer > len(state):
        raise CheckpointError(f"{source}: the config's n_layer={config.n_layer} is more than "
                              f"the {len(state)} tensors the checkpoint holds")
    want = fam.expected_shapes(config)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    if missing:
        raise CheckpointError(f"{source}: missing tensor(s) {missing[:8]}" +
                              (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor(s) {unexpected[:8]}")
    for name, shape in want.items():
        if tuple(state[name].shape) != shape:
            raise CheckpointError(f"{source}: tensor {name} has shape {tuple(state[name].shape)}, "
                                  f"expected {shape}")
        values = getattr(state[name], "scales", state[name])  # a QuantizedMatrix: its scales
        if not np.isfinite(values).all():
            raise CheckpointError(f"{source}: tensor {name} holds NaN or Inf values")
    return state


def load_checkpoint(path) -> tuple[GPTConfig, dict]:
    """(config, state dict with the family's HF names, float32; a GPTQ checkpoint's quantized
    weights are fastergpt.int4.QuantizedMatrix values) from a local checkpoint directory."""
    path = Path(os.fspath(path))
    layout = detect_layout(path)
    if layout == "hf":
        from fastergpt.gptq_format import gptq_config, read_gptq_checkpoint

        config = _hf_config(path)
        if gptq_config(path) is not None:  # 4-bit GPTQ: QuantizedMatrix values
            state = read_gptq_checkpoint(path, config)
            # (the reader keeps a g_idx only where it is not the plain grouping)
            config.act_order = any(getattr(v, "g_idx", None) is not None for v in state.values())
        else:
            state = _hf_names(config, _hf_tensors(path))
    else:
        from fastergpt.models.paddlenlp_layout import untie_separate_head

        config = _paddlenlp_config(path)
        state = _paddlenlp_tensors(path, config)
        config = untie_separate_head(config, state)
    return config, check_state_dict(config, state, str(path))
