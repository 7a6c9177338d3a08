"""A 4-bit checkpoint runs in the int4 format with its values, scales and zero points
kept exactly (packing through the family's mapping, fastergpt/packing.py), and in the
float formats dequantized. Act-order checkpoints: tests/test_act_order.py."""
import numpy as np
import pytest

from fastergpt import int4
from fastergpt.checkpoint import load_checkpoint
from fastergpt.gptq import quantize_model
from fastergpt.packing import pack_weights
from fastergpt.pretrained import DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def rtn_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "rtn"
    quantize_model(DEFAULT_MODEL_DIR, out, method="rtn", group_size=64, progress=lambda s: None)
    return out


def test_engine_keeps_the_checkpoints_4bit_values(rtn_dir):
    config, state = load_checkpoint(rtn_dir)
    packed = dict(pack_weights(config, state, "int4"))
    for layer in range(config.n_layer):
        src = state[f"transformer.h.{layer}.attn.c_attn.weight"]
        assert isinstance(src, int4.QuantizedMatrix) and src.transposed
        got = int4.unpack_engine(packed[f"layers.{layer}.qkv.weight"], packed[f"layers.{layer}.qkv.scale"],
                                 src.rows, src.cols)
        np.testing.assert_array_equal(got.q, src.q)
        np.testing.assert_array_equal(got.scales, src.scales)
        np.testing.assert_array_equal(got.zeros, src.zeros)
        assert got.group_size == src.group_size == 64


def test_act_order_needs_the_configs_act_order(rtn_dir):
    """A matrix grouped out of order packs into int4 only when the config says act_order
    (load_checkpoint sets it from the checkpoint), and dequantized always."""
    config, state = load_checkpoint(rtn_dir)
    assert not config.act_order
    name = "transformer.h.0.mlp.c_fc.weight"
    m = state[name]
    g_idx = m.column_groups().copy()
    g_idx[[0, -1]] = g_idx[[-1, 0]]  # two columns swap groups: no longer contiguous
    state[name] = int4.QuantizedMatrix(m.q, m.scales, m.zeros, m.group_size, g_idx, m.transposed)
    with pytest.raises(ValueError, match="layers.0.fc.weight: its columns are grouped out of order "
                       r"\(act-order, g_idx\), and the model's config has act_order false"):
        pack_weights(config, state, "int4")
    pack_weights(config, state, "int8")  # dequantized: fine
    config.act_order = True
    packed = dict(pack_weights(config, state, "int4"))
    columns = packed["layers.0.fc.columns"]
    assert sorted(columns.tolist()) == list(range(m.cols)) and columns.tolist() != list(range(m.cols))
    assert packed["layers.1.fc.columns"].tolist() == list(range(m.cols))  # a plain one: in order


@pytest.fixture(scope="module")
def head_dir(tmp_path_factory):
    """The default model rounded to nearest with its (tied) LM head: quantize --lm_head."""
    out = tmp_path_factory.mktemp("q") / "rtn-head"
    quantize_model(DEFAULT_MODEL_DIR, out, method="rtn", lm_head=True, progress=lambda s: None)
    return out


def test_quantized_lm_head_runs_in_4_bits(head_dir):
    """A checkpoint whose LM head is 4-bit runs it in int4 by default under --dtype int4,
    its values, scales and zero points kept; the float token table goes to int8 rows (an
    int4 vocabulary's table); asked for an int8 vocabulary, the head is dequantized."""
    from fastergpt import Engine
    from fastergpt.quantize import pack_matrix

    config, state = load_checkpoint(head_dir)
    assert not config.tie_word_embeddings  # the tied head became a module of its own
    head = state["lm_head.weight"]
    assert isinstance(head, int4.QuantizedMatrix) and not head.transposed
    assert not isinstance(state["transformer.wte.weight"], int4.QuantizedMatrix)
    engine = Engine.from_pretrained(head_dir, "int4")
    assert engine.config.vocab_dtype == "int4"
    packed = dict(engine._packed)
    got = int4.unpack_engine(packed["lm_head.weight"], packed["lm_head.scale"], head.rows, head.cols)
    np.testing.assert_array_equal(got.q, head.q)
    np.testing.assert_array_equal(got.scales, head.scales)
    np.testing.assert_array_equal(got.zeros, head.zeros)
    table, scale = pack_matrix(state["transformer.wte.weight"], "int8")
    np.testing.assert_array_equal(packed["token_embedding"], table)
    np.testing.assert_array_equal(packed["token_embedding.scale"], scale)
    ids = np.array([[5, 17, 3, 99, 42, 8, 64, 2]])
    four = engine.logits(ids)
    eight = Engine.from_pretrained(head_dir, "int4", vocab_dtype="int8")
    assert eight.config.vocab_dtype == "int8"
    floats = Engine.from_pretrained(head_dir, "float32").logits(ids)  # every matrix dequantized
    # (the int4 engine multiplies int8 activations: 0.039 apart on average when written)
    assert np.abs(four - floats).mean() < 0.06
    assert np.abs(four - eight.logits(ids)).max() > 0  # the head's format took effect
