"""GPTQ (fastergpt/gptq.py) and the GPTQ checkpoint layout (fastergpt/gptq_format.py):
the bit layout against an unpacking written here from the format's description, write ->
read bit-exactness, the algorithm against round-to-nearest, the model pipeline on the
default model, the `fastergpt quantize` command line, and every bad checkpoint with its
exact message. Nothing here needs the engine's operator library."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

from fastergpt.checkpoint import CheckpointError, _hf_config, load_checkpoint
from fastergpt.checkpoint import read_safetensors_typed, write_safetensors
from fastergpt.gptq_format import (module_tensors, pack_qzeros, quantization_config,
                                   write_gptq_checkpoint)
from fastergpt.int4 import QuantizedMatrix, quantize_rtn, to_float16_values
from fastergpt.models import family

ROOT = Path(__file__).resolve().parents[1]
GPT2_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


# ---- an unpacking written from the format's description ---------------------------------

def unpack_words_along_rows(words) -> list:
    """[[value]]: word i of column c holds rows 8i..8i+7, value j in bits 4j..4j+3."""
    words = [[int(w) & 0xFFFFFFFF for w in row] for row in np.asarray(words).tolist()]
    rows = []
    for word_row in words:
        for j in range(8):
            rows.append([(w >> (4 * j)) & 0xF for w in word_row])
    return rows


def unpack_qzeros_by_hand(qzeros, v1: bool) -> list:
    """[[zero of output n in group g]] indexed [g][n]: word i of group g holds outputs 8i..8i+7."""
    out = []
    for g, words in enumerate(np.asarray(qzeros).tolist()):
        row = []
        for w in words:
            w &= 0xFFFFFFFF
            row += [((w >> (4 * j)) & 0xF) + (1 if v1 else 0) for j in range(8)]
        out.append(row)
    return out


# ---- tiny checkpoints ---------------------------------------------------------------------

GPT2_CONFIG = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 24,
               "n_positions": 16, "n_embd": 16, "n_layer": 2, "n_head": 2, "n_inner": 32,
               "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
               "tie_word_embeddings": True}
LLAMA_CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 24,
                "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 1,
                "max_position_embeddings": 16, "rms_norm_eps": 1e-6, "tie_word_embeddings": False}


def float_checkpoint(directory: Path, raw_config: dict, seed: int = 0) -> Path:
    """A float16 HF checkpoint with every tensor the family expects, drawn at random."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(raw_config))
    config = _hf_config(directory)
    rng = np.random.default_rng(seed)
    tensors = {name: (rng.standard_normal(shape) * 0.1).astype(np.float16)
               for name, shape in family(config.model_type).expected_shapes(config).items()}
    write_safetensors(directory / "model.safetensors", tensors, {"format": "pt"})
    (directory / "generation_config.json").write_text('{"max_new_tokens": 5}')
    return directory


def random_quantized(rng, N: int, K: int, G: int, act_order: bool = False, transposed=False):
    groups = -(-K // G)
    g_idx = None
    if act_order:
        perm = rng.permutation(K)
        g_idx = (np.argsort(perm) // G).astype(np.int32)
    scales = to_float16_values(rng.uniform(0.001, 0.1, (N, groups)))
    return QuantizedMatrix(rng.integers(0, 16, (N, K)).astype(np.uint8), scales,
                           rng.integers(1, 16, (N, groups)).astype(np.int32), G, g_idx,
                           transposed).check()


def quantize_all(source: Path, G: int = 8, act_order_names=(), seed: int = 1) -> dict:
    """{weight name: QuantizedMatrix} for every decoder linear of a tiny checkpoint."""
    config = _hf_config(source)
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in family(config.model_type).expected_shapes(config).items():
        if len(shape) != 2 or not (".h." in name or ".layers." in name):
            continue
        transposed = config.model_type == "gpt2"
        N, K = (shape[1], shape[0]) if transposed else shape
        out[name] = random_quantized(rng, N, K, G, name in act_order_names, transposed)
    return out


def gptq_dir(tmp_path, raw_config=GPT2_CONFIG, G=8, act_order=False, fmt="gptq", name="q"):
    source = float_checkpoint(tmp_path / f"{name}_src", raw_config)
    config = _hf_config(source)
    names = []
    if act_order:
        names = [n for n in family(config.model_type).expected_shapes(config) if "mlp" in n]
    quantized = quantize_all(source, G, names)
    qcfg = quantization_config(G, desc_act=act_order, checkpoint_format=fmt)
    out = write_gptq_checkpoint(tmp_path / name, source, config, quantized, qcfg)
    return source, out, quantized


def assert_same_matrix(got: QuantizedMatrix, want: QuantizedMatrix, name: str):
    assert isinstance(got, QuantizedMatrix), name
    np.testing.assert_array_equal(got.q, want.q, err_msg=name)
    np.testing.assert_array_equal(got.scales, want.scales, err_msg=name)
    np.testing.assert_array_equal(got.zeros, want.zeros, err_msg=name)
    np.testing.assert_array_equal(got.column_groups(), want.column_groups(), err_msg=name)
    assert got.transposed == want.transposed and got.shape == want.shape, name
    assert got.q.dtype == np.uint8 and got.zeros.dtype == np.int32 and got.scales.dtype == np.float32


# ---- the bit layout ------------------------------------------------------------------------

def test_qweight_layout_hand_made():
    # q[n, k]: output n, input k; column 0 of the first word is rows k = 0..7 = 1..8.
    q = np.zeros((8, 16), dtype=np.uint8)
    q[0, :8] = [1, 2, 3, 4, 5, 6, 7, 8]
    q[0, 8:] = [15, 0, 15, 0, 15, 0, 15, 0]
    q[1:] = (np.arange(7)[:, None] * 3 + np.arange(16)[None, :] * 5) % 16
    m = QuantizedMatrix(q, np.ones((8, 2), np.float32), np.full((8, 2), 8, np.int32), 8)
    t = module_tensors("m", m)
    qweight = t["m.qweight"]
    assert qweight.dtype == np.int32 and qweight.shape == (2, 8)
    assert int(qweight[0, 0]) == 0x87654321 - (1 << 32)  # value j in bits 4j..4j+3
    assert int(qweight[1, 0]) == 0x0F0F0F0F
    by_hand = unpack_words_along_rows(qweight)  # [k][n]
    assert by_hand == q.T.tolist()


def test_qzeros_scales_g_idx_layout_hand_made():
    N, K, G = 16, 32, 8
    zeros = np.zeros((N, 4), dtype=np.int32)
    zeros[:8, 0] = [1, 2, 3, 4, 5, 6, 7, 8]
    zeros[8:, 0] = 16
    zeros[:, 1:] = (np.arange(N)[:, None] + 3 * np.arange(3)[None, :]) % 15 + 1
    scales = to_float16_values(np.arange(N * 4).reshape(N, 4) / 64 + 0.25)
    q = np.zeros((N, K), dtype=np.uint8)
    m = QuantizedMatrix(q, scales, zeros, G)
    v1 = module_tensors("m", m, "gptq")
    assert v1["m.qzeros"].dtype == np.int32 and v1["m.qzeros"].shape == (4, 2)
    assert int(v1["m.qzeros"][0, 0]) == 0x76543210      # v1 stores zero - 1
    assert int(v1["m.qzeros"][0, 1]) == -1              # eight 15s (zero 16)
    assert unpack_qzeros_by_hand(v1["m.qzeros"], v1=True) == zeros.T.tolist()
    zeros[8:, 0] = 15  # v2 stores the zero point itself (0..15)
    m = QuantizedMatrix(q, scales, zeros, G)
    v2 = module_tensors("m", m, "gptq_v2")
    assert int(v2["m.qzeros"][0, 0]) == 0x87654321 - (1 << 32)
    assert unpack_qzeros_by_hand(v2["m.qzeros"], v1=False) == zeros.T.tolist()
    # scales float16 [groups, N]; g_idx int32 [K]: k // G
    assert v1["m.scales"].dtype == np.float16 and v1["m.scales"].shape == (4, N)
    np.testing.assert_array_equal(v1["m.scales"].astype(np.float32), scales.T)
    assert v1["m.g_idx"].dtype == np.int32 and v1["m.g_idx"].tolist() == [k // 8 for k in range(K)]
    # act-order: g_idx is the matrix's own grouping
    g_idx = np.array([(k * 5) % 4 for k in range(K)], dtype=np.int32)
    m = QuantizedMatrix(q, scales, zeros, G, g_idx)
    assert module_tensors("m", m)["m.g_idx"].tolist() == g_idx.tolist()


def test_v1_refuses_a_zero_point_it_cannot_store():
    with pytest.raises(ValueError) as e:
        pack_qzeros(np.zeros((8, 1), np.int32), "gptq")
    assert str(e.value) == "zero points must be in 1..16 to be stored in the gptq format, got 0..0"
    m = QuantizedMatrix(np.zeros((8, 8), np.uint8), np.ones((8, 1), np.float32),
                        np.zeros((8, 1), np.int32), 8)
    with pytest.raises(ValueError) as e:
        module_tensors("blk.fc", m)
    assert str(e.value).startswith("blk.fc: zero points must be in 1..16")
    m = QuantizedMatrix(np.zeros((12, 8), np.uint8), np.ones((12, 1), np.float32),
                        np.ones((12, 1), np.int32), 8)
    with pytest.raises(ValueError) as e:
        module_tensors("blk.fc", m)
    assert str(e.value) == ("blk.fc: GPTQ's layout needs outputs and inputs in multiples of 8, "
                            "this matrix is [12, 8] (out, in)")


def test_written_file_is_standard_safetensors(tmp_path):
    """Read with the safetensors library (independent of our reader): dtypes, shapes, bits."""
    from safetensors.numpy import load_file

    source, out, quantized = gptq_dir(tmp_path, act_order=True)
    tensors = load_file(str(out / "model.safetensors"))
    name = "transformer.h.1.mlp.c_fc"
    m = quantized[name + ".weight"]
    assert tensors[name + ".qweight"].dtype == np.int32 and tensors[name + ".qweight"].shape == (2, 32)
    assert unpack_words_along_rows(tensors[name + ".qweight"]) == m.q.T.tolist()
    assert unpack_qzeros_by_hand(tensors[name + ".qzeros"], v1=True) == m.zeros.T.tolist()
    assert tensors[name + ".scales"].dtype == np.float16
    np.testing.assert_array_equal(tensors[name + ".g_idx"], m.g_idx)
    assert name + ".weight" not in tensors and tensors[name + ".bias"].dtype == np.float16
    src = load_file(str(source / "model.safetensors"))
    for k in ("transformer.wte.weight", "transformer.h.0.ln_1.bias", "transformer.h.0.attn.c_attn.bias"):
        np.testing.assert_array_equal(tensors[k], src[k])  # copied as stored
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["quantization_config"] == json.loads((out / "quantize_config.json").read_text())
    assert cfg["quantization_config"]["desc_act"] is True and cfg["n_embd"] == 16
    assert (out / "generation_config.json").read_text() == '{"max_new_tokens": 5}'


# ---- write -> read ----------------------------------------------------------------------

@pytest.mark.parametrize("raw_config,G,act_order,fmt", [
    (GPT2_CONFIG, 8, False, "gptq"), (GPT2_CONFIG, 8, True, "gptq"),
    (GPT2_CONFIG, 16, True, "gptq_v2"), (GPT2_CONFIG, -1, False, "gptq"),
    (LLAMA_CONFIG, 8, True, "gptq"), (LLAMA_CONFIG, 8, False, "gptq_v2")],
    ids=["gpt2-g8", "gpt2-g8-act_order", "gpt2-g16-act_order-v2", "gpt2-one-group",
         "llama-act_order", "llama-v2"])
def test_roundtrip_bit_exact(tmp_path, raw_config, G, act_order, fmt):
    source = float_checkpoint(tmp_path / "src", raw_config)
    config = _hf_config(source)
    names = [n for n in family(config.model_type).expected_shapes(config) if "mlp" in n] if act_order else []
    quantized = quantize_all(source, 8 if G == -1 else G, names)
    if G == -1:  # one group per row: group size = K
        quantized = {n: QuantizedMatrix(m.q, m.scales[:, :1].copy(), m.zeros[:, :1].copy(),
                                        m.cols, None, m.transposed)
                     for n, m in quantized.items()}
    out = write_gptq_checkpoint(tmp_path / "q", source, config, quantized,
                                quantization_config(G, desc_act=act_order, checkpoint_format=fmt))
    got_config, state = load_checkpoint(out)
    assert got_config.act_order == act_order  # the one field the 4-bit tensors decide
    got_config.act_order = False
    assert got_config == config
    _, float_state = load_checkpoint(source)
    assert set(state) == set(float_state)
    for name, value in state.items():
        if name in quantized:
            assert_same_matrix(value, quantized[name], name)
            plain = np.arange(value.cols) // value.group_size
            assert (value.g_idx is None) == np.array_equal(value.column_groups(), plain), name
        else:
            assert value.dtype == np.float32
            np.testing.assert_array_equal(value, float_state[name], err_msg=name)
    if raw_config is GPT2_CONFIG:  # Conv1D: the checkpoint's [in, out] shape
        m = state["transformer.h.0.attn.c_attn.weight"]
        assert m.transposed and m.shape == (16, 48) and m.q.shape == (48, 16)
    else:
        m = state["model.layers.0.self_attn.k_proj.weight"]
        assert not m.transposed and m.shape == (8, 16)


def test_quantize_config_json_alone_is_read(tmp_path):
    _, out, quantized = gptq_dir(tmp_path)
    cfg = json.loads((out / "config.json").read_text())
    del cfg["quantization_config"]
    (out / "config.json").write_text(json.dumps(cfg))
    qc = json.loads((out / "quantize_config.json").read_text())
    del qc["quant_method"], qc["checkpoint_format"]  # older AutoGPTQ files: v1 implied
    (out / "quantize_config.json").write_text(json.dumps(qc))
    _, state = load_checkpoint(out)
    for name, m in quantized.items():
        assert_same_matrix(state[name], m, name)


def test_output_directory_is_never_overwritten_unasked(tmp_path):
    source, out, quantized = gptq_dir(tmp_path)
    config = _hf_config(source)
    qcfg = quantization_config(8)
    with pytest.raises(ValueError) as e:
        write_gptq_checkpoint(out, source, config, quantized, qcfg)
    assert str(e.value) == f"output {out} is not empty; pass overwrite=True (--overwrite) to replace it"
    write_gptq_checkpoint(out, source, config, quantized, qcfg, overwrite=True)  # an earlier one
    other = (tmp_path / "other").resolve()
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError) as e:
        write_gptq_checkpoint(other, source, config, quantized, qcfg, overwrite=True)
    assert str(e.value) == (f"output {other} is not empty and is not a quantized checkpoint; "
                            "refusing to overwrite it, choose another directory")
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(ValueError) as e:
        write_gptq_checkpoint(source, source, config, quantized, qcfg, overwrite=True)
    assert str(e.value) == f"output {source.resolve()} is the source model's directory; choose another"


# ---- bad checkpoints ---------------------------------------------------------------------

def _edit_config(out: Path, **changes):
    cfg = json.loads((out / "config.json").read_text())
    cfg["quantization_config"].update(changes)
    (out / "config.json").write_text(json.dumps(cfg))


def _edit_tensors(out: Path, edit):
    file = out / "model.safetensors"
    tensors = read_safetensors_typed(file)
    edit(tensors)
    write_safetensors(file, tensors)


M = "transformer.h.0.mlp.c_fc"  # [in 16, out 32] in the checkpoint: N=32, K=16


@pytest.mark.parametrize("changes,message", [
    ({"bits": 8}, "quantization_config.bits is 8; fastergpt reads 4-bit GPTQ checkpoints only"),
    ({"bits": "4"}, "quantization_config.bits must be an integer, got '4'"),
    ({"group_size": 12}, "quantization_config.group_size 12 is not supported (a power of two "
                         ">= 8, or -1 for one group per row)"),
    ({"group_size": 4}, "quantization_config.group_size 4 is not supported (a power of two "
                        ">= 8, or -1 for one group per row)"),
    ({"checkpoint_format": "marlin"},
     "quantization_config.checkpoint_format 'marlin' is not supported (gptq or gptq_v2)"),
    ({"quant_method": "awq"}, "quantization_config.quant_method 'awq' is not supported; "
                              "fastergpt reads GPTQ checkpoints (quant_method 'gptq')"),
    ({"desc_act": "yes"}, "quantization_config.desc_act must be true or false, got 'yes'"),
], ids=["bits-8", "bits-string", "group-12", "group-4", "format", "awq", "desc_act-string"])
def test_bad_quantization_config(tmp_path, changes, message):
    _, out, _ = gptq_dir(tmp_path)
    _edit_config(out, **changes)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert str(e.value) == f"{out / 'config.json'}: {message}"


def test_missing_quantization_key(tmp_path):
    _, out, _ = gptq_dir(tmp_path)
    cfg = json.loads((out / "config.json").read_text())
    del cfg["quantization_config"]["group_size"]
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert str(e.value) == f"{out / 'config.json'}: quantization_config.group_size is missing"


def _drop(name):
    return lambda t: t.pop(name)


def _reshape(name, shape):
    def edit(t):
        dtype, arr = t[name]
        t[name] = (dtype, np.resize(arr, shape))
    return edit


def _retype(name, dtype, np_dtype):
    def edit(t):
        t[name] = (dtype, t[name][1].astype(np_dtype))
    return edit


def _set(name, dtype, arr):
    def edit(t):
        t[name] = (dtype, arr)
    return edit


BAD_TENSORS = [
    ("qweight-rows", _reshape(M + ".qweight", (3, 32)),
     f"tensor {M}.qweight has shape (3, 32), expected (2, 32) for {M}.weight of shape (16, 32) "
     "(32 outputs x 16 inputs, group size 8)"),
    ("qzeros-cols", _reshape(M + ".qzeros", (2, 3)),
     f"tensor {M}.qzeros has shape (2, 3), expected (2, 4) for {M}.weight of shape (16, 32) "
     "(32 outputs x 16 inputs, group size 8)"),
    ("scales-groups", _reshape(M + ".scales", (3, 32)),
     f"tensor {M}.scales has shape (3, 32), expected (2, 32) for {M}.weight of shape (16, 32) "
     "(32 outputs x 16 inputs, group size 8)"),
    ("g_idx-length", _reshape(M + ".g_idx", (15,)),
     f"tensor {M}.g_idx has shape (15,), expected (16,) for {M}.weight of shape (16, 32) "
     "(32 outputs x 16 inputs, group size 8)"),
    ("g_idx-range", _set(M + ".g_idx", "I32", np.arange(16, dtype=np.int32) // 4),
     f"tensor {M}.g_idx holds groups 0..3; {M} has 2 (0..1)"),
    ("g_idx-empty-group", _set(M + ".g_idx", "I32", np.zeros(16, dtype=np.int32)),
     f"tensor {M}.g_idx leaves some of the 2 groups without a column"),
    ("qweight-float", _retype(M + ".qweight", "F32", np.float32),
     f"tensor {M}.qweight has dtype F32; GPTQ stores it as I32 (eight 4-bit values per word)"),
    ("qzeros-int64", _retype(M + ".qzeros", "I64", np.int64),
     f"tensor {M}.qzeros has dtype I64; GPTQ stores it as I32 (eight 4-bit values per word)"),
    ("scales-int", _retype(M + ".scales", "I32", np.int32),
     f"tensor {M}.scales has dtype I32; scales must be floating point (F64, F32, F16, BF16)"),
    ("g_idx-float", _retype(M + ".g_idx", "F32", np.float32),
     f"tensor {M}.g_idx has dtype F32; expected integer group indices (I32)"),
    ("qweight-1d", _reshape(M + ".qweight", (64,)),
     f"tensor {M}.qweight has shape (64,); expected 2 dimensions"),
    ("float-weight-int", _retype("transformer.wte.weight", "I32", np.int32),
     "tensor 'transformer.wte.weight' has dtype I32; model weights must be floating point "
     "(F64, F32, F16, BF16)"),
    ("bias-int", _retype(M + ".bias", "I8", np.int8),
     f"tensor '{M}.bias' has dtype I8; model weights must be floating point (F64, F32, F16, BF16)"),
    ("no-scales", _drop(M + ".scales"),
     f"tensor {M}.scales is missing (it belongs with {M}.qweight)"),
    ("no-qzeros", _drop(M + ".qzeros"),
     f"tensor {M}.qzeros is missing (it belongs with {M}.qweight)"),
    ("no-qweight", _drop(M + ".qweight"),
     f"tensor {M}.g_idx has no {M}.qweight beside it"),
    ("weight-and-qweight", _set(M + ".weight", "F16", np.zeros((16, 32), np.float16)),
     f"{M} has both a float weight ({M}.weight) and a quantized one (qweight)"),
    ("unknown-module", _set("transformer.h.0.mlp.c_gate.qweight", "I32", np.zeros((2, 8), np.int32)),
     "unexpected quantized module 'transformer.h.0.mlp.c_gate' (the gpt2 model has no tensor "
     "transformer.h.0.mlp.c_gate.weight)"),
    ("unknown-dtype", _set("extra", "F8_E4M3", np.zeros(4, np.uint8)), None),
]


@pytest.mark.parametrize("edit,message", [c[1:] for c in BAD_TENSORS], ids=[c[0] for c in BAD_TENSORS])
def test_bad_tensors(tmp_path, edit, message):
    _, out, _ = gptq_dir(tmp_path)
    file = out / "model.safetensors"
    if message is None:  # a dtype our writer cannot write: patch the header by hand
        tensors = read_safetensors_typed(file)
        write_safetensors(file, {**tensors, "extra": ("U8", np.zeros(4, np.uint8))})
        data = file.read_bytes().replace(b'"dtype":"U8"', b'"dtype":"F8"', 1)
        file.write_bytes(data)
        message = "tensor 'extra' has dtype 'F8', which fastergpt does not read (F64, F32, F16, " \
                  "BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)"
    else:
        _edit_tensors(out, edit)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert str(e.value) == f"{file}: {message}"


def test_desc_act_without_g_idx(tmp_path):
    _, out, _ = gptq_dir(tmp_path, act_order=True)
    _edit_tensors(out, _drop(M + ".g_idx"))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert str(e.value) == (f"{out / 'model.safetensors'}: quantization_config says desc_act "
                            f"(act-order) but tensor {M}.g_idx is missing (it gives each input "
                            "column's group)")


def test_scales_nan_and_zero_range(tmp_path):
    _, out, _ = gptq_dir(tmp_path)
    scales = np.ones((2, 32), np.float16)
    scales[1, 3] = np.nan
    _edit_tensors(out, _set(M + ".scales", "F16", scales))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert str(e.value) == f"{out / 'model.safetensors'}: {M}: scales hold NaN or Inf values"


@pytest.mark.parametrize("cut", [4, 100, 2000])
def test_truncated_file(tmp_path, cut):
    _, out, _ = gptq_dir(tmp_path)
    file = out / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[:-cut] if cut != 4 else data[:4])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert str(e.value).startswith(f"{file} is corrupt or truncated: ")


def test_corrupt_header(tmp_path):
    _, out, _ = gptq_dir(tmp_path)
    file = out / "model.safetensors"
    data = bytearray(file.read_bytes())
    data[8:9] = b"["
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(out)
    assert str(e.value).startswith(f"{file} is corrupt or truncated: ")


# ---- the algorithm -----------------------------------------------------------------------

def correlated_layer(seed=0, N=48, K=128, n=1024):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((K, K)) / np.sqrt(K)
    X = (rng.standard_normal((n, K)) @ mix + 0.1 * rng.standard_normal((n, K))) * rng.uniform(0.2, 3, K)
    W = (rng.standard_normal((N, K)) * 0.05).astype(np.float32)
    return W, X, 2.0 / n * X.T @ X


def output_error(X, W, m):
    return float(np.linalg.norm(X @ (W.astype(np.float64) - m.dequantize()).T))


@pytest.mark.parametrize("G,sym,act_order", [(32, False, False), (32, True, False),
                                             (64, False, True), (-1, False, False)])
def test_gptq_beats_rtn_on_correlated_inputs(G, sym, act_order):
    from fastergpt.gptq import gptq_quantize

    W, X, H = correlated_layer()
    for clip in (False, True):  # both quantizers with the same parameter search
        m, used = gptq_quantize(W, H, G, sym=sym, act_order=act_order, clip_search=clip,
                                return_dequantized=True)
        rtn = quantize_rtn(W, G, sym, clip_search=clip)
        assert output_error(X, W, m) < 0.85 * output_error(X, W, rtn), clip
        np.testing.assert_array_equal(m.dequantize(), used)  # what the error feedback used
    assert (m.g_idx is not None) == act_order
    if act_order:
        order = np.argsort(-np.diag(H), kind="stable")
        assert m.g_idx[order].tolist() == [j // G for j in range(W.shape[1])]


def test_gptq_with_diagonal_hessian_is_rtn():
    from fastergpt.gptq import gptq_quantize

    W, _, _ = correlated_layer(seed=3)
    K = W.shape[1]
    for H in (np.eye(K), np.diag(np.random.default_rng(4).uniform(0.5, 2.0, K))):
        for G, sym, clip in ((32, False, False), (16, True, False), (-1, False, False),
                             (32, False, True), (16, True, True)):
            m = gptq_quantize(W, H, G, sym=sym, clip_search=clip)
            rtn = quantize_rtn(W, G, sym, clip_search=clip)
            np.testing.assert_array_equal(m.q, rtn.q)
            np.testing.assert_array_equal(m.scales, rtn.scales)
            np.testing.assert_array_equal(m.zeros, rtn.zeros)


@pytest.mark.parametrize("sym", [False, True])
def test_clip_search(sym):
    """Each row keeps the shrunken range with the least |error|^2.4 (the best step of the
    grid, never worse than the full range), with valid parameters."""
    from fastergpt.int4 import CLIP_NORM, find_params, quantize_values

    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 128)).astype(np.float32) * 0.02
    w[::4, 5] = 0.3  # one outlier in every fourth row

    def error(scale, zero):
        q = quantize_values(w, scale, zero).astype(np.float32)
        return (np.abs(scale[:, None] * (q - zero[:, None]) - w) ** CLIP_NORM).sum(1)

    full_scale, full_zero = find_params(w, sym)
    scale, zero = find_params(w, sym, clip_search=True)
    assert np.all(error(scale, zero) <= error(full_scale, full_zero))
    assert np.all(scale <= full_scale) and np.all(scale > 0)
    assert np.array_equal(scale, to_float16_values(scale))
    assert zero.min() >= (8 if sym else 1) and zero.max() <= (8 if sym else 15)
    # The search gains on most rows. A far outlier keeps its row's range (clipping it
    # costs more, at |error|^2.4, than the finer grid gains): those rows shrink least.
    assert np.mean(error(scale, zero) < error(full_scale, full_zero)) > 0.5
    shrink = scale / full_scale
    outlier = np.zeros(len(w), bool)
    outlier[::4] = True
    assert shrink[outlier].min() > 0.9 and shrink[outlier].mean() > shrink[~outlier].mean()
    # Every row's choice is the best of the grid: no shrink step rounds it with less error.
    xmin, xmax = w.min(1), w.max(1)
    from fastergpt.int4 import CLIP_GRID, CLIP_MAX_SHRINK, _range_params
    best = error(scale, zero)
    for step in range(int(CLIP_MAX_SHRINK * CLIP_GRID)):
        f = np.float32(1 - step / CLIP_GRID)
        assert np.all(best <= error(*_range_params(xmin * f, xmax * f, sym)))
    # a row already on its grid loses nothing by keeping its range
    exact = (np.arange(16, dtype=np.float32) - 3) * np.float32(0.0078125)
    s, z = find_params(exact[None, :], False, clip_search=True)
    assert (s[0], z[0]) == (np.float32(0.0078125), 3)


def test_gptq_dead_columns_and_block_sizes():
    from fastergpt.gptq import gptq_quantize

    W, X, H = correlated_layer(seed=5, K=96)
    H[:, 7] = H[7, :] = 0  # an input that never fires
    # Without the clipping search: a rounding-order difference could move one row's
    # search to another step, and change a whole group of q.
    a = gptq_quantize(W, H, 32, block_size=128, clip_search=False)
    assert np.all(a.dequantize()[:, 7] == 0)
    # groups that straddle blocks: parameters from the fully updated weights either way
    for B in (20, 32, 50):
        b = gptq_quantize(W, H, 32, block_size=B, clip_search=False)
        assert (b.q != a.q).mean() < 0.002  # the same up to rounding order


def test_gptq_bad_arguments():
    from fastergpt.gptq import gptq_quantize

    W = np.zeros((8, 16), np.float32)
    with pytest.raises(ValueError, match=r"^H must be \[16, 16\] for W of shape \(8, 16\), got \(8, 8\)$"):
        gptq_quantize(W, np.eye(8))
    with pytest.raises(ValueError, match=r"^group_size 12 is not supported"):
        gptq_quantize(W, np.eye(16), 12)
    with pytest.raises(ValueError, match=r"^damp must be in \(0, 1\)"):
        gptq_quantize(W, np.eye(16), 8, damp=0)
    with pytest.raises(ValueError, match=r"^the Hessian is not positive definite with damp=1e-06"):
        gptq_quantize(np.ones((8, 16), np.float32), -np.eye(16), 8, damp=1e-6)


def test_calibration_windows():
    from fastergpt.gptq import calibration_windows

    ids = np.arange(1000)
    lines = []
    w = calibration_windows(ids, 4, 100, lines.append)
    assert w.shape == (4, 100) and w[0, 0] == 0 and w[-1, -1] == 999 and not lines
    assert len(set(w[:, 0].tolist())) == 4 and np.all(np.diff(w[:, 0]) >= 100)  # no overlap
    w = calibration_windows(ids, 20, 100, lines.append)
    assert w.shape == (10, 100) and lines[-1] == ("calibration: the text has 1000 tokens, enough "
                                                  "for 10 windows of 100, not nsamples=20: using 10")
    w = calibration_windows(ids[:50], 3, 100, lines.append)
    assert w.shape == (1, 50) and lines[-1] == ("calibration: the text has only 50 tokens, fewer "
                                                "than seqlen=100: using one window of 50")
    with pytest.raises(ValueError, match=r"^calibration: the text gives 1 token\(s\); at least 2"):
        calibration_windows(ids[:1], 3, 100)


def test_default_calibration_is_train_split_only():
    from fastergpt.gptq import default_calibration_documents

    spec = importlib.util.spec_from_file_location("_fgpt_corpus", ROOT / "tools" / "build_corpus.py")
    corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(corpus)
    docs = default_calibration_documents()
    assert len(docs) > 1000 and not any(corpus.is_heldout(d) for d in docs)


# ---- the model pipeline and the command line ---------------------------------------------

@pytest.fixture(scope="module")
def quantized_default(tmp_path_factory):
    """The default model through GPTQ (default calibration, few short windows)."""
    from fastergpt.gptq import quantize_model

    out = tmp_path_factory.mktemp("gptq") / "default-gptq"
    lines = []
    quantize_model("default", out, nsamples=8, seqlen=64, progress=lines.append)
    return out, lines


def test_quantize_default_model_loads(quantized_default):
    from fastergpt.pretrained import DEFAULT_MODEL_DIR

    out, lines = quantized_default
    config, state = load_checkpoint(out)
    _, float_state = load_checkpoint(DEFAULT_MODEL_DIR)
    assert set(state) == set(float_state)
    for i in range(config.n_layer):
        for linear in GPT2_LINEARS:
            name = f"transformer.h.{i}.{linear}.weight"
            m = state[name]
            assert isinstance(m, QuantizedMatrix) and m.transposed and m.shape == float_state[name].shape
            assert m.group_size == 128 and m.g_idx is None
            err = np.abs(m.dequantize().T - float_state[name]).max()
            assert err < 16 * m.scales.max(), name  # near the float weights it came from
    assert not any(isinstance(v, QuantizedMatrix) for k, v in state.items() if ".h." not in k)
    assert lines[0] == "calibration: 8 windows of 64 tokens (default corpus, train split)"
    assert [ln.split(":")[0] for ln in lines[1:5]] == [f"layer {i}/4" for i in range(1, 5)]
    assert all(re.match(r"layer \d/4: 4 modules \(gptq\) in [\d.]+ s \(inputs and Hessians "
                        r"[\d.]+ s, GPTQ [\d.]+ s, quantized layer [\d.]+ s\)$", ln)
               for ln in lines[1:5]), lines
    for f in ("tokenizer.json", "vocab.json", "merges.txt", "generation_config.json", "quantize_config.json"):
        assert (out / f).is_file(), f
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert {k: qc[k] for k in ("quant_method", "bits", "group_size", "desc_act", "sym",
                               "checkpoint_format", "damp_percent", "true_sequential")} == {
        "quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": False,
        "checkpoint_format": "gptq", "damp_percent": 0.01, "true_sequential": False}
    assert qc["meta"]["clip_search"] is True  # GPTQ's default


def test_quantized_default_model_predicts_like_the_float_one(quantized_default):
    """The dequantized weights, run in transformers, keep most of the float model's choices."""
    torch = pytest.importorskip("torch")
    from transformers import GPT2LMHeadModel

    from fastergpt.pretrained import DEFAULT_MODEL_DIR
    from fastergpt.tokenizer import Tokenizer

    out, _ = quantized_default
    ref = GPT2LMHeadModel.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32).eval()
    quant = GPT2LMHeadModel.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32).eval()
    _, state = load_checkpoint(out)
    with torch.no_grad():
        for name, m in state.items():
            if isinstance(m, QuantizedMatrix):
                quant.get_parameter(name).copy_(torch.from_numpy(m.dequantize().T.copy()))
        text = ("Return a new list of the items in the sequence. If the file does not exist, "
                "the function raises an error. This module provides helpers for the parser.")
        ids = torch.tensor([Tokenizer.from_dir(DEFAULT_MODEL_DIR).encode(text)])
        a, b = ref(ids).logits.argmax(-1), quant(ids).logits.argmax(-1)
    assert (a == b).float().mean() > 0.8


def run_cli(argv, capsys):
    from fastergpt.__main__ import main

    code = main(["quantize"] + argv)
    return code, capsys.readouterr().err


def test_cli_rtn_and_calibration_file(tmp_path, capsys):
    text = tmp_path / "calib.txt"
    text.write_text("Return a new list of the items of the sequence.\n" * 20, encoding="utf-8")
    code, err = run_cli(["--method", "rtn", "--output", str(tmp_path / "rtn"), "--quiet"], capsys)
    assert code == 0 and "layer" not in err
    _, state = load_checkpoint(tmp_path / "rtn")
    assert isinstance(state["transformer.h.3.mlp.c_proj.weight"], QuantizedMatrix)
    assert json.loads((tmp_path / "rtn" / "config.json").read_text())[
        "quantization_config"]["meta"]["clip_search"] is False  # round-to-nearest's default
    code, err = run_cli(["--method", "rtn", "--lm_head", "--output", str(tmp_path / "head"),
                         "--quiet"], capsys)
    assert code == 0, err
    assert isinstance(load_checkpoint(tmp_path / "head")[1]["lm_head.weight"], QuantizedMatrix)
    code, err = run_cli(["--method", "rtn", "--clip_search", "--output",
                         str(tmp_path / "rtn-clip"), "--quiet"], capsys)
    assert code == 0, err
    _, clipped = load_checkpoint(tmp_path / "rtn-clip")
    a, b = state["transformer.h.3.mlp.c_proj.weight"], clipped["transformer.h.3.mlp.c_proj.weight"]
    assert np.all(b.scales <= a.scales) and np.any(b.scales < a.scales)
    code, err = run_cli(["--group_size", "64", "--act_order", "--sym", "--calibration", str(text),
                         "--nsamples", "4", "--seqlen", "600", "--output", str(tmp_path / "g")], capsys)
    assert code == 0, err
    assert "calibration: seqlen 600 is more than the model's 256 positions: using 256" in err
    assert "calibration: the text has " in err and "using one window of" in err
    assert "layer 4/4: 4 modules (gptq)" in err
    _, state = load_checkpoint(tmp_path / "g")
    m = state["transformer.h.0.attn.c_attn.weight"]
    assert m.g_idx is not None and m.group_size == 64 and np.all(m.zeros == 8)


def test_cli_bad_input(tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    missing = tmp_path / "nope"
    cases = [
        (["--bits", "8"], "error: --bits 8 is not supported (fastergpt quantizes to 4 bits)"),
        (["--group_size", "12"],
         "error: --group_size 12 is not supported (a power of two >= 8, or -1 for one group per row)"),
        (["--group_size", "4"],
         "error: --group_size 4 is not supported (a power of two >= 8, or -1 for one group per row)"),
        (["--damp", "0"], "error: --damp must be in (0, 1) (a fraction of the mean Hessian "
                          "diagonal), got 0.0"),
        (["--nsamples", "0"], "error: --nsamples must be >= 1, got 0"),
        (["--method", "rtn", "--act_order"], "error: --act_order needs --method gptq"),
        (["--calibration", str(missing)], f"error: --calibration {missing}: no such file"),
        (["--model_name_or_path", str(missing)],
         f"error: --model_name_or_path: model '{missing}' is neither 'default' nor an existing "
         "directory (no model hub is used: give a local path)"),
    ]
    for argv, message in cases:
        code, err = run_cli(argv + ["--output", str(tmp_path / "out")], capsys)
        assert (code, err.strip()) == (2, message), argv
    code, err = run_cli(["--output", str(full)], capsys)
    assert (code, err.strip()) == (2, f"error: --output {full} is not empty; pass --overwrite "
                                      "to replace an earlier quantized checkpoint there")
    code, err = run_cli(["--output", str(full), "--overwrite", "--method", "rtn"], capsys)
    assert (code, err.strip()) == (2, f"error: output {full.resolve()} is not empty and is not a "
                                      "quantized checkpoint; refusing to overwrite it, choose "
                                      "another directory")
    assert not (tmp_path / "out").exists() and (full / "x").read_text() == "x"
    with pytest.raises(SystemExit) as e:  # argparse's own refusal
        run_cli(["--clip_search", "--no_clip_search", "--output", str(tmp_path / "out")], capsys)
    assert e.value.code == 2
    assert "argument --no_clip_search: not allowed with argument --clip_search" in capsys.readouterr().err


def test_quantize_model_refuses_a_quantized_source(quantized_default, tmp_path):
    from fastergpt.gptq import quantize_model

    out, _ = quantized_default
    with pytest.raises(ValueError) as e:
        quantize_model(out, tmp_path / "again", method="rtn")
    assert str(e.value) == f"model {out} is already quantized (its config has a quantization_config)"
    with pytest.raises(ValueError) as e:
        quantize_model("default", tmp_path / "x", bits=3)
    assert str(e.value) == "bits 3 is not supported (fastergpt quantizes to 4 bits)"
    with pytest.raises(ValueError) as e:
        quantize_model("default", tmp_path / "x", clip_search="false")
    assert str(e.value) == ("clip_search must be True, False or None (the method's default), "
                            "got 'false'")
    assert not (tmp_path / "x").exists()


# ---- the LM head (quantize --lm_head) ------------------------------------------------------

def test_head_hessian_is_that_of_the_final_hidden_states():
    """_head_hessian: 2/n sum h h^T over the LM head's input rows, the model stopped there."""
    torch = pytest.importorskip("torch")
    from transformers import GPT2LMHeadModel

    from fastergpt.gptq import _head_hessian
    from fastergpt.pretrained import DEFAULT_MODEL_DIR

    model = GPT2LMHeadModel.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32).eval()
    windows = np.random.default_rng(0).integers(0, 4096, (5, 24))
    with torch.no_grad():
        H = _head_hessian(model, model.lm_head, windows, batch=2)
        h = model.transformer(torch.from_numpy(windows)).last_hidden_state.reshape(-1, 256).double()
    want = (h.T @ h).numpy() * 2.0 / h.shape[0]
    np.testing.assert_allclose(H, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())


def test_quantize_lm_head(tmp_path):
    """GPTQ with --lm_head: the tied head becomes a module of its own (config untied,
    quantization_config lm_head true), quantized last near the float table, which stays as
    stored; round-to-nearest's head is quantize_rtn of the table, exactly."""
    from fastergpt.gptq import quantize_model
    from fastergpt.pretrained import DEFAULT_MODEL_DIR

    lines = []
    out = quantize_model("default", tmp_path / "g", nsamples=8, seqlen=64, lm_head=True,
                         progress=lines.append)
    raw = json.loads((out / "config.json").read_text())
    assert raw["tie_word_embeddings"] is False
    assert raw["quantization_config"]["lm_head"] is True
    assert json.loads((out / "quantize_config.json").read_text())["lm_head"] is True
    assert re.match(r"LM head \(lm_head, 4096 x 256, gptq\) in [\d.]+ s$", lines[-2]), lines
    config, state = load_checkpoint(out)
    _, float_state = load_checkpoint(DEFAULT_MODEL_DIR)
    assert set(state) == set(float_state) | {"lm_head.weight"} and not config.tie_word_embeddings
    table = float_state["transformer.wte.weight"]
    np.testing.assert_array_equal(state["transformer.wte.weight"], table)
    head = state["lm_head.weight"]
    assert isinstance(head, QuantizedMatrix) and not head.transposed and head.g_idx is None
    assert head.shape == table.shape and head.group_size == 128
    assert np.abs(head.dequantize() - table).max() < 16 * head.scales.max()
    rtn = quantize_model("default", tmp_path / "r", method="rtn", lm_head=True,
                         progress=lambda s: None)
    got, want = load_checkpoint(rtn)[1]["lm_head.weight"], quantize_rtn(table)
    assert_same_matrix(got, want, "lm_head.weight")


def test_quantize_lm_head_refusals(tmp_path):
    """A head the GPTQ layout cannot hold (dimensions not multiples of 8) is refused before
    anything is quantized; tied_head must name a quantized head of a tied source."""
    from fastergpt.gptq import quantize_model

    source = float_checkpoint(tmp_path / "src", GPT2_CONFIG)  # a vocabulary of 24 ...
    odd = float_checkpoint(tmp_path / "odd", dict(GPT2_CONFIG, vocab_size=27))  # ... and 27
    with pytest.raises(ValueError) as e:
        quantize_model(odd, tmp_path / "out", method="rtn", lm_head=True)
    assert str(e.value) == ("lm_head: the LM head (lm_head) is [27, 16] (out, in); the GPTQ "
                            "layout needs both in multiples of 8: leave lm_head out "
                            "(--vocab_dtype int4 then rounds it to nearest at load)")
    assert not (tmp_path / "out").exists()
    config = _hf_config(source)
    quantized = quantize_all(source)
    with pytest.raises(ValueError, match="tied_head 'lm_head.weight': the source must tie"):
        write_gptq_checkpoint(tmp_path / "q", source, config, quantized, quantization_config(8),
                              tied_head="lm_head.weight")  # not among the quantized
    llama = float_checkpoint(tmp_path / "llama", LLAMA_CONFIG)
    quantized = {"lm_head.weight": random_quantized(np.random.default_rng(2), 24, 16, 8)}
    with pytest.raises(ValueError, match="the source must tie its LM head"):
        write_gptq_checkpoint(tmp_path / "q", llama, _hf_config(llama), quantized,
                              quantization_config(8), tied_head="lm_head.weight")  # untied
