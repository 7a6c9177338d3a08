"""Every decoder family the engine runs, against transformers on torch CPU.

For each family a small random model made with transformers' own config class
at odd shapes (head sizes and widths that are not powers of two, partial
rotary, grouped-query attention), saved with `save_pretrained` and loaded
through the ordinary loader: greedy decoding of a left-padded ragged batch
equals `generate` on each prompt alone, up to the last position the model
allows; fp32 logits within 1e-4 relative; fp16/int8 within the GPT-2 bounds;
seeded sampling identical across thread counts and front ends.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from fastergpt import Engine, FasterGPT  # noqa: E402
from fastergpt.checkpoint import CheckpointError  # noqa: E402
from families import (FAMILIES, LOGIT_TOLERANCE, P, PROMPTS, SPECIAL, V, hf_alone,  # noqa: E402,F401
                      make_hf, padded_batch, saved_hf)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    hf, directory = saved_hf(request.param, tmp_path_factory)
    return request.param, hf, directory


def test_greedy_ragged_batch_equals_transformers_alone(family):
    name, hf, directory = family
    ids, mask = padded_batch(PROMPTS)
    new = P - max(map(len, PROMPTS))  # up to the last position the model allows
    assert new >= 40
    engine = Engine.from_pretrained(directory)
    faster = FasterGPT.from_pretrained(directory)
    got = engine.generate(ids, mask, max_new_tokens=new, eos_token_id=-1)["ids"]
    np.testing.assert_array_equal(
        faster.generate(ids, mask, max_new_tokens=new, eos_token_id=-1).ids.numpy(), got)
    for row, prompt in zip(got, PROMPTS):
        np.testing.assert_array_equal(row, hf_alone(hf, prompt, new), err_msg=name)


def test_logits_equal_transformers(family):
    name, hf, directory = family
    ids, mask = padded_batch(PROMPTS)
    got = Engine.from_pretrained(directory).logits(ids, mask)
    for b, prompt in enumerate(PROMPTS):
        with torch.no_grad():
            want = hf(torch.tensor([prompt])).logits[0].numpy()
        mine = got[b, -len(prompt):]
        assert np.abs(mine - want).max() <= 1e-4 * np.abs(want).max(), name


@pytest.mark.parametrize("dtype", list(LOGIT_TOLERANCE))
def test_compressed_formats_stay_within_bounds(family, dtype):
    name, _, directory = family
    ids, mask = padded_batch(PROMPTS)
    ref = Engine.from_pretrained(directory).logits(ids, mask)
    got = Engine.from_pretrained(directory, dtype).logits(ids, mask)
    err = np.abs(got - ref)[mask.astype(bool)].max()
    print(f"{name} {dtype}: max logit error {err:.3g}")
    assert err <= LOGIT_TOLERANCE[dtype], (name, err)


def test_seeded_sampling_is_deterministic_across_threads(family):
    name, _, directory = family
    ids, mask = padded_batch(PROMPTS)
    kw = dict(max_new_tokens=16, decode_strategy="sampling", top_k=20, top_p=0.9, seed=7,
              num_return_sequences=2, eos_token_id=-1)
    engine = Engine.from_pretrained(directory)
    one = engine.generate(ids, mask, num_threads=1, **kw)["ids"]
    two = engine.generate(ids, mask, num_threads=2, **kw)["ids"]
    np.testing.assert_array_equal(one, two)
    faster = FasterGPT.from_pretrained(directory).generate(ids, mask, **kw).ids.numpy()
    np.testing.assert_array_equal(faster, one)


# --- unsupported options are named, never silently wrong ----------------------

def _saved(tmp_path, name, **overrides):
    config_cls, model_cls, kwargs = FAMILIES[name]
    config = getattr(transformers, config_cls)(vocab_size=V, **SPECIAL, **dict(kwargs, **overrides))
    getattr(transformers, model_cls)(config).save_pretrained(tmp_path)
    return tmp_path


def test_unsupported_model_type_is_named(tmp_path):
    config = transformers.BloomConfig(vocab_size=V, hidden_size=32, n_layer=1, n_head=2)
    transformers.BloomForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"unsupported architecture model_type='bloom'"):
        Engine.from_pretrained(tmp_path)


def test_unsupported_rope_type_is_named(tmp_path):
    d = _saved(tmp_path, "llama-gqa", rope_parameters=dict(rope_type="yarn", rope_theta=10000.0,
                                                           factor=2.0))
    with pytest.raises(CheckpointError, match=r"rope type 'yarn' is not supported"):
        Engine.from_pretrained(d)


def test_sliding_window_shorter_than_the_request_is_refused(tmp_path):
    d = _saved(tmp_path, "mistral", sliding_window=16)
    engine = Engine.from_pretrained(d)
    engine.generate(np.array([[3, 4, 5]]), max_new_tokens=13)  # 16 positions: fits the window
    with pytest.raises(ValueError, match=r"beyond the model's sliding window of 16"):
        engine.generate(np.array([[3, 4, 5]]), max_new_tokens=14)


@pytest.mark.parametrize("fused", [False, True])
def test_paddlenlp_llama_layout_matches_the_hf_layout(tmp_path, fused):
    """The same LLaMA (GQA) written in PaddleNLP's layout (written here from its
    description: `llama.` names, Linear weights [in, out], the LM head [hidden, vocab],
    and with fuse_attention_qkv / fuse_attention_ffn: qkv_proj holding per KV head
    its group's q heads then its k then its v, gate_up_fused_proj holding gate | up)
    loads and generates exactly as the HF layout."""
    import paddle

    hf = make_hf("llama-gqa")
    hf.save_pretrained(tmp_path / "hf")
    c = hf.config
    H, K, Dh = c.num_attention_heads, c.num_key_value_heads, c.hidden_size // c.num_attention_heads
    G = H // K
    sd = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    state = {}
    for name, w in sd.items():
        name = name.replace("model.", "llama.", 1) if name.startswith("model.") else name
        state[name] = w.T if name.endswith("_proj.weight") or name == "lm_head.weight" else w
    if fused:
        for i in range(c.num_hidden_layers):
            a, m = f"llama.layers.{i}.self_attn.", f"llama.layers.{i}.mlp."
            q, k, v = (state.pop(a + f"{x}_proj.weight").T for x in "qkv")  # [out, in]
            rows = []
            for g in range(K):
                rows += [q[g * G * Dh:(g + 1) * G * Dh], k[g * Dh:(g + 1) * Dh], v[g * Dh:(g + 1) * Dh]]
            state[a + "qkv_proj.weight"] = np.concatenate(rows).T
            gate, up = state.pop(m + "gate_proj.weight"), state.pop(m + "up_proj.weight")
            state[m + "gate_up_fused_proj.weight"] = np.concatenate([gate, up], axis=1)
    d = tmp_path / "paddlenlp"
    d.mkdir()
    paddle.save({k: paddle.to_tensor(np.ascontiguousarray(v)) for k, v in state.items()},
                str(d / "model_state.pdparams"))
    (d / "config.json").write_text(c.to_json_string(), encoding="utf-8")

    ids, mask = padded_batch(PROMPTS)
    want = Engine.from_pretrained(tmp_path / "hf")
    got = Engine.from_pretrained(d)
    np.testing.assert_array_equal(got.logits(ids, mask), want.logits(ids, mask))
    np.testing.assert_array_equal(got.generate(ids, mask, max_new_tokens=20)["ids"],
                                  want.generate(ids, mask, max_new_tokens=20)["ids"])
