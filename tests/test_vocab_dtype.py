"""vocab_dtype: the token table and LM head in a format of their own (int4 keeps them in
int8 unless asked; an int4 vocabulary keeps its token table in int8), through every front
end, an export and a save."""
import dataclasses
import json

import numpy as np
import pytest

from fastergpt import Engine, FasterGPT, int4
from fastergpt.packing import weight_spec
from fastergpt.pretrained import DEFAULT_MODEL_DIR, vocabulary_dtype
from fastergpt.quantize import format_names, quantize_int8_rows
from helpers import PROMPTS, padded_batch, tiny_config, tiny_model

# tied (GPT-2) and untied (a separate LM head) vocabularies, vocabulary 64 rows = 4 blocks
CONFIGS = [dict(vocab_size=64), dict(vocab_size=64, tie_word_embeddings=False)]


@pytest.fixture(scope="module", params=CONFIGS, ids=["tied", "untied"])
def model(request):
    return tiny_model(tiny_config(**request.param), seed=5)


def test_spec_follows_vocab_dtype():
    """The LM head takes vocab_dtype; the token table too, but for an int4 vocabulary,
    whose table stays int8 (a lookup reads one row: 4 bits would cost precision, not
    time), and whose tied head is then packed as a matrix of its own."""
    for tied in (False, True):
        config = tiny_config(tie_word_embeddings=tied)
        for dtype in format_names():
            default = {"int4": "int8"}.get(dtype, dtype)
            assert vocabulary_dtype(config, dtype) == default
            for vocab in format_names():
                c = dataclasses.replace(config, vocab_dtype=vocab)
                formats = {e.name: e.format for e in weight_spec(c, dtype) if e.matrix}
                assert vocabulary_dtype(c, dtype) == vocab
                assert formats["token_embedding"] == ("int8" if vocab == "int4" else vocab)
                if tied and vocab != "int4":
                    assert "lm_head.weight" not in formats  # the table serves as the head
                else:
                    assert formats["lm_head.weight"] == vocab
                assert formats["layers.0.qkv.weight"] == dtype


def _with_dequantized_vocabulary(model):
    """(config, float state) of the model as --vocab_dtype int4 packs its vocabulary: the
    LM head rounded to 4 bits (to nearest, in groups of 128), the token table to int8 rows
    (a tied head becomes a matrix of its own)."""
    state = model.state_dict_numpy()
    table = state["transformer.wte.weight"]
    head = state.get("lm_head.weight", table)
    q, scale = quantize_int8_rows(table)
    state["transformer.wte.weight"] = q.astype(np.float32) * scale[:, None]
    state["lm_head.weight"] = int4.quantize_rtn(head).dequantize()
    return dataclasses.replace(model.config, tie_word_embeddings=False), state


def test_int4_vocabulary_computes_the_dequantized_model(model):
    """Every other matrix float32: the logits are the float model's with the LM head
    rounded to 4 bits and the token table to int8, up to the int8 activations the LM
    head's int4 kernel multiplies (the table's rows are dequantized exactly)."""
    ids, mask = padded_batch(PROMPTS)
    got = Engine.from_model(model, "float32", vocab_dtype="int4").logits(ids, mask)
    want = Engine(*_with_dequantized_vocabulary(model), "float32").logits(ids, mask)
    real = mask.astype(bool)
    err = np.abs(got - want)[real].max()
    assert err < 0.02, err
    # ... and not the unrounded model's: the setting took effect.
    plain = Engine.from_model(model, "float32").logits(ids, mask)
    assert np.abs(plain - got)[real].max() > 5 * err


@pytest.mark.parametrize("vocab", ["float32", "int8", "int4"])
def test_front_ends_agree(model, vocab):
    ids, mask = padded_batch(PROMPTS)
    kw = dict(max_new_tokens=8, decode_strategy="sampling", top_k=5, seed=4, eos_token_id=-1)
    engine = Engine.from_model(model, "int4", vocab_dtype=vocab)
    fused = FasterGPT(model, dtype="int4", vocab_dtype=vocab)
    np.testing.assert_array_equal(fused.generate(ids, mask, **kw).ids.numpy(),
                                  engine.generate(ids, mask, **kw)["ids"])


def test_save_and_load_keep_it(tmp_path):
    model = tiny_model(tiny_config(vocab_size=64), seed=6)
    engine = Engine.from_model(model, "int4", vocab_dtype="int4")
    engine.save(tmp_path / "e")
    loaded = Engine.load(tmp_path / "e")
    assert loaded.config.vocab_dtype == "int4"
    ids, mask = padded_batch(PROMPTS)
    np.testing.assert_array_equal(loaded.logits(ids, mask), engine.logits(ids, mask))


def test_head_bytes_shrink():
    """What every step streams, the LM head, about halves in int4; the int8 token table
    stays as it was (a step reads one row of it per token), the tied head packed beside it."""
    sizes = {}
    for vocab in (None, "int4"):
        engine = Engine.from_pretrained(DEFAULT_MODEL_DIR, dtype="int4", vocab_dtype=vocab)
        sizes[vocab] = {name: a.nbytes for name, a in engine._packed}
    table = lambda s: s["token_embedding"] + s["token_embedding.scale"]  # noqa: E731
    head = sizes["int4"]["lm_head.weight"] + sizes["int4"]["lm_head.scale"]
    # default model: 4096 x 256 vocabulary, 1 MB in int8, about half that in int4
    assert "lm_head.weight" not in sizes[None]  # int8: the tied table is the head
    assert table(sizes["int4"]) == table(sizes[None]) > 1_000_000
    assert head < 0.6 * table(sizes[None]), (head, table(sizes[None]))
    assert sum(sizes["int4"].values()) == sum(sizes[None].values()) + head


def test_export_records_it_and_refuses_another(tmp_path):
    from fastergpt.export import export_model
    from fastergpt.predictor import Predictor

    out = export_model(DEFAULT_MODEL_DIR, tmp_path / "exp", dtype="int4", vocab_dtype="int4",
                       log=lambda s: None)
    info = json.loads((out / "config.json").read_text())
    assert info["model"]["vocab_dtype"] == "int4"
    assert "vocabulary_format=int4;" in info["architecture"]
    settings = dict(max_new_tokens=10, decode_strategy="greedy_search", repetition_penalty=1.0)
    got = Predictor(out).generate(["The function returns"], **settings)
    want = Engine.from_pretrained(DEFAULT_MODEL_DIR, dtype="int4", vocab_dtype="int4")
    from fastergpt import Tokenizer

    ids, mask = Tokenizer.from_dir(out).encode_batch(["The function returns"])
    np.testing.assert_array_equal(got.ids, want.generate(ids, mask, **settings)["ids"])
    assert FasterGPT.from_pretrained(out).config.vocab_dtype == "int4"
    assert Engine.from_pretrained(out, vocab_dtype="int4").config.vocab_dtype == "int4"
    with pytest.raises(ValueError, match="token table and LM head in int4.*--vocab_dtype int8"):
        Engine.from_pretrained(out, vocab_dtype="int8")


def test_bad_vocab_dtype_is_named():
    with pytest.raises(ValueError, match="vocab_dtype 'int3' is not supported; expected one of"):
        Engine.from_pretrained(DEFAULT_MODEL_DIR, vocab_dtype="int3")
    with pytest.raises(ValueError, match="vocab_dtype 'q3' is not supported"):
        tiny_config(vocab_dtype="q3").validate()
    # An architecture string with an unknown vocabulary format is refused by the engine.
    from fastergpt.ops import engine_module

    arch = tiny_config().architecture_string().replace("vocabulary_format=auto", "vocabulary_format=int2")
    with pytest.raises(ValueError, match="vocabulary_format 'int2' is not supported"):
        engine_module().weight_spec(arch, "int4")


def test_aliases_normalize():
    assert tiny_config(vocab_dtype="q4").validate().vocab_dtype == "int4"
    assert tiny_config(vocab_dtype="fp16").validate().vocab_dtype == "float16"


def test_perplexity_cli(tmp_path, capsys):
    from fastergpt.__main__ import main

    f = tmp_path / "text.txt"
    f.write_text("Return a new list of the items in the sequence. If the file does not exist, "
                 "the function raises an error.", encoding="utf-8")
    assert main(["perplexity", str(f), "--dtype", "int4", "--vocab_dtype", "int4"]) == 0
    single = capsys.readouterr().out
    assert "(int4 weights, token table and LM head int4)" in single
    assert main(["perplexity", str(f), "--compare", "int4,int4@int4,float32@int8"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert {"int4", "int4@int4", "float32@int8"} <= set(rows)
    assert "| format | nats/token | perplexity |" in out and "next token as float32" not in out
    assert main(["perplexity", str(f), "--compare", "float32,int4@int4"]) == 0
    with_base = capsys.readouterr().out
    assert "| vs float32 | next token as float32 |" in with_base
    agreement = {line.split("|")[1].strip(): float(line.split("|")[5])
                 for line in with_base.splitlines() if line.startswith("| ") and "---" not in line
                 and "format" not in line}
    assert agreement["float32"] == 1.0 and 0.5 < agreement["int4@int4"] < 1.0
    # the @int4 row is the single run's number
    ppl = float(single.split("perplexity ")[1].split(" ")[0])
    assert abs(float(rows["int4@int4"].split("|")[3]) - ppl) < 0.01
    assert float(rows["int4@int4"].split("|")[3]) != float(rows["int4"].split("|")[3])
    assert main(["perplexity", str(f), "--compare", "int4@int3"]) == 2
    assert "unknown format(s) ['int4@int3']" in capsys.readouterr().err
    assert main(["perplexity", str(f), "--compare", "int4", "--vocab_dtype", "int4"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    for extra in ([], ["--compare", "float32,int8"]):
        assert main(["perplexity", str(empty), *extra]) == 2
        assert "empty.txt: the text gives 1 token(s); a perplexity needs at least 2" in capsys.readouterr().err


def test_server_options_carry_it():
    """fastergpt serve --vocab_dtype reaches the replica's engine (ServerOptions mirrors
    the command's flags)."""
    from fastergpt.server.service import ServerOptions, Service

    service = Service(ServerOptions(dtype="int4", vocab_dtype="int4", max_batch=2))
    try:
        assert service.scheduler.engine.config.vocab_dtype == "int4"
    finally:
        service.close()


@pytest.mark.parametrize("name", ["opt-350m-style", "llama-gqa"])
def test_other_families_against_transformers(tmp_path_factory, name):
    """OPT with a projected embedding (E != D) and LLaMA with an untied head: with
    vocab_dtype int4 the engine's logits are transformers' on the same model with its
    LM head rounded to 4 bits (groups of 128, as the packer rounds them) and its token
    table to int8 rows, up to the int8 activations of the LM head's kernel."""
    torch = pytest.importorskip("torch")
    from families import saved_hf

    hf, directory = saved_hf(name, tmp_path_factory)
    engine = Engine.from_pretrained(directory, "float32", vocab_dtype="int4")
    with torch.no_grad():
        table, head = hf.get_input_embeddings().weight, hf.get_output_embeddings()
        w = head.weight.numpy().copy()  # tied: the table's values
        head.weight = torch.nn.Parameter(torch.from_numpy(int4.quantize_rtn(w).dequantize()))
        q, scale = quantize_int8_rows(table.numpy())  # (a tied table is no longer the head's)
        table.copy_(torch.from_numpy(q.astype(np.float32) * scale[:, None]))
        ids = np.array([[5, 17, 3, 99, 42, 8, 64, 2]])
        want = hf(torch.from_numpy(ids)).logits.numpy()
    got = engine.logits(ids)
    err = np.abs(got - want).max()
    print(f"{name}: max logit error {err:.2e}")
    assert err < 0.02, err  # unrounded, transformers' logits differ by 0.07-0.1
