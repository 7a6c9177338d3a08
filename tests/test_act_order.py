"""Act-order GPTQ checkpoints (desc_act, g_idx) run in the int4 format: each layer matrix
is stored group after group with its column order ("<matrix>.columns", csrc/core/matrix.h),
and linear() gathers the activations into that order. Checked here: the packed layout
against the checkpoint, the logits against transformers on the dequantized weights, every
front end against the others (Engine, its save/load, the Paddle op, an export's Predictor,
gpt_infer, infer.py, perplexity), stacked matrices (LLaMA q|k|v, gate|up) and the bad
inputs. The kernel itself: tests/cpp/kernels_test.cc test_int4_column_order."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastergpt import int4
from fastergpt.checkpoint import _hf_config, load_checkpoint
from fastergpt.models import family
from fastergpt.packing import pack_weights, weight_spec
from test_gptq import (LLAMA_CONFIG, float_checkpoint, quantization_config, random_quantized,
                       write_gptq_checkpoint)
from test_weight_formats import AGREEMENT, LOGIT_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["The function returns a new list of the items in the sequence.",
           "If the file does not exist, the parser raises an error and",
           "This module provides helpers for"]


@pytest.fixture(scope="module")
def act_order_dir(tmp_path_factory):
    """The default model through GPTQ with act-order (few short calibration windows)."""
    from fastergpt.gptq import quantize_model

    out = tmp_path_factory.mktemp("act") / "default-gptq-act"
    quantize_model("default", out, nsamples=8, seqlen=64, group_size=64, act_order=True,
                   progress=lambda s: None)
    return out


@pytest.fixture(scope="module")
def prompt_ids(act_order_dir):
    from fastergpt.tokenizer import Tokenizer

    return Tokenizer.from_dir(act_order_dir).encode_batch(PROMPTS)


def test_packed_layer_matrices_keep_the_checkpoints_values_and_order(act_order_dir):
    config, state = load_checkpoint(act_order_dir)
    assert config.act_order
    packed = dict(pack_weights(config, state, "int4"))
    spec = {e.name: e for e in weight_spec(config, "int4")}
    assert "token_embedding.columns" not in spec  # the vocabulary is never act-order
    shuffled = 0
    for layer in range(config.n_layer):
        for src, key in (("attn.c_attn", "qkv"), ("attn.c_proj", "attn_out"),
                         ("mlp.c_fc", "fc"), ("mlp.c_proj", "proj")):
            m = state[f"transformer.h.{layer}.{src}.weight"]
            name = f"layers.{layer}.{key}"
            columns = packed[name + ".columns"]
            assert columns.dtype == np.int32 and spec[name + ".columns"].dtype == "int32"
            assert sorted(columns.tolist()) == list(range(m.cols))
            shuffled += columns.tolist() != list(range(m.cols))
            got = int4.unpack_engine(packed[name + ".weight"], packed[name + ".scale"],
                                     m.rows, m.cols, columns)
            np.testing.assert_array_equal(got.q, m.q)
            np.testing.assert_array_equal(got.scales, m.scales)
            np.testing.assert_array_equal(got.zeros, m.zeros)
            np.testing.assert_array_equal(got.column_groups(), m.column_groups())
            # stored group after group: its stored columns' groups are 0,0,..,1,1,..
            np.testing.assert_array_equal(m.column_groups()[columns], np.arange(m.cols) // 64)
    assert shuffled == 4 * config.n_layer  # GPTQ's order is no matrix's natural one


def _dequantized_torch_model(directory):
    """transformers' GPT-2 with the checkpoint's dequantized weights."""
    import torch
    from transformers import GPT2LMHeadModel

    from fastergpt.pretrained import DEFAULT_MODEL_DIR

    model = GPT2LMHeadModel.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32).eval()
    _, state = load_checkpoint(directory)
    with torch.no_grad():
        for name, m in state.items():
            if isinstance(m, int4.QuantizedMatrix):
                model.get_parameter(name).copy_(torch.from_numpy(m.dequantize().T.copy()))
    return model


def test_int4_logits_follow_transformers_on_the_dequantized_weights(act_order_dir, prompt_ids):
    """The int4 engine's logits are transformers' on the dequantized weights up to the
    int8 rounding of the activations (the 4-bit weights are exact); with the column order
    dropped (every .columns the identity) they are far off."""
    torch = pytest.importorskip("torch")
    from fastergpt import Engine

    ids, mask = prompt_ids
    ref_model = _dequantized_torch_model(act_order_dir)
    engine = Engine.from_pretrained(act_order_dir, dtype="int4")
    got = engine.logits(ids, mask)
    unordered = Engine(engine.config, dtype="int4", packed=[
        (n, np.arange(a.size, dtype=np.int32) if n.endswith(".columns") else a)
        for n, a in engine._packed])
    wrong = unordered.logits(ids, mask)
    errors, wrong_errors, agree = [], [], []
    for b in range(len(ids)):
        n = int(mask[b].sum())
        with torch.no_grad():
            want = ref_model(torch.tensor(ids[b:b + 1, -n:])).logits[0].numpy()
        errors.append(np.abs(got[b, -n:] - want).max())
        wrong_errors.append(np.abs(wrong[b, -n:] - want).max())
        agree.append((got[b, -n:].argmax(-1) == want.argmax(-1)).mean())
    assert max(errors) <= LOGIT_TOLERANCE["int4"], errors
    assert np.mean(agree) >= AGREEMENT["int4"], agree
    assert min(wrong_errors) > 5 * max(errors), (wrong_errors, errors)


def test_front_ends_agree(act_order_dir, prompt_ids, tmp_path, cpp_build):
    """Greedy ids: Engine, Engine.save/load, the Paddle op (FasterGPT), an int4 export
    through Predictor and through the C++ gpt_infer."""
    from fastergpt import Engine, FasterGPT
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor
    from fastergpt.pretrained import load_state_dict

    ids, mask = prompt_ids
    # (repetition_penalty: the default model's generation_config.json says 1.1, which the
    # export's front ends take as their default)
    settings = {"decode_strategy": "greedy_search", "max_new_tokens": 12, "eos_token_id": -1,
                "repetition_penalty": 1.0}
    engine = Engine.from_pretrained(act_order_dir, dtype="int4")
    want = engine.generate(ids, mask, **settings)["ids"].tolist()
    engine.save(tmp_path / "saved")
    assert Engine.load(tmp_path / "saved").generate(ids, mask, **settings)["ids"].tolist() == want
    dygraph = FasterGPT.from_pretrained(act_order_dir, dtype="int4").generate(ids, mask, **settings)
    assert dygraph.ids.numpy().tolist() == want
    out = export_model(act_order_dir, tmp_path / "exported", dtype="int4", log=lambda s: None)
    assert json.loads((out / "config.json").read_text())["model"]["act_order"] is True
    # The export's weights read back (for the reference model) as the checkpoint's values.
    _, exported_state = load_state_dict(out)
    _, state = load_checkpoint(act_order_dir)
    for name in ("transformer.h.0.attn.c_attn.weight", "transformer.h.3.mlp.c_proj.weight"):
        np.testing.assert_array_equal(exported_state[name], state[name].dequantize().T)
    assert Predictor(out).generate(PROMPTS, **settings).ids.tolist() == want
    args = [cpp_build / "gpt_infer", "--model_dir", out, "--json", "--max_length", 12,
            "--decode_strategy", "greedy_search", "--eos_token_id", -1, "--repetition_penalty", 1.0]
    for p in PROMPTS:
        args += ["--prompt", p]
    proc = subprocess.run(list(map(str, args)), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout.decode("utf-8"))["ids"] == want


def test_infer_and_perplexity_command_lines(act_order_dir, tmp_path):
    """infer.py --dtype int4 runs the checkpoint; int4's perplexity is float32's (of the
    same dequantized weights) within 1%."""
    proc = subprocess.run([sys.executable, str(ROOT / "infer" / "infer.py"), "--model_name_or_path",
                           str(act_order_dir), "--dtype", "int4", "--prompt", PROMPTS[0],
                           "--max_new_tokens", "8"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert PROMPTS[0] in proc.stdout
    text = tmp_path / "text.txt"
    text.write_text(" ".join(PROMPTS * 6))
    found = {}
    for dtype in ("float32", "int4"):
        proc = subprocess.run([sys.executable, "-m", "fastergpt", "perplexity", str(text),
                               "--model_name_or_path", str(act_order_dir), "--dtype", dtype],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        found[dtype] = float(proc.stdout.split("perplexity ")[1].split()[0])
    assert abs(found["int4"] / found["float32"] - 1) < 0.01, found


def _llama_gptq(tmp_path, shared: bool):
    """A LLaMA GPTQ checkpoint, act-order in every matrix; `shared`: q/k/v (and gate/up)
    share their column grouping, as a quantizer that orders by their common Hessian does."""
    source = float_checkpoint(tmp_path / "src", LLAMA_CONFIG)
    config = _hf_config(source)
    rng = np.random.default_rng(4)
    quantized, by_input = {}, {}
    for name, shape in family(config.model_type).expected_shapes(config).items():
        if len(shape) != 2 or ".layers." not in name:
            continue
        m = random_quantized(rng, shape[0], shape[1], 8, act_order=True)
        layer, module = name.split(".self_attn.") if ".self_attn." in name else name.split(".mlp.")
        stack = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "gate_proj": "fc",
                 "up_proj": "fc"}.get(module.split(".")[0])
        if stack and shared and (layer, stack) in by_input:
            m = int4.QuantizedMatrix(m.q, m.scales, m.zeros, 8, by_input[layer, stack])
        by_input.setdefault((layer, stack), m.g_idx)
        quantized[name] = m
    return write_gptq_checkpoint(tmp_path / "q", source, config, quantized,
                                 quantization_config(8, desc_act=True))


def test_llama_stacked_matrices_share_one_order(tmp_path):
    """q|k|v and gate|up become one engine matrix each: with one grouping they run at int4
    (logits as float32 on the dequantized weights, up to activation rounding); with
    different ones the engine matrix is named."""
    from fastergpt import Engine

    out = _llama_gptq(tmp_path / "shared", shared=True)
    ids = np.array([[1, 5, 9, 3, 7, 2, 11, 4]], dtype=np.int64)
    got = Engine.from_pretrained(out, dtype="int4").logits(ids)
    want = Engine.from_pretrained(out, dtype="float32").logits(ids)
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    out = _llama_gptq(tmp_path / "apart", shared=False)
    with pytest.raises(ValueError, match=r"weights: engine weight layers.0.qkv.weight stacks "
                       r"checkpoint matrices whose act-order column groups \(g_idx\) differ"):
        Engine.from_pretrained(out, dtype="int4")
    Engine.from_pretrained(out, dtype="int8")  # dequantized: fine


def test_unbalanced_groups_are_refused_by_int4():
    """Groups that no order makes G columns each cannot take the int4 kernels."""
    rng = np.random.default_rng(0)
    m = random_quantized(rng, 16, 32, 8)
    g_idx = (np.arange(32) // 8).astype(np.int32)
    g_idx[[0, 1]] = 1  # group 0 keeps 6 columns, group 1 has 10
    m = int4.QuantizedMatrix(m.q, m.scales, m.zeros, 8, g_idx)
    with pytest.raises(ValueError, match=r"m: its act-order groups hold 6..10 columns; the int4 "
                       "kernels need 8 in every group but the last"):
        int4.pack_engine(m, "m", column_order=True)


@pytest.mark.parametrize("edit,message", [
    (lambda c: c.__setitem__(1, c[0]), "names column {c0} twice: it must hold each of the {K} "
                                       "input columns once"),
    (lambda c: c.__setitem__(3, len(c)), "holds {K} at position 3: column indices must be in "
                                         "0..{K1}"),
    (lambda c: c.__setitem__(0, -1), "holds -1 at position 0: column indices must be in 0..{K1}"),
])
def test_a_bad_column_order_is_refused(act_order_dir, edit, message):
    from fastergpt import Engine

    engine = Engine.from_pretrained(act_order_dir, dtype="int4")
    name = "layers.1.proj.columns"
    packed = [(n, a.copy() if n == name else a) for n, a in engine._packed]
    columns = dict(packed)[name]
    c0, K = int(columns[0]), columns.size
    edit(columns)
    with pytest.raises(ValueError, match=f"weights: tensor {name} " +
                       message.format(c0=c0, K=K, K1=K - 1)):
        Engine(engine.config, dtype="int4", packed=packed)
    float_columns = [(n, a.astype(np.float32) if n == name else a) for n, a in engine._packed]
    with pytest.raises(ValueError, match=f"weights: tensor {name} has dtype float32, expected int32"):
        Engine(engine.config, dtype="int4", packed=float_columns)
