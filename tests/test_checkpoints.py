"""Local checkpoint directories (HuggingFace and PaddleNLP layouts) load through
FasterGPT.from_pretrained with greedy output equal to the reference generate on the
original weights; their tokenizer files load; bad directories give clear errors."""
import json

import numpy as np
import pytest

from fastergpt import FasterGPT
from fastergpt.checkpoint import CheckpointError, load_checkpoint
from fastergpt.reference import generate
from fastergpt.tokenizer import Tokenizer, TokenizerError
from helpers import padded_batch
from layouts import (ENDOFTEXT, paddlenlp_state, tokenizer_model, write_hf_numpy,
                     write_hf_transformers, write_json, write_paddlenlp, write_tokenizer)

PROMPT_IDS = [[7, 3, 9, 12, 1, 40], [5, 22, 8], [300]]
MAX_NEW = 8


def check_greedy(directory, model):
    """FasterGPT.from_pretrained(directory) vs the reference generate on `model` (the originals)."""
    ids, mask = padded_batch(PROMPT_IDS)
    want = generate(model, ids, mask, max_new_tokens=MAX_NEW)
    faster = FasterGPT.from_pretrained(directory)
    assert faster.config.activation_function == model.config.activation_function
    assert faster.config.tie_word_embeddings == model.config.tie_word_embeddings
    got = faster.generate(ids, mask, max_new_tokens=MAX_NEW, eos_token_id=-1)
    np.testing.assert_array_equal(got.ids.numpy(), want.ids)
    np.testing.assert_array_equal(got.lengths.numpy(), want.lengths)
    # And the weights were read back exactly, not just close enough for argmax.
    config, state = load_checkpoint(directory)
    original = model.state_dict_numpy()
    assert set(state) == set(original)
    for name in original:
        np.testing.assert_array_equal(state[name], original[name], err_msg=name)


# ---- every layout, tied and untied, both GELU forms -------------------------------

@pytest.mark.parametrize("activation,tied", [("gelu_new", True), ("gelu", False)])
def test_hf_save_pretrained_safetensors(tmp_path, activation, tied):
    model = tokenizer_model(activation, tied, seed=11)
    write_hf_transformers(tmp_path, model)
    check_greedy(tmp_path, model)


@pytest.mark.parametrize("activation,tied,gpt2model_names", [
    ("gelu", True, False), ("gelu_new", False, False), ("gelu_new", True, True)],
    ids=["gelu-tied", "gelu_new-untied", "gelu_new-tied-GPT2Model-names"])
def test_hf_numpy_safetensors(tmp_path, activation, tied, gpt2model_names):
    model = tokenizer_model(activation, tied, seed=12)
    write_hf_numpy(tmp_path, model, gpt2model_names=gpt2model_names)
    check_greedy(tmp_path, model)


@pytest.mark.parametrize("activation,tied", [("gelu_new", False), ("gelu", True)])
def test_hf_pytorch_model_bin(tmp_path, activation, tied):
    model = tokenizer_model(activation, tied, seed=13)
    write_hf_transformers(tmp_path, model, binary=True)
    check_greedy(tmp_path, model)


@pytest.mark.parametrize("activation,tied", [("gelu", True), ("gelu", False), ("gelu_new", False)])
def test_paddlenlp_layout(tmp_path, activation, tied):
    model = tokenizer_model(activation, tied, seed=14)
    write_paddlenlp(tmp_path, model)
    check_greedy(tmp_path, model)


def test_paddlenlp_gelu_is_the_exact_erf_form(tmp_path):
    """PaddleNLP's hidden_act "gelu" is F.gelu (erf), not HF GPT-2's tanh gelu_new."""
    model = tokenizer_model("gelu", True, seed=15)
    write_paddlenlp(tmp_path, model, hidden_act="gelu")
    assert load_checkpoint(tmp_path)[0].activation_function == "gelu"
    write_paddlenlp(tmp_path, model, hidden_act="fast_gelu")
    assert load_checkpoint(tmp_path)[0].activation_function == "gelu_new"


# ---- tokenizer files of each layout ----------------------------------------------

@pytest.mark.parametrize("layout,form", [("hf", "json"), ("paddlenlp", "vocab")])
def test_layout_tokenizer_files_load(tmp_path, layout, form):
    model = tokenizer_model(seed=16)
    (write_hf_numpy if layout == "hf" else write_paddlenlp)(tmp_path, model)
    write_tokenizer(tmp_path, form)
    tok = Tokenizer.from_dir(tmp_path)
    assert tok.kind == "bpe"
    assert tok.vocab_size == model.config.vocab_size
    assert tok.eos_token_id == tok.token_to_id(ENDOFTEXT)
    text = "hello world, café 日本 😀"
    assert tok.decode(tok.encode(text)) == text
    # The model and its tokenizer work together from one directory.
    ids, mask = tok.encode_batch(["hello", "The function returns"])
    out = FasterGPT.from_pretrained(tmp_path).generate(ids, mask, max_new_tokens=4)
    assert out.ids.shape == [2, 4]


# ---- bad input: a CheckpointError / TokenizerError naming the problem ---------------

@pytest.fixture(scope="module")
def good_model():
    return tokenizer_model(seed=17)


def test_error_types_are_value_errors():
    assert issubclass(CheckpointError, ValueError)
    assert issubclass(TokenizerError, ValueError)


def test_missing_directory(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(CheckpointError, match="no_such_model.*(does not exist|neither)"):
        FasterGPT.from_pretrained(missing)
    with pytest.raises(CheckpointError, match="no_such_model.*does not exist"):
        load_checkpoint(missing)
    with pytest.raises(TokenizerError, match="no_such_model.*does not exist"):
        Tokenizer.from_dir(missing)


def test_model_path_is_a_file(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file"):
        FasterGPT.from_pretrained(f)


def test_directory_without_weights(tmp_path, good_model):
    write_json(tmp_path / "config.json", {"model_type": "gpt2"})
    with pytest.raises(CheckpointError, match=r"no weights found.*model\.safetensors.*model_state\.pdparams"):
        FasterGPT.from_pretrained(tmp_path)


def test_missing_config(tmp_path, good_model):
    write_hf_numpy(tmp_path, good_model)
    (tmp_path / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        FasterGPT.from_pretrained(tmp_path)


def test_missing_paddlenlp_config(tmp_path, good_model):
    write_paddlenlp(tmp_path, good_model)
    (tmp_path / "model_config.json").unlink()
    with pytest.raises(CheckpointError, match=r"model_config\.json or config\.json is missing"):
        FasterGPT.from_pretrained(tmp_path)


def test_paddlenlp_2x_config_with_init_args(tmp_path, good_model):
    """PaddleNLP 2.x wrapped the model's arguments in "init_args" (once, or twice for a
    model that wraps another): both read as the plain config; a wrapping of another shape
    is refused by name (it had escaped as TypeError or KeyError)."""
    write_paddlenlp(tmp_path, good_model)
    f = tmp_path / "model_config.json"
    plain = json.loads(f.read_text(encoding="utf-8"))
    want, _ = load_checkpoint(tmp_path)
    for wrapped in ({"init_args": [plain], "init_class": "GPTModel"},
                    {"init_args": [{"init_args": [plain], "init_class": "GPTModel"}],
                     "init_class": "GPTForPretraining"}):
        f.write_text(json.dumps(wrapped), encoding="utf-8")
        assert load_checkpoint(tmp_path)[0] == want
    for bad in (5, {"a": 1}, [5], [{"init_args": 3}]):
        f.write_text(json.dumps({"init_args": bad}), encoding="utf-8")
        with pytest.raises(CheckpointError, match=r"'init_args' must be a list"):
            load_checkpoint(tmp_path)


def test_config_not_json(tmp_path, good_model):
    write_hf_numpy(tmp_path, good_model)
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"config\.json is not valid JSON"):
        FasterGPT.from_pretrained(tmp_path)


@pytest.mark.parametrize("model_type", [["gpt2"], {"a": 1}, 7])
def test_config_model_type_that_is_not_a_name(tmp_path, good_model, model_type):
    write_hf_numpy(tmp_path, good_model)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "config.json").write_text(json.dumps({**config, "model_type": model_type}),
                                          encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"unsupported architecture model_type="):
        load_checkpoint(tmp_path)


def test_config_with_more_layers_than_the_checkpoint_has_tensors(tmp_path, good_model):
    """(2**70 layers had built the table of expected tensors until memory ran out.)"""
    write_hf_numpy(tmp_path, good_model)
    config = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_layer": 2**70}),
                                          encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"n_layer=1180591620717411303424 .* tensors"):
        load_checkpoint(tmp_path)


def test_truncated_safetensors(tmp_path, good_model):
    write_hf_numpy(tmp_path, good_model)
    f = tmp_path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors is corrupt or truncated"):
        FasterGPT.from_pretrained(tmp_path)


def test_corrupt_pdparams(tmp_path, good_model):
    write_paddlenlp(tmp_path, good_model)
    (tmp_path / "model_state.pdparams").write_bytes(b"\x80\x04this is not a pickle" * 10)
    with pytest.raises(CheckpointError, match=r"model_state\.pdparams is corrupt or truncated"):
        FasterGPT.from_pretrained(tmp_path)


def test_truncated_pdparams(tmp_path, good_model):
    write_paddlenlp(tmp_path, good_model)
    f = tmp_path / "model_state.pdparams"
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model_state\.pdparams is corrupt or truncated"):
        FasterGPT.from_pretrained(tmp_path)


def test_unknown_architecture(tmp_path, good_model):
    write_hf_numpy(tmp_path, good_model)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(model_type="bloom", architectures=["BloomForCausalLM"])
    write_json(tmp_path / "config.json", cfg)
    with pytest.raises(CheckpointError, match=r"unsupported architecture model_type='bloom'"):
        FasterGPT.from_pretrained(tmp_path)


def test_supported_family_with_a_broken_config(tmp_path, good_model):
    write_hf_numpy(tmp_path, good_model)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    write_json(tmp_path / "config.json", cfg)
    with pytest.raises(CheckpointError, match=r"config.json \(llama\): missing key 'hidden_size'"):
        FasterGPT.from_pretrained(tmp_path)


def test_unknown_paddlenlp_architecture(tmp_path, good_model):
    write_paddlenlp(tmp_path, good_model)
    cfg = json.loads((tmp_path / "model_config.json").read_text())
    cfg["model_type"] = "bloom"
    write_json(tmp_path / "model_config.json", cfg)
    with pytest.raises(CheckpointError, match=r"unsupported architecture model_type='bloom'"):
        FasterGPT.from_pretrained(tmp_path)


def test_unsupported_activation(tmp_path, good_model):
    write_hf_numpy(tmp_path, good_model)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["activation_function"] = "tanh"
    write_json(tmp_path / "config.json", cfg)
    with pytest.raises(CheckpointError, match=r"activation_function 'tanh' is not supported"):
        FasterGPT.from_pretrained(tmp_path)


def test_shape_mismatch(tmp_path, good_model):
    state = good_model.state_dict_numpy()
    V, D = state["transformer.wte.weight"].shape
    state["transformer.wte.weight"] = np.zeros((V, D - 1), np.float32)
    write_hf_numpy(tmp_path, good_model, tensors=state)
    with pytest.raises(CheckpointError, match=rf"transformer\.wte\.weight has shape \({V}, {D - 1}\), "
                                              rf"expected \({V}, {D}\)"):
        FasterGPT.from_pretrained(tmp_path)


def test_missing_tensor(tmp_path, good_model):
    state = good_model.state_dict_numpy()
    del state["transformer.h.1.mlp.c_fc.bias"]
    write_hf_numpy(tmp_path, good_model, tensors=state)
    with pytest.raises(CheckpointError, match=r"missing tensor.*transformer\.h\.1\.mlp\.c_fc\.bias"):
        FasterGPT.from_pretrained(tmp_path)


def test_unexpected_tensor(tmp_path, good_model):
    state = good_model.state_dict_numpy()
    state["transformer.h.0.attn.rotary.weight"] = np.zeros((4,), np.float32)
    write_hf_numpy(tmp_path, good_model, tensors=state)
    with pytest.raises(CheckpointError, match=r"unexpected tensor.*transformer\.h\.0\.attn\.rotary\.weight"):
        FasterGPT.from_pretrained(tmp_path)


def test_untied_head_missing(tmp_path):
    model = tokenizer_model(tied=False, seed=18)
    state = model.state_dict_numpy()
    del state["lm_head.weight"]
    write_hf_numpy(tmp_path, model, tensors=state)
    with pytest.raises(CheckpointError, match=r"missing tensor.*lm_head\.weight"):
        FasterGPT.from_pretrained(tmp_path)


def test_tied_config_with_different_head(tmp_path, good_model):
    state = good_model.state_dict_numpy()
    state["lm_head.weight"] = state["transformer.wte.weight"] + 1.0
    write_hf_numpy(tmp_path, good_model, tensors=state)
    with pytest.raises(CheckpointError, match=r"tie_word_embeddings but lm_head\.weight differs"):
        FasterGPT.from_pretrained(tmp_path)


def test_non_finite_weights(tmp_path, good_model):
    state = good_model.state_dict_numpy()
    state["transformer.ln_f.bias"] = state["transformer.ln_f.bias"].copy()
    state["transformer.ln_f.bias"][3] = np.nan
    write_hf_numpy(tmp_path, good_model, tensors=state)
    with pytest.raises(CheckpointError, match=r"transformer\.ln_f\.bias holds NaN or Inf"):
        FasterGPT.from_pretrained(tmp_path)


def test_paddlenlp_missing_tensor(tmp_path, good_model):
    state = paddlenlp_state(good_model)
    del state["gpt.decoder.layers.1.self_attn.k_proj.weight"]
    write_paddlenlp(tmp_path, good_model, state=state)
    with pytest.raises(CheckpointError, match=r"layer 1 lacks self_attn\.k_proj\.weight"):
        FasterGPT.from_pretrained(tmp_path)
    state = paddlenlp_state(good_model)
    del state["gpt.decoder.norm.weight"]
    write_paddlenlp(tmp_path, good_model, state=state)
    with pytest.raises(CheckpointError, match=r"missing tensor.*transformer\.ln_f\.weight"):
        FasterGPT.from_pretrained(tmp_path)


def test_paddlenlp_unexpected_tensor(tmp_path, good_model):
    state = paddlenlp_state(good_model)
    D = good_model.config.n_embd
    state["gpt.decoder.layers.0.self_attn.rotary.weight"] = np.zeros((D, 3 * D), np.float32)
    write_paddlenlp(tmp_path, good_model, state=state)
    with pytest.raises(CheckpointError, match=r"unexpected tensor.*gpt\.decoder\.layers\.0\.self_attn\.rotary\.weight"):
        FasterGPT.from_pretrained(tmp_path)


def test_paddlenlp_fused_qkv_proj(tmp_path, good_model):
    """PaddleNLP GPT with fuse_attention_qkv: one qkv_proj Linear whose output columns
    hold each head's q, k and v side by side (written here from that description)."""
    c = good_model.config
    H, Dh = c.n_head, c.n_embd // c.n_head
    state = paddlenlp_state(good_model)
    for i in range(c.n_layer):
        p = f"gpt.decoder.layers.{i}.self_attn."
        for kind in ("weight", "bias"):
            parts = [state.pop(p + f"{x}_proj.{kind}") for x in "qkv"]  # [in, D] / [D]
            heads = [part.reshape(*part.shape[:-1], H, Dh) for part in parts]
            fused = np.stack(heads, axis=-2)  # [.., H, 3, Dh]: head h's q, k, v together
            state[p + f"qkv_proj.{kind}"] = fused.reshape(*parts[0].shape[:-1], 3 * c.n_embd)
    write_paddlenlp(tmp_path, good_model, state=state)
    check_greedy(tmp_path, good_model)


def test_paddlenlp_fused_qkv_proj_bad_shape(tmp_path, good_model):
    state = paddlenlp_state(good_model)
    D = good_model.config.n_embd
    for x in "qkv":
        state.pop(f"gpt.decoder.layers.0.self_attn.{x}_proj.weight")
    state["gpt.decoder.layers.0.self_attn.qkv_proj.weight"] = np.zeros((D, 3 * D + 1), np.float32)
    write_paddlenlp(tmp_path, good_model, state=state)
    with pytest.raises(CheckpointError, match=r"qkv_proj\.weight has shape"):
        FasterGPT.from_pretrained(tmp_path)


def test_paddlenlp_shape_mismatch(tmp_path, good_model):
    state = paddlenlp_state(good_model)
    V, D = state["gpt.embeddings.word_embeddings.weight"].shape
    state["gpt.embeddings.word_embeddings.weight"] = np.zeros((V, D + 2), np.float32)
    write_paddlenlp(tmp_path, good_model, state=state)
    with pytest.raises(CheckpointError, match=r"transformer\.wte\.weight has shape"):
        FasterGPT.from_pretrained(tmp_path)


def test_tokenizer_errors(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer found"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"tokenizer\.json is unreadable"):
        Tokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    write_tokenizer(tmp_path, "vocab")
    (tmp_path / "special_tokens_map.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(TokenizerError, match=r"special_tokens_map\.json is not valid JSON"):
        Tokenizer.from_dir(tmp_path)
