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
