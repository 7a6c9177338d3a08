"""GPTQ checkpoints: the layout AutoGPTQ and transformers write and read, in safetensors.

A GPTQ checkpoint is a HuggingFace checkpoint directory whose config.json carries a
`quantization_config` (quant_method "gptq"; AutoGPTQ also writes the same keys to
quantize_config.json) and whose model.safetensors holds, for every quantized linear
module `<m>` (the module's weight in linear orientation, [N out, K in], even for
GPT-2's Conv1D which stores its float weight [in, out]):

- `<m>.qweight` int32 [K/8, N]: word i of column n holds q[n, 8i + j] in bits 4j..4j+3;
- `<m>.qzeros`  int32 [groups, N/8]: word i of group g holds the zero point of output
  8i + j in bits 4j..4j+3; checkpoint_format "gptq" (v1) stores zero - 1,
  "gptq_v2" stores the zero point itself;
- `<m>.scales`  float16 [groups, N];
- `<m>.g_idx`   int32 [K]: the group of each input column (k // group_size, or the
  act-order grouping when desc_act is true);
- `<m>.bias` where the module has one, as in the float checkpoint.

Every other tensor is kept as the float checkpoint stores it. W[n, k] = scales[g, n] *
(q[n, k] - zero[g, n]) with g = g_idx[k]: fastergpt.int4.QuantizedMatrix's convention,
which is what read_gptq_checkpoint returns (transposed=True for a tensor the family
stores [in, out], so its shape is the checkpoint's).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from fastergpt.checkpoint import (FLOATS, NP_TO_ST, CheckpointError, read_safetensors_typed,
                                  to_float32, write_safetensors)
from fastergpt.int4 import BITS, MAXQ, QuantizedMatrix
from fastergpt.jsonfile import read_json_object

WEIGHTS_FILE = "model.safetensors"
QUANTIZE_CONFIG = "quantize_config.json"
FORMATS = ("gptq", "gptq_v2")
PARTS = ("qweight", "qzeros", "scales", "g_idx")
# Files a quantized directory takes over from its source (tokenizer, generation defaults).
COPIED_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json",
                "tokenizer_config.json", "added_tokens.json", "generation_config.json")
# Families whose decoder weights HF stores [in, out] (transformers' Conv1D).
CONV1D_FAMILIES = ("gpt2",)


# ---- the bit layout -----------------------------------------------------------------

_SHIFTS = (4 * np.arange(8)).astype(np.uint32)


def fits_layout(rows: int, cols: int) -> bool:
    """Whether a [rows, cols] (out, in) matrix fits the layout: eight 4-bit values per int32
    word along the inputs (qweight) and along the outputs (qzeros)."""
    return rows % 8 == 0 and cols % 8 == 0


def _pack_rows(values: np.ndarray) -> np.ndarray:
    """int32 [R/8, C]: eight 4-bit values of each column per word, value j of word i
    from row 8i + j in bits 4j..4j+3."""
    R, C = values.shape
    v = values.astype(np.uint32).reshape(R // 8, 8, C)
    return np.bitwise_or.reduce(v << _SHIFTS[None, :, None], axis=1).view(np.int32)


def _unpack_rows(words: np.ndarray) -> np.ndarray:
    """The inverse of _pack_rows: uint8 [8 R, C]."""
    w = np.ascontiguousarray(words, dtype=np.int32).view(np.uint32)
    v = (w[:, None, :] >> _SHIFTS[None, :, None]) & 0xF
    return v.reshape(w.shape[0] * 8, w.shape[1]).astype(np.uint8)


def pack_qweight(q: np.ndarray) -> np.ndarray:
    """q uint8 [N, K] (out, in), K a multiple of 8 -> qweight int32 [K/8, N]."""
    return _pack_rows(np.ascontiguousarray(q.T))


def unpack_qweight(qweight: np.ndarray) -> np.ndarray:
    """qweight int32 [K/8, N] -> q uint8 [N, K]."""
    return np.ascontiguousarray(_unpack_rows(qweight).T)


def pack_qzeros(zeros: np.ndarray, checkpoint_format: str = "gptq") -> np.ndarray:
    """zero points int [N, groups] -> qzeros int32 [groups, N/8] (v1 "gptq": zero - 1)."""
    stored = np.asarray(zeros, dtype=np.int64) - (1 if checkpoint_format == "gptq" else 0)
    if stored.size and (stored.min() < 0 or stored.max() > MAXQ):
        lo = 1 if checkpoint_format == "gptq" else 0
        raise ValueError(f"zero points must be in {lo}..{lo + MAXQ} to be stored in the "
                         f"{checkpoint_format} format, got {int(stored.min()) + lo}..{int(stored.max()) + lo}")
    return np.ascontiguousarray(_pack_rows(stored).T)


def unpack_qzeros(qzeros: np.ndarray, checkpoint_format: str = "gptq") -> np.ndarray:
    """qzeros int32 [groups, N/8] -> zero points int32 [N, groups]."""
    stored = _unpack_rows(np.ascontiguousarray(np.asarray(qzeros).T))
    return stored.astype(np.int32) + (1 if checkpoint_format == "gptq" else 0)


def module_tensors(module: str, m: QuantizedMatrix, checkpoint_format: str = "gptq") -> dict:
    """{"<module>.qweight": ..., ".qzeros", ".scales", ".g_idx"} of a quantized matrix."""
    m.check(module)
    N, K = m.rows, m.cols
    if not fits_layout(N, K):
        raise ValueError(f"{module}: GPTQ's layout needs outputs and inputs in multiples of 8, "
                         f"this matrix is [{N}, {K}] (out, in)")
    try:
        qzeros = pack_qzeros(m.zeros, checkpoint_format)
    except ValueError as e:
        raise ValueError(f"{module}: {e}") from None
    return {f"{module}.qweight": pack_qweight(m.q), f"{module}.qzeros": qzeros,
            f"{module}.scales": np.ascontiguousarray(m.scales.T.astype(np.float16)),
            f"{module}.g_idx": m.column_groups().astype(np.int32)}


# ---- quantization_config ------------------------------------------------------------

def quantization_config(group_size: int, desc_act: bool = False, sym: bool = False,
                        damp_percent: float = 0.01, checkpoint_format: str = "gptq",
                        lm_head: bool = False, meta: dict | None = None) -> dict:
    """The `quantization_config` of config.json (also written as quantize_config.json).
    lm_head: the LM head is quantized too (GPTQModel's key of that name)."""
    cfg = {"quant_method": "gptq", "bits": BITS, "group_size": int(group_size),
           "desc_act": bool(desc_act), "sym": bool(sym), "damp_percent": float(damp_percent),
           "true_sequential": False, "static_groups": False, "lm_head": bool(lm_head),
           "checkpoint_format": checkpoint_format, "model_file_base_name": "model"}
    if meta:
        cfg["meta"] = meta
    return cfg


def gptq_config(path) -> dict | None:
    """The checked quantization config of a GPTQ checkpoint directory (config.json's
    `quantization_config`, else quantize_config.json), or None for a float checkpoint.
    Raises CheckpointError naming the key for anything fastergpt cannot read."""
    path = Path(os.fspath(path))
    cfg, source = None, None
    if (path / "config.json").is_file():
        q = read_json_object(path / "config.json", CheckpointError).get("quantization_config")
        if q is not None:
            cfg, source = q, f"{path / 'config.json'}: quantization_config"
    if cfg is None and (path / QUANTIZE_CONFIG).is_file():
        cfg, source = read_json_object(path / QUANTIZE_CONFIG, CheckpointError), f"{path / QUANTIZE_CONFIG}:"
        cfg.setdefault("quant_method", "gptq")  # AutoGPTQ's older files leave it out
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{source} must be a JSON object")
    key = (lambda k: f"{source}.{k}") if source.endswith("quantization_config") else (lambda k: f"{source} {k}")
    method = cfg.get("quant_method")
    if method != "gptq":
        raise CheckpointError(f"{key('quant_method')} {method!r} is not supported; fastergpt reads "
                              "GPTQ checkpoints (quant_method 'gptq')")
    for k in ("bits", "group_size"):
        if k not in cfg:
            raise CheckpointError(f"{key(k)} is missing")
        if not isinstance(cfg[k], int) or isinstance(cfg[k], bool):
            raise CheckpointError(f"{key(k)} must be an integer, got {cfg[k]!r}")
    if cfg["bits"] != BITS:
        raise CheckpointError(f"{key('bits')} is {cfg['bits']}; fastergpt reads 4-bit GPTQ "
                              "checkpoints only")
    g = cfg["group_size"]
    if g != -1 and (g < 8 or g & (g - 1)):
        raise CheckpointError(f"{key('group_size')} {g} is not supported (a power of two >= 8, "
                              "or -1 for one group per row)")
    desc_act = cfg.get("desc_act", False)
    if not isinstance(desc_act, bool):
        raise CheckpointError(f"{key('desc_act')} must be true or false, got {desc_act!r}")
    fmt = cfg.get("checkpoint_format", "gptq")
    if fmt not in FORMATS:
        raise CheckpointError(f"{key('checkpoint_format')} {fmt!r} is not supported "
                              f"({' or '.join(FORMATS)})")
    return {**cfg, "desc_act": desc_act, "checkpoint_format": fmt}


# ---- reading --------------------------------------------------------------------------

def _default_in_out(model_type: str, name: str) -> bool:
    """Whether the family stores this weight [in, out] (GPT-2's Conv1D decoder weights)."""
    return model_type in CONV1D_FAMILIES and not name.startswith("lm_head.")


def _quantized_matrix(file: Path, module: str, wname: str, expected: tuple, parts: dict,
                      cfg: dict, model_type: str) -> QuantizedMatrix:
    """One module's QuantizedMatrix from its stored parts, every shape checked."""
    for part in ("qweight", "qzeros", "scales"):
        if part not in parts:
            raise CheckpointError(f"{file}: tensor {module}.{part} is missing (it belongs with "
                                  f"{module}.qweight)")
    if "g_idx" not in parts and cfg["desc_act"]:
        raise CheckpointError(f"{file}: quantization_config says desc_act (act-order) but tensor "
                              f"{module}.g_idx is missing (it gives each input column's group)")
    for part, (dtype, arr) in parts.items():
        if part in ("qweight", "qzeros") and dtype != "I32":
            raise CheckpointError(f"{file}: tensor {module}.{part} has dtype {dtype}; GPTQ stores "
                                  "it as I32 (eight 4-bit values per word)")
        if part == "g_idx" and dtype not in ("I32", "I64"):
            raise CheckpointError(f"{file}: tensor {module}.g_idx has dtype {dtype}; expected "
                                  "integer group indices (I32)")
        if part == "scales" and dtype not in FLOATS:
            raise CheckpointError(f"{file}: tensor {module}.scales has dtype {dtype}; scales must "
                                  f"be floating point ({', '.join(FLOATS)})")
        if arr.ndim != (1 if part == "g_idx" else 2):
            raise CheckpointError(f"{file}: tensor {module}.{part} has shape {tuple(arr.shape)}; "
                                  f"expected {'1' if part == 'g_idx' else '2'} dimensions")
    qweight = parts["qweight"][1]
    if len(expected) != 2:
        raise CheckpointError(f"{file}: {wname} (shape {expected}) is not a matrix; it cannot "
                              "be quantized")
    a, b = expected
    # The stored orientation: by shape where that decides it, by the family for a square one.
    packs = lambda n, k: qweight.shape == (k // 8, n) and k % 8 == 0  # noqa: E731
    if a != b and packs(a, b):
        transposed = False
    elif a != b and packs(b, a):
        transposed = True
    else:
        transposed = _default_in_out(model_type, wname)
    N, K = (b, a) if transposed else (a, b)
    if not fits_layout(N, K):
        raise CheckpointError(f"{file}: {wname} is [{N}, {K}] (out, in); GPTQ's layout needs "
                              "both in multiples of 8")
    G = K if cfg["group_size"] == -1 else cfg["group_size"]
    groups = -(-K // G)
    want = {"qweight": (K // 8, N), "qzeros": (groups, N // 8), "scales": (groups, N), "g_idx": (K,)}
    for part in PARTS:
        if part in parts and tuple(parts[part][1].shape) != want[part]:
            raise CheckpointError(
                f"{file}: tensor {module}.{part} has shape {tuple(parts[part][1].shape)}, expected "
                f"{want[part]} for {wname} of shape {expected} ({N} outputs x {K} inputs, "
                f"group size {cfg['group_size']})")
    g_idx = None
    if "g_idx" in parts:
        g_idx = parts["g_idx"][1].astype(np.int64)
        if K and (g_idx.min() < 0 or g_idx.max() >= groups):
            raise CheckpointError(f"{file}: tensor {module}.g_idx holds groups "
                                  f"{int(g_idx.min())}..{int(g_idx.max())}; {module} has {groups} "
                                  f"(0..{groups - 1})")
        if np.array_equal(g_idx, np.arange(K) // G):
            g_idx = None  # the plain grouping
        elif K and np.unique(g_idx).size != groups:
            raise CheckpointError(f"{file}: tensor {module}.g_idx leaves some of the {groups} "
                                  "groups without a column")
        else:
            g_idx = g_idx.astype(np.int32)
    fmt = cfg["checkpoint_format"]
    m = QuantizedMatrix(unpack_qweight(qweight), to_float32(*parts["scales"]).T.copy(),
                        unpack_qzeros(parts["qzeros"][1], fmt), G, g_idx, transposed)
    try:
        return m.check(f"{file}: {module}")
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def read_gptq_checkpoint(path, config) -> dict:
    """{HF weight name: QuantizedMatrix for each quantized module (transposed where the
    family stores that tensor [in, out]), every other name: float32 array} from a GPTQ
    checkpoint directory (model.safetensors, checkpoint_format gptq or gptq_v2). The
    names are the family's canonical ones (what fastergpt.checkpoint returns)."""
    from fastergpt.models import family

    path = Path(os.fspath(path))
    cfg = gptq_config(path)
    if cfg is None:
        raise CheckpointError(f"{path}: not a GPTQ checkpoint (config.json has no "
                              f"quantization_config and there is no {QUANTIZE_CONFIG})")
    file = path / WEIGHTS_FILE
    if not file.is_file():
        raise CheckpointError(f"{path}: a GPTQ checkpoint is read from {WEIGHTS_FILE}, which is missing")
    fam = family(config.model_type)
    raw = {k: v for k, v in read_safetensors_typed(file).items()
           if not any(ig in k for ig in fam.IGNORED)}
    modules: dict = {}
    plain = {}
    for name, value in raw.items():
        base, _, part = name.rpartition(".")
        if part in PARTS and base:
            modules.setdefault(base, {})[part] = value
        else:
            plain[name] = value
    for module, parts in modules.items():
        if "qweight" not in parts:
            part = sorted(parts)[0]
            raise CheckpointError(f"{file}: tensor {module}.{part} has no {module}.qweight beside it")
        if f"{module}.weight" in plain:
            raise CheckpointError(f"{file}: {module} has both a float weight ({module}.weight) "
                                  "and a quantized one (qweight)")
    state = {}
    for name, (dtype, arr) in plain.items():
        if dtype not in FLOATS:
            raise CheckpointError(f"{file}: tensor {name!r} has dtype {dtype}; model weights must "
                                  f"be floating point ({', '.join(FLOATS)})")
        state[name] = to_float32(dtype, arr)
    state = fam.from_hf_tensors(state)
    want = fam.expected_shapes(config)
    for module, parts in modules.items():
        wname = next(iter(fam.from_hf_tensors({f"{module}.weight": None})))
        if wname not in want:
            raise CheckpointError(f"{file}: unexpected quantized module {module!r} (the "
                                  f"{config.model_type} model has no tensor {wname})")
        state[wname] = _quantized_matrix(file, module, wname, tuple(want[wname]), parts, cfg,
                                         config.model_type)
    return state


# ---- writing --------------------------------------------------------------------------

def source_tensors(source_dir: Path, config) -> dict:
    """{canonical HF name: (safetensors dtype, stored array)} of a float HF checkpoint,
    as stored (dtype kept): what a quantized checkpoint copies unchanged."""
    from fastergpt.models import family

    fam = family(config.model_type)
    st = source_dir / WEIGHTS_FILE
    if st.is_file():
        tensors = read_safetensors_typed(st)
    else:
        import torch

        sd = torch.load(str(source_dir / "pytorch_model.bin"), map_location="cpu", weights_only=True)
        tensors = {}
        for k, v in sd.items():
            if v.dtype == torch.bfloat16:
                tensors[k] = ("BF16", v.contiguous().view(torch.int16).numpy().view(np.uint16))
            else:
                arr = v.contiguous().numpy()
                tensors[k] = (NP_TO_ST[arr.dtype], arr)
    tensors = {k: v for k, v in tensors.items() if not any(ig in k for ig in fam.IGNORED)}
    return fam.from_hf_tensors(tensors)


def _copy_side_files(src: Path, dst: Path) -> None:
    for name in COPIED_FILES:
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    for f in sorted(src.glob("*.model")):  # SentencePiece
        shutil.copy(f, dst / f.name)


def check_output_dir(output_dir, overwrite: bool = False, source_dir=None) -> Path:
    """The output directory, refused (ValueError naming it) when it is the source, a file,
    or non-empty without `overwrite`; `overwrite` replaces only an earlier quantized checkpoint."""
    out = Path(os.fspath(output_dir)).expanduser().resolve()
    if source_dir is not None and out == Path(os.fspath(source_dir)).resolve():
        raise ValueError(f"output {out} is the source model's directory; choose another")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"output {out} is not empty; pass overwrite=True (--overwrite) to "
                             "replace it")
        try:
            quantized = gptq_config(out) is not None
        except CheckpointError:
            quantized = True  # an earlier (perhaps partly written) quantized checkpoint
        if not quantized or not (out / "config.json").is_file():
            raise ValueError(f"output {out} is not empty and is not a quantized checkpoint; "
                             "refusing to overwrite it, choose another directory")
    return out


def write_gptq_checkpoint(output_dir, source_dir, config, quantized: dict, qconfig: dict,
                          overwrite: bool = False, tied_head: str | None = None) -> Path:
    """Writes a GPTQ checkpoint: `quantized` {HF weight name: QuantizedMatrix} replaces those
    weights of the float checkpoint in `source_dir` (whose config is `config`), every other
    tensor is copied as stored; config.json gains `qconfig` as its quantization_config, a
    quantize_config.json holds the same keys, tokenizer and generation files are copied.
    tied_head: the name in `quantized` of an LM head the source ties to its token table:
    it becomes a module of its own (config.json: tie_word_embeddings false), the table
    staying as stored. Written to a temporary directory beside the output, then moved
    into place."""
    source_dir = Path(os.fspath(source_dir))
    out = check_output_dir(output_dir, overwrite, source_dir)
    fmt = qconfig.get("checkpoint_format", "gptq")
    if fmt not in FORMATS:
        raise ValueError(f"checkpoint_format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    from fastergpt.models import family

    tensors = source_tensors(source_dir, config)
    raw_config = read_json_object(source_dir / "config.json", CheckpointError)
    table = family(config.model_type).TOKEN_EMBEDDING
    if tied_head is not None:
        if not config.tie_word_embeddings or tied_head not in quantized:
            raise ValueError(f"tied_head {tied_head!r}: the source must tie its LM head, and "
                             "the head must be among the quantized tensors")
        # (A tied checkpoint stores the table alone; the head's values are the table's.)
        tensors.setdefault(tied_head, tensors[table])
        raw_config["tie_word_embeddings"] = False
    for name, m in quantized.items():
        if not name.endswith(".weight"):
            raise ValueError(f"{name}: a quantized tensor must be a module's .weight")
        if name not in tensors:
            raise ValueError(f"{name} is not a tensor of {source_dir / WEIGHTS_FILE}")
        if tuple(tensors[name][1].shape) != tuple(m.shape):
            raise ValueError(f"{name}: quantized matrix has shape {tuple(m.shape)}, the checkpoint's "
                             f"tensor {tuple(tensors[name][1].shape)}")
        del tensors[name]
        tensors.update(module_tensors(name[: -len(".weight")], m, fmt))
    raw_config["quantization_config"] = qconfig
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.quantizing-", dir=out.parent))
    try:
        write_safetensors(tmp / WEIGHTS_FILE, tensors, {"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(raw_config, indent=2) + "\n", encoding="utf-8")
        (tmp / QUANTIZE_CONFIG).write_text(json.dumps(qconfig, indent=2) + "\n", encoding="utf-8")
        _copy_side_files(source_dir, tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            old = out.parent / f".{out.name}.replaced-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
