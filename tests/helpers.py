"""Shared helpers for the tests: tiny models, padded batches, HF twins, engine front ends.

Imported as ``helpers`` (pytest puts ``tests/`` on sys.path because the
directory has no ``__init__.py``).
"""

import numpy as np
import paddle
import pytest

from fastergpt.config import GPTConfig
from fastergpt.reference import GPTLMHeadModel, randomize_
from batches import padded_batch  # noqa: F401  (re-exported: the tests import it from here)

# Left-padded batch; padded slots hold the row's first real token (see padded_batch).
PROMPTS = [[7, 3, 9, 12, 1, 40], [5, 22, 8], [30]]


def tiny_config(vocab_size=53, n_positions=64, n_embd=32, n_layer=2, n_head=2, **kwargs):
    return GPTConfig(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd,
                     n_layer=n_layer, n_head=n_head, **kwargs)


def tiny_model(config=None, seed=1, std=0.1, **config_kwargs):
    """A reference GPTLMHeadModel with every tensor drawn from N(0, std).

    std 0.1 gives peaked, well-separated logits, so argmax is not decided by rounding.
    """
    if config is None:
        config = tiny_config(**config_kwargs)
    paddle.seed(seed)
    return randomize_(GPTLMHeadModel(config), seed, std=std)


def hf_model(model):
    """An HF GPT2LMHeadModel holding exactly the reference model's weights (skips without torch)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    c = model.config
    hf_config = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=c.n_inner, layer_norm_epsilon=c.layer_norm_epsilon,
        activation_function=c.activation_function, tie_word_embeddings=c.tie_word_embeddings,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
    )
    hf = transformers.GPT2LMHeadModel._from_config(hf_config, attn_implementation="eager").eval()
    ours = model.state_dict_numpy()
    assert {n for n, _ in hf.named_parameters()} == set(ours)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.copy_(torch.from_numpy(ours[name]))
    if c.tie_word_embeddings:
        assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()
    return hf


def hf_greedy(hf, ids, mask, max_new_tokens, **kwargs):
    """HF greedy continuation (new tokens only) as int64 numpy."""
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        seq = hf.generate(
            torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), do_sample=False,
            max_new_tokens=max_new_tokens, **kwargs,
        ).numpy()
    return seq[:, ids.shape[1]:].astype(np.int64)


def run_faster(faster, *args, **kwargs):
    """FasterGPT.generate with numpy results: {'ids', 'lengths', 'logprobs'}."""
    out = faster.generate(*args, **kwargs)
    return {"ids": out.ids.numpy(), "lengths": out.lengths.numpy(),
            "logprobs": out.logprobs.numpy()}


def run_engine(engine, *args, **kwargs):
    """Engine.generate with logprobs requested (returns its dict of numpy arrays)."""
    kwargs.setdefault("return_logprobs", True)
    return engine.generate(*args, **kwargs)


def front_ends(model):
    """[(name, callable)] running FasterGPT and Engine on the same model, numpy dict results."""
    from fastergpt import Engine, FasterGPT

    faster = FasterGPT(model)
    engine = Engine.from_model(model)
    return [
        ("FasterGPT", lambda *a, **k: run_faster(faster, *a, **k)),
        ("Engine", lambda *a, **k: run_engine(engine, *a, **k)),
    ]
