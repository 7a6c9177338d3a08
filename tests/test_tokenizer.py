"""fastergpt.tokenizer.Tokenizer: byte-level BPE (tokenizer.json, vocab.json + merges.txt)
and SentencePiece round trips, special tokens by name, left-padded batches."""
import numpy as np
import pytest

from fastergpt.tokenizer import Tokenizer, TokenizerError
from layouts import ENDOFTEXT, write_json, write_tokenizer

TEXTS = {
    "ascii": "The function returns a new list, hello world! 123 (x + y) * z",
    "accented": "café crème brûlée, über Straße, señor niño mañana, Ångström",
    "cjk": "日本語のテキストと中文文本，한국어 텍스트",
    "emoji": "emoji 😀 🚀 ✨ 👩‍💻 🇫🇷 done",
    "mixed": "  leading spaces, tabs\tand\nnewlines — ünïcödé 日本 😀  ",
}


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    """{"json": Tokenizer from tokenizer.json, "vocab": from vocab.json + merges.txt}."""
    out = {}
    for form in ("json", "vocab"):
        d = write_tokenizer(tmp_path_factory.mktemp(form), form)
        out[form] = Tokenizer.from_dir(d)
    return out


def test_files_found(bpe):
    assert [f.name for f in bpe["json"].files] == ["tokenizer.json"]
    assert [f.name for f in bpe["vocab"].files] == ["vocab.json", "merges.txt"]
    assert bpe["json"].kind == bpe["vocab"].kind == "bpe"
    assert bpe["json"].vocab_size == bpe["vocab"].vocab_size


@pytest.mark.parametrize("form", ["json", "vocab"])
@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_round_trip(bpe, form, kind):
    tok = bpe[form]
    text = TEXTS[kind]
    ids = tok.encode(text)
    assert ids and all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=False) == text


@pytest.mark.parametrize("kind", sorted(TEXTS))
def test_both_forms_give_identical_ids(bpe, kind):
    assert bpe["json"].encode(TEXTS[kind]) == bpe["vocab"].encode(TEXTS[kind])


@pytest.mark.parametrize("form", ["json", "vocab"])
def test_endoftext_by_name(bpe, form):
    tok = bpe[form]
    eot = tok.token_to_id(ENDOFTEXT)
    assert eot is not None
    assert tok.eos_token_id == eot
    assert tok.pad_token_id == eot  # no pad token given: the end token pads
    text = "first doc" + ENDOFTEXT + "second doc"
    ids = tok.encode(text)
    assert ids.count(eot) == 1
    i = ids.index(eot)
    assert ids[:i] == tok.encode("first doc") and ids[i + 1:] == tok.encode("second doc")
    assert tok.encode(ENDOFTEXT) == [eot]
    assert tok.decode(ids, skip_special_tokens=True) == "first docsecond doc"
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.decode(ids) == "first docsecond doc"  # skipping is the default


@pytest.mark.parametrize("form", ["json", "vocab"])
def test_text_without_utf8_and_ids_out_of_range_are_refused(bpe, form):
    """(A lone surrogate had escaped from the tokenizer library as TypeError, a negative
    id as OverflowError.)"""
    tok = bpe[form]
    with pytest.raises(ValueError, match=r"text: not valid Unicode at character 3 \(surrogates not allowed\)"):
        tok.encode("abc\ud800")
    with pytest.raises(ValueError, match=r"text: not valid Unicode"):
        tok.encode_batch(["fine", "\udfff"])
    for bad in (-3, 2**32):
        with pytest.raises(ValueError, match=rf"decode: {bad} is not a token id"):
            tok.decode([1, bad])


@pytest.mark.parametrize("form", ["json", "vocab"])
def test_encode_batch_left_pads(bpe, form):
    tok = bpe[form]
    texts = [TEXTS["ascii"], "hi", TEXTS["cjk"], ENDOFTEXT]
    ids, mask = tok.encode_batch(texts)
    rows = [tok.encode(t) for t in texts]
    L = max(map(len, rows))
    assert ids.shape == mask.shape == (len(texts), L)
    assert ids.dtype == mask.dtype == np.int64
    for i, row in enumerate(rows):
        n_pad = L - len(row)
        assert ids[i, n_pad:].tolist() == row
        assert ids[i, :n_pad].tolist() == [tok.pad_token_id] * n_pad
        assert mask[i].tolist() == [0] * n_pad + [1] * len(row)
    # Decoding the real part of each row gives the text back.
    for i, t in enumerate(texts):
        assert tok.decode(ids[i][mask[i] == 1], skip_special_tokens=False) == t


def test_pad_token_from_special_tokens_map(tmp_path, bpe):
    write_tokenizer(tmp_path, "json")
    write_json(tmp_path / "special_tokens_map.json",
               {"eos_token": {"content": ENDOFTEXT}, "pad_token": "!"})
    tok = Tokenizer.from_dir(tmp_path)
    bang = tok.token_to_id("!")
    assert tok.pad_token_id == bang != tok.eos_token_id
    ids, mask = tok.encode_batch(["hello world", "hi"])
    n_pad = int((mask[1] == 0).sum())
    assert n_pad > 0 and ids[1, :n_pad].tolist() == [bang] * n_pad
    assert (tmp_path / "special_tokens_map.json") in tok.files


@pytest.mark.parametrize("form", ["json", "vocab"])
def test_empty_batch_and_empty_prompt(bpe, form):
    tok = bpe[form]
    with pytest.raises(ValueError, match="batch is empty"):
        tok.encode_batch([])
    with pytest.raises(ValueError, match="prompt 1 encodes to no tokens"):
        tok.encode_batch(["hello", ""])
    with pytest.raises(TypeError, match="must be a str"):
        tok.encode(b"bytes")


def test_no_tokenizer_is_a_tokenizer_error(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer found"):
        Tokenizer.from_dir(tmp_path)


# ---- SentencePiece ---------------------------------------------------------------

SP_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world and hello again",
    "a small model for a small test",
    "pack my box with five dozen liquor jugs",
    "sphinx of black quartz judge my vow",
] * 20


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory):
    spm = pytest.importorskip("sentencepiece")
    d = tmp_path_factory.mktemp("sp")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SP_CORPUS), model_prefix=str(d / "spm"), vocab_size=60,
        model_type="bpe", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    (d / "spm.vocab").unlink()
    return d


def test_sentencepiece_round_trip(sp_dir):
    tok = Tokenizer.from_dir(sp_dir)
    assert tok.kind == "sentencepiece"
    assert [f.name for f in tok.files] == ["spm.model"]
    assert 30 <= tok.vocab_size <= 60
    for text in ["hello world", "the lazy dog jumps over the quick brown fox",
                 "judge my box of five small jugs"]:
        ids = tok.encode(text)
        assert ids and all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text


def test_sentencepiece_specials_and_batch(sp_dir):
    tok = Tokenizer.from_dir(sp_dir)
    eos = tok.eos_token_id
    assert eos is not None and tok.token_to_id("</s>") == eos
    assert tok.pad_token_id == eos  # the trained model has no pad piece
    ids = tok.encode("hello world") + [eos]
    assert tok.decode(ids, skip_special_tokens=True) == "hello world"
    batch, mask = tok.encode_batch(["hello world and hello again", "fox"])
    n = len(tok.encode("fox"))
    assert batch[1, -n:].tolist() == tok.encode("fox")
    assert batch[1, :-n].tolist() == [eos] * (batch.shape[1] - n)
    assert mask[1].tolist() == [0] * (batch.shape[1] - n) + [1] * n
    assert mask[0].all()
    with pytest.raises(ValueError, match="batch is empty"):
        tok.encode_batch([])
    with pytest.raises(ValueError, match="encodes to no tokens"):
        tok.encode_batch([""])


@pytest.mark.parametrize("form", ["json", "vocab"])
def test_bos_as_tokenizer_config_says(tmp_path, bpe, form):
    """add_bos_token in tokenizer_config.json puts the BOS first (LLaMA-2 style), as
    transformers' tokenizers do; without it nothing is added."""
    write_tokenizer(tmp_path, form)
    plain = Tokenizer.from_dir(tmp_path).encode("hello world")
    write_json(tmp_path / "tokenizer_config.json", {"bos_token": ENDOFTEXT, "add_bos_token": True})
    tok = Tokenizer.from_dir(tmp_path)
    bos = tok.token_to_id(ENDOFTEXT)
    assert tok.encode("hello world") == [bos] + plain
    ids, mask = tok.encode_batch(["hello world", "hi"])
    assert ids[0, 0] == bos and ids[1, mask[1].argmax()] == bos
    write_json(tmp_path / "tokenizer_config.json", {"bos_token": ENDOFTEXT, "add_bos_token": False})
    assert Tokenizer.from_dir(tmp_path).encode("hello world") == plain


def test_tokenizer_json_post_processor_adds_its_tokens(tmp_path):
    """A tokenizer.json whose post-processor prepends a BOS (LLaMA-3 style) gets it,
    exactly as `transformers` encodes by default."""
    from tokenizers import processors

    from layouts import bpe_tokenizer

    tok = bpe_tokenizer()
    bos = tok.token_to_id(ENDOFTEXT)
    plain = tok.encode("hello world").ids
    tok.post_processor = processors.TemplateProcessing(single=f"{ENDOFTEXT} $A",
                                                       special_tokens=[(ENDOFTEXT, bos)])
    tok.save(str(tmp_path / "tokenizer.json"))
    assert Tokenizer.from_dir(tmp_path).encode("hello world") == [bos] + plain
