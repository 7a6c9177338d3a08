"""Live PaddleNLP models (fastergpt.paddlenlp): `FasterGPT(model)` reads a random
small PaddleNLP model of each supported class in memory, and `enable(model)` makes
PaddleNLP's own `generate(..., use_fast=True)` run on the engine.

The references are PaddleNLP's own: its generate() where it runs under this Paddle
(GPT and OPT; each prompt alone, since its GPT generate numbers padded rows'
positions differently), and for every class a greedy loop over the model's own
forward (the whole sequence each step, no cache, no padding) - PaddleNLP 2.8.1's
generate() fails for LLaMA, CodeGen and GPT-J under Paddle 3.x ("The `condition` is
expected to be a boolean Tensor": it passes float masks to paddle.where; the test
casts CodeGen's and GPT-J's causal-mask buffers to bool so their forward runs).

paddlenlp pins huggingface_hub < 1.0, which transformers >= 5 (the other tests'
reference) refuses, so .ci/run installs it in an environment of its own and names
that interpreter in FASTERGPT_PADDLENLP_PYTHON; the first test runs this file there.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

HAVE_PADDLENLP = importlib.util.find_spec("paddlenlp") is not None


def test_this_file_in_the_paddlenlp_environment():
    if HAVE_PADDLENLP:
        pytest.skip("paddlenlp is importable here: the tests below run in this process")
    python = os.environ.get("FASTERGPT_PADDLENLP_PYTHON")
    if not python:
        pytest.skip("paddlenlp is not installed: pip install -r requirements-paddlenlp.txt in an "
                    "environment without transformers>=5 and set FASTERGPT_PADDLENLP_PYTHON "
                    "(.ci/run does)")
    proc = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           "-k", "not in_the_paddlenlp_environment"],
                          capture_output=True, text=True, timeout=1800,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.stdout.write(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


needs_paddlenlp = pytest.mark.skipif(not HAVE_PADDLENLP, reason="paddlenlp is not importable here "
                                     "(see test_this_file_in_the_paddlenlp_environment)")

EOS, PAD = 2, 0
PROMPTS = [[5, 9, 14, 3, 77, 21, 8], [40, 41], [7, 90, 12, 95]]
NEW_TOKENS = 40
# class -> (config class, model class, config kwargs): odd widths, GQA, partial rotary.
CLASSES = {
    "gpt": ("GPTConfig", "GPTForCausalLM",
            dict(hidden_size=36, num_hidden_layers=2, num_attention_heads=3, intermediate_size=70,
                 max_position_embeddings=64)),
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=72, max_position_embeddings=64)),
    "opt": ("OPTConfig", "OPTForCausalLM",
            dict(hidden_size=40, num_hidden_layers=2, num_attention_heads=4, intermediate_size=72,
                 max_position_embeddings=64, word_embed_proj_dim=40)),
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM",
                dict(n_embd=40, n_layer=2, n_head=4, n_positions=64, n_ctx=64, rotary_dim=4)),
    "gptj": ("GPTJConfig", "GPTJForCausalLM",
             dict(n_embd=42, n_layer=2, n_head=3, n_positions=64, rotary_dim=6)),
}
GENERATE_RUNS = ("gpt", "opt")  # PaddleNLP's own generate() works for these under Paddle 3.x


def make(name: str):
    import paddle
    from paddlenlp import transformers

    config_cls, model_cls, kwargs = CLASSES[name]
    config = getattr(transformers, config_cls)(vocab_size=101, bos_token_id=1, eos_token_id=EOS,
                                               pad_token_id=PAD, **kwargs)
    paddle.seed(sum(map(ord, name)))
    model = getattr(transformers, model_cls)(config)
    model.eval()
    # PaddleNLP 2.8.1 keeps CodeGen's and GPT-J's causal masks as float tensors and uses
    # them as paddle.where conditions, which Paddle 3.x refuses; as booleans they mean
    # what PaddleNLP meant (its forward is otherwise untouched).
    for layer in model.sublayers():
        for attr in ("causal_mask", "bias"):
            t = getattr(layer, attr, None)
            if isinstance(t, paddle.Tensor) and t.ndim == 4 and t.dtype != paddle.bool:
                setattr(layer, attr, t.astype("bool"))
    rng = np.random.RandomState(sum(map(ord, name)))
    for pname, p in model.named_parameters():  # peaked logits: argmax not decided by rounding
        base = 1.0 if p.ndim == 1 and ("norm" in pname or "ln_" in pname) and pname.endswith("weight") else 0.0
        scale = 0.3 if p.ndim > 1 else 0.1
        p.set_value((base + scale * rng.standard_normal(p.shape)).astype("float32"))
    return model


@pytest.fixture(scope="module", params=list(CLASSES))
def model(request):
    if not HAVE_PADDLENLP:
        pytest.skip("paddlenlp is not importable here")
    return request.param, make(request.param)


def ragged(prompts):
    L = max(map(len, prompts))
    ids = np.array([[PAD] * (L - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (L - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    return ids, mask


def forward_greedy(model, prompt, new_tokens):
    """Greedy decoding over PaddleNLP's forward: the whole sequence each step."""
    import paddle

    seq, out = list(prompt), []
    with paddle.no_grad():
        for _ in range(new_tokens):
            kwargs = {}
            if model.config.model_type in ("codegen", "gptj"):  # else it masks tokens equal to the pad id
                kwargs["attention_mask"] = paddle.ones([1, len(seq)], dtype="float32")
            res = model(paddle.to_tensor([seq]), **kwargs)
            logits = res[0] if isinstance(res, (tuple, list)) else getattr(res, "logits", res)
            tok = int(paddle.argmax(logits[0, -1]).item())
            out.append(tok)
            if tok == EOS:
                break
            seq.append(tok)
    return out


def rows(ids, lengths):
    return [list(map(int, r[:n])) for r, n in zip(np.asarray(ids), np.asarray(lengths))]


@needs_paddlenlp
def test_fastergpt_of_a_live_model_equals_paddlenlp(model):
    from fastergpt import FasterGPT

    name, m = model
    ids, mask = ragged(PROMPTS)
    out = FasterGPT(m).generate(ids, mask, max_new_tokens=NEW_TOKENS, eos_token_id=EOS, pad_token_id=PAD)
    got = rows(out.ids.numpy(), out.lengths.numpy())
    for b, prompt in enumerate(PROMPTS):
        assert got[b] == forward_greedy(m, prompt, NEW_TOKENS), (name, b)
        if name in GENERATE_RUNS:
            import paddle

            ref_ids, _ = m.generate(input_ids=paddle.to_tensor([prompt]), max_length=NEW_TOKENS,
                                    decode_strategy="greedy_search", eos_token_id=EOS, pad_token_id=PAD)
            ref = list(map(int, ref_ids.numpy()[0]))
            ref = ref[:ref.index(EOS) + 1] if EOS in ref else ref
            assert got[b] == ref, (name, b, "PaddleNLP generate")


@needs_paddlenlp
def test_use_fast(model):
    import paddle

    import fastergpt.paddlenlp
    from fastergpt import FasterGPT

    name, m = model
    ids, mask = ragged(PROMPTS)
    pids, pmask = paddle.to_tensor(ids), paddle.to_tensor(mask)
    before = None
    if name in GENERATE_RUNS:
        before = m.generate(input_ids=pids[:1], max_length=6, decode_strategy="greedy_search")[0].numpy()
    fastergpt.paddlenlp.enable(m)
    try:
        fast_ids, scores = m.generate(input_ids=pids, attention_mask=pmask, max_length=12,
                                      decode_strategy="greedy_search", eos_token_id=EOS,
                                      pad_token_id=PAD, use_fast=True)
        want = FasterGPT(m).generate(ids, mask, max_new_tokens=12, eos_token_id=EOS, pad_token_id=PAD)
        np.testing.assert_array_equal(fast_ids.numpy(), want.ids.numpy())
        assert list(scores.shape) == [3, 1] and scores.dtype == paddle.float32
        lengths = want.lengths.numpy()
        np.testing.assert_allclose(scores.numpy()[:, 0], want.scores.numpy() / lengths, rtol=1e-6)
        # Seeded sampling: the same seed, the same tokens.
        s1 = m.generate(input_ids=pids, attention_mask=pmask, max_length=10, decode_strategy="sampling",
                        top_k=5, top_p=0.9, temperature=0.8, seed=3, use_fast=True)[0].numpy()
        s2 = m.generate(input_ids=pids, attention_mask=pmask, max_length=10, decode_strategy="sampling",
                        top_k=5, top_p=0.9, temperature=0.8, seed=3, use_fast=True)[0].numpy()
        np.testing.assert_array_equal(s1, s2)
        # Beam search and several return sequences.
        b_ids, b_scores = m.generate(input_ids=pids, attention_mask=pmask, max_length=8,
                                     decode_strategy="beam_search", num_beams=3,
                                     num_return_sequences=2, use_fast=True)
        assert b_ids.shape[0] == 6 and list(b_scores.shape) == [6, 1]
        # num_beams alone means beam search; its scores are the engine's beam scores (sum of
        # log-probabilities at PaddleNLP's default length_penalty 0), not divided again.
        n_ids, n_scores = m.generate(input_ids=pids, attention_mask=pmask, max_length=8, num_beams=3,
                                     use_fast=True)
        beam = FasterGPT(m).generate(ids, mask, max_new_tokens=8, num_beams=3, length_penalty=0.0)
        np.testing.assert_array_equal(n_ids.numpy(), beam.ids.numpy())
        np.testing.assert_allclose(n_scores.numpy()[:, 0], beam.scores.numpy(), rtol=1e-6)
        with pytest.raises(ValueError, match=r"does not support length_penalty=1.0 with beam search"):
            m.generate(input_ids=pids, max_length=4, num_beams=2, length_penalty=1.0, use_fast=True)
        # Position ids other than the engine's are refused; the engine's are accepted.
        pos = np.clip(np.cumsum(mask, -1) - 1, 0, None)
        m.generate(input_ids=pids, attention_mask=pmask, position_ids=paddle.to_tensor(pos),
                   max_length=2, use_fast=True)
        with pytest.raises(ValueError, match="position_ids differ"):
            m.generate(input_ids=pids, attention_mask=pmask, position_ids=paddle.to_tensor(pos + 1),
                       max_length=2, use_fast=True)
        # An argument the engine lacks is an error, not a silent slow path.
        with pytest.raises(ValueError, match=r"does not support num_beam_groups=2"):
            m.generate(input_ids=pids, max_length=4, num_beams=4, num_beam_groups=2, use_fast=True)
        with pytest.raises(ValueError, match=r"does not support diversity_rate=0.5"):
            m.generate(input_ids=pids, max_length=4, diversity_rate=0.5, use_fast=True)
        # use_fast=False is PaddleNLP's own generate, untouched.
        if before is not None:
            after = m.generate(input_ids=pids[:1], max_length=6, decode_strategy="greedy_search")[0].numpy()
            np.testing.assert_array_equal(after, before)
    finally:
        m.generate = m.generate.__fastergpt_original__


@needs_paddlenlp
def test_use_fast_in_a_weight_format(model):
    """enable(model, dtype, vocab_dtype): use_fast runs the model in that format, the token
    table and LM head in theirs, as FasterGPT(model, ...) does."""
    import paddle

    import fastergpt.paddlenlp
    from fastergpt import FasterGPT

    _, m = model
    ids, mask = ragged(PROMPTS)
    fastergpt.paddlenlp.enable(m, dtype="int4", vocab_dtype="int4")
    try:
        got, _ = m.generate(input_ids=paddle.to_tensor(ids), attention_mask=paddle.to_tensor(mask),
                            max_length=8, decode_strategy="greedy_search", eos_token_id=EOS,
                            pad_token_id=PAD, use_fast=True)
        fast = FasterGPT(m, dtype="int4", vocab_dtype="int4")
        assert fast.config.vocab_dtype == "int4"
        want = fast.generate(ids, mask, max_new_tokens=8, eos_token_id=EOS, pad_token_id=PAD)
        np.testing.assert_array_equal(got.numpy(), want.ids.numpy())
    finally:
        m.generate = m.generate.__fastergpt_original__


@needs_paddlenlp
def test_export_of_a_live_model_and_of_its_save_pretrained_directory(tmp_path):
    import paddle
    from paddlenlp.transformers import GPTTokenizer

    import fastergpt.paddlenlp
    from fastergpt import FasterGPT
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor
    from layouts import bpe_vocab_size, write_tokenizer

    tok_dir = write_tokenizer(tmp_path / "tok", form="vocab")
    tokenizer = GPTTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"))
    from paddlenlp.transformers import GPTConfig, GPTForCausalLM

    paddle.seed(7)
    m = GPTForCausalLM(GPTConfig(vocab_size=bpe_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, intermediate_size=64, max_position_embeddings=64))
    m.eval()
    out = fastergpt.paddlenlp.export(m, tokenizer, tmp_path / "export", log=lambda s: None)
    prompt = np.array(tokenizer("hello world")["input_ids"])[None]
    got = Predictor(out).generate(input_ids=prompt, max_new_tokens=8, decode_strategy="greedy_search",
                                  eos_token_id=-1)
    want = FasterGPT(m).generate(prompt, max_new_tokens=8, eos_token_id=-1)
    np.testing.assert_array_equal(got.ids, want.ids.numpy())
    # Every class's save_pretrained directory exports (and loads) from disk.
    for name in CLASSES:
        src = tmp_path / f"saved_{name}"
        live = make(name)
        live.save_pretrained(str(src))
        engine_out = FasterGPT.from_pretrained(src).generate(np.array([PROMPTS[0]]), max_new_tokens=6,
                                                            eos_token_id=-1)
        live_out = FasterGPT(live).generate(np.array([PROMPTS[0]]), max_new_tokens=6, eos_token_id=-1)
        np.testing.assert_array_equal(engine_out.ids.numpy(), live_out.ids.numpy())
    # ... and export_model takes such a directory (with its tokenizer saved beside it).
    m.save_pretrained(str(tmp_path / "saved_with_tokenizer"))
    tokenizer.save_pretrained(str(tmp_path / "saved_with_tokenizer"))
    again = Predictor(export_model(tmp_path / "saved_with_tokenizer", tmp_path / "export2", log=lambda s: None))
    np.testing.assert_array_equal(again.generate(input_ids=prompt, max_new_tokens=8, eos_token_id=-1,
                                                 decode_strategy="greedy_search").ids, got.ids)


@needs_paddlenlp
def test_unsupported_classes_and_settings_are_named():
    from paddlenlp.transformers import BloomConfig, BloomForCausalLM

    from fastergpt import FasterGPT
    from fastergpt.checkpoint import CheckpointError

    m = BloomForCausalLM(BloomConfig(vocab_size=50, hidden_size=16, n_layer=1, n_head=2))
    with pytest.raises(CheckpointError, match=r"PaddleNLP BloomForCausalLM: unsupported architecture "
                                              r"model_type='bloom'"):
        FasterGPT(m)
