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
import re
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
    if model_type not in FAMILIES:
        arch = raw.get("architectures")
        raise CheckpointError(f"{path / 'config.json'}: unsupported architecture model_type="
                              f"{model_type!r} architectures={arch!r}; fastergpt runs "
                              f"{', '.join(sorted(FAMILIES))}")
    try:
        return FAMILIES[model_type].config_from_hf(raw).validate()
    except _CONFIG_ERRORS as e:
        raise CheckpointError(f"{path / 'config.json'} ({model_type}): {_config_error(e)}") from None


# safetensors' float dtypes and how each becomes float32 (bfloat16: the high half of a float32).
_SAFETENSORS_FLOATS = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def read_safetensors(path: Path) -> dict:
    """{name: float32 array} from a safetensors file, read by its specification (8-byte
    little-endian header length, a JSON header of dtype/shape/data_offsets, the data).
    Float tensors of any width (BF16 included) are widened to float32; integer tensors
    are refused by name, never cast; a header or offset that does not fit the file
    is reported as corrupt or truncated."""
    data = path.read_bytes()
    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 or n > len(data) - 8:
            raise ValueError(f"header of {n} bytes in a file of {len(data)}")
        header = json.loads(data[8:8 + n])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except ValueError as e:
        raise CheckpointError(f"{path} is corrupt or truncated: {e}") from None
    body = memoryview(data)[8 + n:]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = meta["dtype"], [int(d) for d in meta["shape"]], meta["data_offsets"]
        except (TypeError, KeyError, ValueError):
            raise CheckpointError(f"{path} is corrupt or truncated: bad header entry for {name!r}") from None
        if dtype not in _SAFETENSORS_FLOATS:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype}; model weights must "
                                  f"be floating point ({', '.join(_SAFETENSORS_FLOATS)})")
        np_dtype = np.dtype(_SAFETENSORS_FLOATS[dtype]).newbyteorder("<")
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= begin <= end <= len(body)) or end - begin != count * np_dtype.itemsize or min(shape, default=1) < 0:
            raise CheckpointError(f"{path} is corrupt or truncated: tensor {name!r} ({dtype} "
                                  f"{shape}) does not fit bytes [{begin}, {end}) of {len(body)}")
        arr = np.frombuffer(body[begin:end], dtype=np_dtype).reshape(shape)
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = np.ascontiguousarray(arr, dtype=np.float32)
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

_PADDLENLP_KEYS = {
    "vocab_size": "vocab_size", "hidden_size": "n_embd", "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head", "intermediate_size": "n_inner",
    "max_position_embeddings": "n_positions", "layer_norm_epsilon": "layer_norm_epsilon",
    "eos_token_id": "eos_token_id", "bos_token_id": "bos_token_id", "pad_token_id": "pad_token_id",
    "tie_word_embeddings": "tie_word_embeddings",
}
# PaddleNLP's F.gelu is the exact erf form unless it says otherwise.
_PADDLENLP_ACT = {"gelu": "gelu", "gelu_new": "gelu_new", "fast_gelu": "gelu_new"}


def _paddlenlp_config(path: Path) -> GPTConfig:
    for name in ("model_config.json", "config.json"):
        if (path / name).is_file():
            raw = _read_json(path / name)
            break
    else:
        raise CheckpointError(f"{path}: model_config.json or config.json is missing")
    if "init_args" in raw:  # PaddleNLP 2.x wrote {"init_args": [{...}], "init_class": ...}
        args = raw["init_args"][0] if raw["init_args"] else {}
        raw = dict(args.get("init_args", [args])[0]) if "init_args" in args else dict(args)
    model_type = raw.get("model_type", "gpt")
    if model_type == "llama":
        from fastergpt.models import llama

        try:
            return llama.config_from_hf(raw).validate()
        except _CONFIG_ERRORS as e:
            raise CheckpointError(f"{path} (PaddleNLP llama): {_config_error(e)}") from None
    if model_type not in ("gpt", "gpt2"):
        raise CheckpointError(f"{path}: unsupported architecture model_type={model_type!r}; "
                              "fastergpt reads PaddleNLP gpt and llama checkpoints")
    kwargs = {ours: raw[theirs] for theirs, ours in _PADDLENLP_KEYS.items() if theirs in raw}
    act = raw.get("hidden_act", "gelu")
    if act not in _PADDLENLP_ACT:
        raise CheckpointError(f"{path}: unsupported hidden_act {act!r} (expected gelu or gelu_new)")
    kwargs["activation_function"] = _PADDLENLP_ACT[act]
    kwargs.setdefault("tie_word_embeddings", True)
    try:
        return GPTConfig(**kwargs).validate()
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


_PADDLENLP_LAYER = re.compile(r"(?:gpt\.)?decoder\.layers\.(\d+)\.(.+)")
_PADDLENLP_LAYER_NAMES = {
    "norm1.weight": "ln_1.weight", "norm1.bias": "ln_1.bias",
    "norm2.weight": "ln_2.weight", "norm2.bias": "ln_2.bias",
    "self_attn.out_proj.weight": "attn.c_proj.weight", "self_attn.out_proj.bias": "attn.c_proj.bias",
    "linear1.weight": "mlp.c_fc.weight", "linear1.bias": "mlp.c_fc.bias",
    "linear2.weight": "mlp.c_proj.weight", "linear2.bias": "mlp.c_proj.bias",
}
_PADDLENLP_GLOBAL_NAMES = {
    "embeddings.word_embeddings.weight": "transformer.wte.weight",
    "embeddings.position_embeddings.weight": "transformer.wpe.weight",
    "decoder.norm.weight": "transformer.ln_f.weight",
    "decoder.norm.bias": "transformer.ln_f.bias",
    "lm_head.decoder.weight": "lm_head.weight",
    "lm_head.weight": "lm_head.weight",
}


def _paddlenlp_tensors(path: Path) -> dict:
    from fastergpt.safe_pickle import UnsafePickleError, load_parameters

    f = path / PADDLENLP_WEIGHT_FILE
    try:
        raw = load_parameters(f)  # never paddle.load: that unpickles, running the file's code
    except UnsafePickleError as e:
        raise CheckpointError(str(e)) from None
    c = _paddlenlp_config(path)
    if c.model_type == "llama":
        from fastergpt.models import llama

        return llama.from_paddlenlp(c, {k: np.asarray(v, dtype=np.float32) for k, v in raw.items()},
                                    str(f))
    out, qkv, unexpected = {}, {}, []
    for name, value in raw.items():
        value = np.asarray(value, dtype=np.float32)
        m = _PADDLENLP_LAYER.fullmatch(name)
        if m:
            i, rest = m.group(1), m.group(2)
            if rest in _PADDLENLP_LAYER_NAMES:
                out[f"transformer.h.{i}.{_PADDLENLP_LAYER_NAMES[rest]}"] = value
                continue
            qm = re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if qm:
                qkv.setdefault((i, qm.group(2)), {})[qm.group(1)] = value
                continue
            fm = re.fullmatch(r"self_attn\.qkv_proj\.(weight|bias)", rest)
            if fm:  # fuse_attention_qkv: one Linear whose outputs are per head [q | k | v]
                out[f"transformer.h.{i}.attn.c_attn.{fm.group(1)}"] = _unfuse_heads(
                    value, c.n_head, f"{f}: {name}")
                continue
        key = name[4:] if name.startswith("gpt.") else name
        if key in _PADDLENLP_GLOBAL_NAMES:
            out[_PADDLENLP_GLOBAL_NAMES[key]] = value
        else:
            unexpected.append(name)
    if unexpected:
        raise CheckpointError(f"{f}: unexpected tensor(s) {sorted(unexpected)[:8]} (not a "
                              "PaddleNLP GPT layout)")
    # PaddleNLP keeps q, k and v as separate [in, out] Linears; HF's c_attn is [in, 3*out].
    for (i, kind), parts in qkv.items():
        missing = [p for p in "qkv" if p not in parts]
        if missing:
            raise CheckpointError(f"{f}: layer {i} lacks self_attn.{missing[0]}_proj.{kind}")
        axis = 1 if kind == "weight" else 0
        out[f"transformer.h.{i}.attn.c_attn.{kind}"] = np.concatenate(
            [parts["q"], parts["k"], parts["v"]], axis=axis)
    return out


def _unfuse_heads(value: np.ndarray, heads: int, what: str) -> np.ndarray:
    """PaddleNLP's fused qkv_proj ([in, H * 3 * Dh] weight or [H * 3 * Dh] bias, each
    head's q, k, v side by side) -> GPT-2's c_attn layout (all q | all k | all v)."""
    cols = value.shape[-1]
    if cols % (3 * heads):
        raise CheckpointError(f"{what} has shape {tuple(value.shape)}, not [.., 3 x heads x head size]")
    per_head = value.reshape(*value.shape[:-1], heads, 3, cols // (3 * heads))
    return np.ascontiguousarray(np.swapaxes(per_head, -3, -2).reshape(value.shape))


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
        if not np.isfinite(state[name]).all():
            raise CheckpointError(f"{source}: tensor {name} holds NaN or Inf values")
    return state


def load_checkpoint(path) -> tuple[GPTConfig, dict]:
    """(config, state dict with the family's HF names, float32) from a local checkpoint directory."""
    path = Path(os.fspath(path))
    layout = detect_layout(path)
    if layout == "hf":
        config = _hf_config(path)
        state = _hf_names(config, _hf_tensors(path))
    else:
        config = _paddlenlp_config(path)
        state = _paddlenlp_tensors(path)
    return config, check_state_dict(config, state, str(path))
