"""Property-based tests (hypothesis) of the Python readers of outside input: on any
bytes or any JSON, they return what they promise or raise their own error naming
the file, never another exception. Bounded runs; the @example cases are the kept
corpus (each a case found earlier, or a boundary worth keeping)."""
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fastergpt.checkpoint import CheckpointError, _hf_config, read_safetensors
from fastergpt.safe_pickle import UnsafePickleError, load_parameters

BOUNDED = settings(max_examples=150, deadline=None,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)

CONFIG_KEYS = ["model_type", "vocab_size", "hidden_size", "n_embd", "num_attention_heads", "n_head",
               "num_hidden_layers", "n_layer", "intermediate_size", "ffn_dim", "n_inner",
               "max_position_embeddings", "n_positions", "num_key_value_heads", "head_dim",
               "rotary_dim", "rotary_pct", "rope_theta", "rope_parameters", "rope_scaling",
               "word_embed_proj_dim", "do_layer_norm_before", "hidden_act", "activation_function",
               "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "tie_word_embeddings",
               "sliding_window", "eos_token_id", "use_parallel_residual"]
MODEL_TYPES = ["gpt2", "opt", "gptj", "codegen", "gpt_neox", "llama", "mistral", "qwen2", "bloom"]


@BOUNDED
@given(data=st.binary(max_size=512))
@example(data=b"")
@example(data=(2**63).to_bytes(8, "little") + b"{}")
@example(data=(2).to_bytes(8, "little") + b"[]")
def test_safetensors_reader_on_any_bytes(tmp_path, data):
    f = tmp_path / "model.safetensors"
    f.write_bytes(data)
    try:
        out = read_safetensors(f)
    except CheckpointError as e:
        assert str(f) in str(e)
    else:
        assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in out.values())


@BOUNDED
@given(header=st.dictionaries(st.text(max_size=6), json_values, max_size=4), body=st.binary(max_size=64))
@example(header={"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, body=b"")
@example(header={"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 4]}}, body=b"abcd")
def test_safetensors_reader_on_any_header(tmp_path, header, body):
    f = tmp_path / "model.safetensors"
    h = json.dumps(header).encode()
    f.write_bytes(len(h).to_bytes(8, "little") + h + body)
    try:
        read_safetensors(f)
    except CheckpointError as e:
        assert str(f) in str(e)


@BOUNDED
@given(data=st.binary(max_size=512))
@example(data=b"\x80\x04N.")
def test_pdparams_reader_on_any_bytes(tmp_path, data):
    f = tmp_path / "model_state.pdparams"
    f.write_bytes(data)
    try:
        out = load_parameters(f)
    except UnsafePickleError as e:
        assert str(f) in str(e)
    else:
        assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in out.items())


@BOUNDED
@given(model_type=st.sampled_from(MODEL_TYPES),
       raw=st.dictionaries(st.sampled_from(CONFIG_KEYS), json_values, max_size=12))
@example(model_type="llama", raw={"hidden_size": 8, "num_attention_heads": 0, "vocab_size": 5,
                                  "num_hidden_layers": 1, "intermediate_size": 4})
@example(model_type="gpt_neox", raw={"hidden_size": 8, "num_attention_heads": 2, "vocab_size": 5,
                                     "num_hidden_layers": 1, "intermediate_size": 4,
                                     "rope_parameters": "x"})
def test_config_reader_on_any_json(tmp_path, model_type, raw):
    (tmp_path / "config.json").write_text(json.dumps(dict(raw, model_type=model_type)))
    try:
        config = _hf_config(tmp_path)
    except CheckpointError as e:
        assert "config.json" in str(e)
    else:  # the engine checks what the loader let through, with a ValueError at worst
        from fastergpt.packing import weight_spec

        try:
            weight_spec(config)
        except ValueError:
            pass
