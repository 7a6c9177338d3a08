"""The shipped default model (fastergpt/default_model): layout, held-out perplexity, real words.

The corpus is rebuilt here by tools/build_corpus.py in a subprocess (it
imports the whole standard library, which must not leak into this process)
and written only under pytest's tmp directory.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastergpt.evaluation import (DEFAULT_MODEL_DIR, encode_documents, load_default_model,
                                  perplexity)
from fastergpt.reference import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The model card (fastergpt/default_model/README.md) states this same bound.
PPL_BOUND = 75.0
EVAL_TOKENS = 20000  # first held-out tokens scored (keeps the test well under a minute)
PROMPT = "The function returns"
GREEDY_TOKENS = 40
MIN_REAL_WORD_FRACTION = 0.8
MAX_SAFETENSORS_BYTES = 20 * 1024 * 1024


def _build_corpus_module():
    spec = importlib.util.spec_from_file_location(
        "_fastergpt_build_corpus", os.path.join(ROOT, "tools", "build_corpus.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "corpus.json"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_corpus.py"),
                    "--quiet", "--out", str(out)], check=True, cwd=ROOT, timeout=300)
    with open(out, encoding="utf-8") as f:
        data = json.load(f)
    assert len(data["train"]) > 1000 and len(data["heldout"]) > 50
    return data


@pytest.fixture(scope="module")
def shipped():
    return load_default_model("float16")


def test_files_follow_hf_gpt2_layout():
    from safetensors.numpy import load_file

    with open(os.path.join(DEFAULT_MODEL_DIR, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
                "activation_function", "layer_norm_epsilon", "tie_word_embeddings",
                "bos_token_id", "eos_token_id", "pad_token_id"):
        assert key in cfg, key
    path = os.path.join(DEFAULT_MODEL_DIR, "model.safetensors")
    assert os.path.getsize(path) <= MAX_SAFETENSORS_BYTES
    tensors = load_file(path)
    assert all(t.dtype == np.float16 for t in tensors.values())
    assert cfg["tie_word_embeddings"] and "lm_head.weight" not in tensors
    assert tensors["transformer.wte.weight"].shape == (cfg["vocab_size"], cfg["n_embd"])
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "generation_config.json", "README.md"):
        assert os.path.isfile(os.path.join(DEFAULT_MODEL_DIR, name)), name


def test_tokenizer_matches_config(shipped):
    _, tok, config = shipped
    assert tok.get_vocab_size() == config.vocab_size
    assert tok.token_to_id("<|endoftext|>") == config.eos_token_id == config.pad_token_id
    text = "Return a new list of the items."
    assert tok.decode(tok.encode(text).ids) == text


def test_model_card_states_the_bound():
    with open(os.path.join(DEFAULT_MODEL_DIR, "README.md"), encoding="utf-8") as f:
        card = f.read()
    assert f"perplexity **< {PPL_BOUND:g}**" in card


def test_heldout_perplexity_below_bound(corpus, shipped):
    model, tok, config = shipped
    ids = encode_documents(tok, corpus["heldout"], config.eos_token_id)[:EVAL_TOKENS]
    assert ids.size == EVAL_TOKENS
    ppl = perplexity(model, ids)
    assert ppl < PPL_BOUND, f"held-out perplexity {ppl:.2f} >= bound {PPL_BOUND}"


def test_greedy_text_is_mostly_real_words(corpus, shipped):
    model, tok, config = shipped
    bc = _build_corpus_module()
    vocab = bc.word_set(corpus["train"])
    prompt = np.array([tok.encode(PROMPT).ids])
    out = generate(model, prompt, max_new_tokens=GREEDY_TOKENS, eos_token_id=config.eos_token_id)
    text = tok.decode(out.ids[0, :out.lengths[0]].tolist())
    words = bc.plain_words(text)
    assert len(words) >= 10, f"too few words generated: {text!r}"
    real = [w for w in words if w in vocab]
    fraction = len(real) / len(words)
    assert fraction >= MIN_REAL_WORD_FRACTION, (
        f"only {fraction:.0%} of the words are in the training corpus: {text!r}")
