"""Tests for the Paddle GPT-2 reference model and generate(), checked against HF transformers."""

import numpy as np
import paddle
import pytest

from fastergpt.config import GPTConfig
from fastergpt.reference import GPTLMHeadModel, generate, randomize_, sampling_distribution
from helpers import PROMPTS, hf_model, padded_batch

VOCAB = 53


def make_config(tie=True, act="gelu_new"):
    return GPTConfig(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                     activation_function=act, tie_word_embeddings=tie)


def make_model(tie=True, act="gelu_new", seed=1):
    paddle.seed(seed)
    # std 0.1 gives peaked, well-separated logits so argmax is not decided by rounding.
    return randomize_(GPTLMHeadModel(make_config(tie, act)), seed, std=0.1)


@pytest.mark.parametrize("act", ["gelu_new", "gelu"])
@pytest.mark.parametrize("tie", [True, False])
def test_logits_match_hf(tie, act):
    torch = pytest.importorskip("torch")
    model = make_model(tie, act)
    hf = hf_model(model)
    ids = np.random.RandomState(0).randint(0, VOCAB, size=(2, 11))
    logits, cache = model(ids)
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(logits.numpy(), ref, atol=1e-5, rtol=0)
    assert len(cache) == 2 and tuple(cache[0][0].shape) == (2, 2, 11, 16)


def test_cached_forward_matches_full_forward():
    model = make_model()
    ids = np.random.RandomState(1).randint(0, VOCAB, size=(2, 9))
    full, _ = model(ids)
    _, cache = model(ids[:, :6])
    step, _ = model(ids[:, 6:], np.array([[6, 7, 8]] * 2), None, cache)
    np.testing.assert_allclose(step.numpy(), full.numpy()[:, 6:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("tie", [True, False])
def test_greedy_matches_hf(tie):
    torch = pytest.importorskip("torch")
    model = make_model(tie)
    hf = hf_model(model)
    ids, mask = padded_batch(PROMPTS)
    # Pick an eos that row 0 emits at step 4, so early stopping and padding both happen.
    eos = int(generate(model, ids, mask, max_new_tokens=12, repetition_penalty=1.3).ids[0, 4])
    kwargs = dict(max_new_tokens=12, min_length=2, repetition_penalty=1.3,
                  eos_token_id=eos, pad_token_id=0)
    ours = generate(model, ids, mask, **kwargs)
    # HF penalizes every id in input_ids, padding included; padding with a token
    # the row already holds makes that harmless.
    with torch.no_grad():
        seq = hf.generate(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False,
            max_new_tokens=12, min_new_tokens=2, repetition_penalty=1.3,
            eos_token_id=eos, pad_token_id=0,
        ).numpy()[:, ids.shape[1]:]
    assert ours.lengths[0] == 5
    np.testing.assert_array_equal(ours.ids, seq)


def test_row_alone_equals_row_in_padded_batch():
    model = make_model()
    ids, mask = padded_batch(PROMPTS, extra_pad=3)
    batch = generate(model, ids, mask, max_new_tokens=10, repetition_penalty=1.2,
                     return_logprobs=True)
    for b, prompt in enumerate(PROMPTS):
        alone = generate(model, np.array([prompt]), max_new_tokens=10, repetition_penalty=1.2,
                         return_logprobs=True)
        np.testing.assert_array_equal(alone.ids[0], batch.ids[b])
        np.testing.assert_allclose(alone.logprobs[0], batch.logprobs[b], atol=1e-5)


def test_eos_stops_and_pads():
    model = make_model()
    ids, mask = padded_batch(PROMPTS)
    free = generate(model, ids, mask, max_new_tokens=10)
    eos = int(free.ids[1, 2])
    out = generate(model, ids, mask, max_new_tokens=10, eos_token_id=eos, pad_token_id=50,
                   return_logprobs=True)
    for b in range(len(PROMPTS)):
        hits = np.nonzero(free.ids[b] == eos)[0]
        n = hits[0] + 1 if len(hits) else out.ids.shape[1]
        assert out.lengths[b] == n
        np.testing.assert_array_equal(out.ids[b, :n], free.ids[b, :n])
        assert (out.ids[b, n:] == 50).all() and (out.logprobs[b, n:] == 0).all()
    # Stops as soon as every row is done, or at max_new_tokens.
    assert out.ids.shape[1] == min(10, out.lengths.max())
    # min_length forbids eos for the first 3 new tokens.
    late = generate(model, ids, mask, max_new_tokens=10, eos_token_id=eos, min_length=3)
    assert (late.ids[:, :3] != eos).all()
    # A row that starts with eos stops at once; default pad is eos.
    first = int(free.ids[0, 0])
    one = generate(model, ids[:1], mask[:1], max_new_tokens=5, eos_token_id=first)
    assert one.ids.shape == (1, 1) and one.lengths[0] == 1


def test_num_return_sequences_and_sampling_determinism():
    model = make_model()
    ids, mask = padded_batch(PROMPTS)
    greedy = generate(model, ids, mask, max_new_tokens=6, num_return_sequences=2)
    np.testing.assert_array_equal(greedy.ids[0::2], greedy.ids[1::2])
    kw = dict(max_new_tokens=8, decode_strategy="sampling", top_k=10, top_p=0.9,
              temperature=0.8, num_return_sequences=3, return_logprobs=True)
    a = generate(model, ids, mask, seed=5, **kw)
    b = generate(model, ids, mask, seed=5, **kw)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.ids.shape == (9, 8) and a.logprobs.dtype == np.float32
    assert (a.logprobs <= 0).all() and np.isfinite(a.logprobs).all()
    assert a.ids.dtype == np.int64 and a.lengths.dtype == np.int64


@pytest.mark.parametrize("kwargs, name", [
    (dict(input_ids=np.array([[1, VOCAB]])), "input_ids"),
    (dict(input_ids=np.array([[1, -1]])), "input_ids"),
    (dict(attention_mask=np.array([[1, 0, 1]])), "attention_mask"),
    (dict(attention_mask=np.array([[0, 0, 0]])), "attention_mask"),
    (dict(attention_mask=np.array([[1, 1]])), "attention_mask"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=62), "n_positions"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(decode_strategy="sampling", temperature=0.0), "temperature"),
    (dict(repetition_penalty=0.0), "repetition_penalty"),
    (dict(decode_strategy="beam"), "decode_strategy"),
    (dict(eos_token_id=VOCAB), "eos_token_id"),
    (dict(num_return_sequences=0), "num_return_sequences"),
    (dict(min_length=-1), "min_length"),
])
def test_bad_generate_args(kwargs, name):
    model = make_model()
    args = dict(input_ids=np.array([[1, 2, 3]]), max_new_tokens=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        generate(model, **args)


def test_bad_config_and_state_dict():
    with pytest.raises(ValueError, match="tanh"):
        GPTConfig(activation_function="tanh")
    with pytest.raises(ValueError, match="the reference model is GPT-2 with GELU"):
        GPTLMHeadModel(GPTConfig(activation_function="relu"))
    with pytest.raises(ValueError, match="n_embd"):
        GPTConfig(n_embd=30, n_head=4).validate()
    assert GPTConfig(activation_function="gelu_pytorch_tanh").activation_function == "gelu_new"
    model = make_model(tie=False)
    sd = model.state_dict_numpy()
    with pytest.raises(ValueError, match="lm_head.weight"):
        model.load_numpy_state_dict({k: v for k, v in sd.items() if k != "lm_head.weight"})
    with pytest.raises(ValueError, match="extra.weight"):
        model.load_numpy_state_dict({**sd, "extra.weight": np.zeros(1)})
    with pytest.raises(ValueError, match="transformer.wpe.weight"):
        model.load_numpy_state_dict({**sd, "transformer.wpe.weight": np.zeros((3, 32))})


def test_state_dict_roundtrip_and_from_dict():
    cfg = GPTConfig.from_dict({"vocab_size": VOCAB, "n_ctx": 99, "n_positions": 64, "n_embd": 32,
                               "n_layer": 2, "n_head": 2, "activation_function": "gelu_fast",
                               "model_type": "gpt2", "eos_token_id": 50})
    assert cfg.n_positions == 64 and cfg.activation_function == "gelu_new" and cfg.eos_token_id == 50
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg and cfg.inner_size == 128 and cfg.head_size == 16
    src = make_model(seed=3)
    dst = GPTLMHeadModel(cfg)
    dst.load_numpy_state_dict(src.state_dict_numpy())
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_array_equal(src(ids)[0].numpy(), dst(ids)[0].numpy())


def test_sampling_distribution():
    logits = np.random.RandomState(0).randn(VOCAB).astype(np.float32)
    best = int(np.argmax(logits))
    for kwargs in (dict(top_k=1), dict(top_p=1e-6), dict(top_k=5, top_p=1e-6, temperature=0.3)):
        p = sampling_distribution(logits, **kwargs)
        assert p.dtype == np.float64 and p[best] == 1.0 and p.sum() == 1.0
    full = sampling_distribution(logits, top_k=0, top_p=1.0, temperature=2.0)
    expected = np.exp(logits / 2.0) / np.exp(logits / 2.0).sum()
    np.testing.assert_allclose(full, expected, rtol=1e-6)
    assert np.count_nonzero(sampling_distribution(logits, top_k=3)) == 3
    # Token i is kept iff the mass before it is < top_p: 0.5 < 0.6 keeps the second.
    p = sampling_distribution(np.log(np.array([0.2, 0.5, 0.3], np.float32)), top_p=0.6)
    np.testing.assert_allclose(p, [0.0, 0.625, 0.375])
