"""Tokenizers for the models fastergpt runs, from local files only.

- GPT-2 byte-level BPE: `tokenizer.json`, or `vocab.json` + `merges.txt`, through the
  `tokenizers` library;
- SentencePiece: a `*.model` file, through `sentencepiece`.
Special tokens (such as `<|endoftext|>`) are found by name; batches are LEFT-padded
with an attention mask, which is what the fused operator expects.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from fastergpt.jsonfile import read_json_object

ENDOFTEXT = "<|endoftext|>"


def left_pad(rows, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists -> (input_ids int64 [B, L], attention_mask int64 [B, L]), each row
    right-aligned (left-padded with pad_id), as the engine takes a batch."""
    L = max(len(r) for r in rows)
    ids = np.full((len(rows), L), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), L), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, L - len(r):] = r
        mask[i, L - len(r):] = 1
    return ids, mask


def check_unicode(text: str, what: str) -> None:
    """Text that has no UTF-8 form (a lone surrogate, as from a mis-decoded file or a JSON
    escape) is refused by name: the tokenizer and the engine take UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what}: not valid Unicode at character {e.start} ({e.reason})") from None


class TokenizerError(ValueError):
    """Tokenizer files are missing or unreadable."""


class Tokenizer:
    """A uniform face over byte-level BPE and SentencePiece tokenizers."""

    def __init__(self, backend, kind: str, files: list[Path], pad_token: Optional[str] = None,
                 eos_token: Optional[str] = None, bos_token: Optional[str] = None,
                 add_bos: bool = False, template: bool = False):
        self._backend = backend
        self.kind = kind  # "bpe" or "sentencepiece"
        self.files = files  # what an exported directory must carry
        # As transformers' tokenizers do: tokenizer.json's post-processor adds its
        # special tokens (LLaMA-3's BOS), and tokenizer_config.json's add_bos_token
        # puts the BOS first for the others (LLaMA-2's SentencePiece).
        self._template = template
        self.bos_token_id = self._id_or_none(bos_token)
        self.add_bos = bool(add_bos) and self.bos_token_id is not None
        self.eos_token_id = self._id_or_none(eos_token)
        self.pad_token_id = self._id_or_none(pad_token)
        if self.pad_token_id is None:
            self.pad_token_id = self.eos_token_id
        self._specials = None  # special token ids, found when first needed
        self._vocabulary_bytes = None

    # ---- construction ----
    @classmethod
    def from_dir(cls, path) -> "Tokenizer":
        path = Path(os.fspath(path))
        if not path.is_dir():
            raise TokenizerError(f"tokenizer directory {str(path)!r} does not exist")
        special = _special_tokens(path)
        if (path / "tokenizer.json").is_file():
            from tokenizers import Tokenizer as HFTokenizer

            try:
                backend = HFTokenizer.from_file(str(path / "tokenizer.json"))
            except Exception as e:
                raise TokenizerError(f"{path / 'tokenizer.json'} is unreadable: {e}") from None
            files = [path / "tokenizer.json"]
            files += [path / f for f in ("vocab.json", "merges.txt", "special_tokens_map.json",
                                         "tokenizer_config.json") if (path / f).is_file()]
            return cls(backend, "bpe", files, special.get("pad"), special.get("eos", ENDOFTEXT),
                       special.get("bos"), special.get("add_bos", False), template=True)
        if (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
            backend = _bpe_from_vocab_merges(path / "vocab.json", path / "merges.txt")
            files = [path / "vocab.json", path / "merges.txt"]
            files += [path / f for f in ("special_tokens_map.json", "tokenizer_config.json")
                      if (path / f).is_file()]
            return cls(backend, "bpe", files, special.get("pad"), special.get("eos", ENDOFTEXT),
                       special.get("bos"), special.get("add_bos", False))
        models = sorted(path.glob("*.model"))
        if models:
            try:
                import sentencepiece as spm
            except ImportError:
                raise TokenizerError(f"{models[0]} needs the sentencepiece package "
                                     "(pip install sentencepiece)") from None
            sp = spm.SentencePieceProcessor()
            try:
                sp.Load(str(models[0]))
            except Exception as e:
                raise TokenizerError(f"{models[0]} is unreadable: {e}") from None
            eos = sp.IdToPiece(sp.eos_id()) if sp.eos_id() >= 0 else None
            pad = sp.IdToPiece(sp.pad_id()) if sp.pad_id() >= 0 else None
            bos = sp.IdToPiece(sp.bos_id()) if sp.bos_id() >= 0 else None
            files = [models[0]] + [path / f for f in ("special_tokens_map.json", "tokenizer_config.json")
                                   if (path / f).is_file()]
            return cls(sp, "sentencepiece", files, special.get("pad", pad),
                       special.get("eos", eos), special.get("bos", bos), special.get("add_bos", False))
        raise TokenizerError(f"{path}: no tokenizer found (expected tokenizer.json, "
                             "vocab.json + merges.txt, or a SentencePiece *.model)")

    # ---- vocabulary ----
    @property
    def vocab_size(self) -> int:
        if self.kind == "bpe":
            return self._backend.get_vocab_size(with_added_tokens=True)
        return self._backend.GetPieceSize()

    def token_to_id(self, token: str) -> Optional[int]:
        if self.kind == "bpe":
            return self._backend.token_to_id(token)
        i = self._backend.PieceToId(token)
        return None if i == self._backend.unk_id() and token != self._backend.IdToPiece(i) else i

    def _id_or_none(self, token: Optional[str]) -> Optional[int]:
        return None if token is None else self.token_to_id(token)

    def vocabulary_bytes(self) -> tuple:
        """(bytes uint8 [*], offsets int64 [V + 1]): the bytes each token spells in the
        decoded text (token t: bytes[offsets[t]:offsets[t + 1]]; special tokens spell
        nothing, as decoding skips them). The engine matches stop strings on these
        (csrc/core/stop_conditions.h). Computed once per tokenizer."""
        if getattr(self, "_vocabulary_bytes", None) is None:
            tokens = [self._token_bytes(i) for i in range(self.vocab_size)]
            offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(t) for t in tokens])
            data = np.frombuffer(b"".join(tokens) or b"\0", dtype=np.uint8).copy()
            self._vocabulary_bytes = (data, offsets)
        return self._vocabulary_bytes

    def _token_bytes(self, i: int) -> bytes:
        if self.kind == "sentencepiece":
            sp = self._backend
            if sp.IsControl(i):
                return b""
            piece = sp.IdToPiece(i)
            if sp.IsByte(i):  # "<0xE2>": one byte of a character outside the pieces
                return bytes([int(piece[3:5], 16)])
            return piece.replace("\u2581", " ").encode("utf-8")
        if self._specials is None:
            self._specials = {i for i, t in self._backend.get_added_tokens_decoder().items()
                              if t.special}
            self._decoder = _decoder_kind(self._backend)
        if i in self._specials:
            return b""
        token = self._backend.id_to_token(i)
        if token is None:
            return b""
        if self._decoder == "bytelevel":
            table = _unicode_to_byte()
            if all(c in table for c in token):
                return bytes(table[c] for c in token)
            return token.encode("utf-8")  # an added token, spelled as itself
        if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
            return bytes([int(token[3:5], 16)])  # byte fallback
        return token.replace("\u2581", " ").encode("utf-8")

    # ---- encoding ----
    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        check_unicode(text, "text")
        if self.kind == "bpe":
            ids = self._backend.encode(text, add_special_tokens=self._template).ids
        else:
            ids = list(self._backend.EncodeAsIds(text))
        if self.add_bos and (not ids or ids[0] != self.bos_token_id):
            ids = [self.bos_token_id] + ids
        return ids

    def encode_batch(self, texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids int64 [B, L], attention_mask int64 [B, L]), left-padded."""
        rows = [self.encode(t) for t in texts]
        if not rows:
            raise ValueError("prompts: the batch is empty")
        for i, r in enumerate(rows):
            if not r:
                raise ValueError(f"prompts: prompt {i} encodes to no tokens")
        return left_pad(rows, self.pad_token_id if self.pad_token_id is not None else 0)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        # (An id the vocabulary lacks but an unsigned 32-bit id can hold is the backend's
        # to skip, as a model whose table is padded past its tokenizer can produce one.)
        bad = next((i for i in ids if not 0 <= i < 2**32), None)
        if bad is not None:
            raise ValueError(f"decode: {bad} is not a token id")
        if self.kind == "bpe":
            return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        if skip_special_tokens:
            ids = [i for i in ids if not self._backend.IsControl(i)]
        return self._backend.DecodeIds(ids)


def _decoder_kind(backend) -> str:
    """How a `tokenizers` backend turns tokens into text: "bytelevel" (GPT-2's byte
    alphabet) or "metaspace" (U+2581 for a space, <0xNN> byte fallback, as LLaMA's
    tokenizer.json). Others are refused: the engine could not match stop strings."""
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    parts = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    kinds = {p.get("type") for p in parts if isinstance(p, dict)}
    if "ByteLevel" in kinds:
        return "bytelevel"
    if kinds & {"Metaspace", "Replace", "ByteFallback"}:
        return "metaspace"
    raise TokenizerError(f"stop strings: this tokenizer's decoder ({sorted(kinds)}) is not one "
                         "fastergpt can spell tokens with (byte-level BPE or SentencePiece)")


@lru_cache(maxsize=None)
def byte_alphabet() -> tuple:
    """GPT-2's byte-level alphabet: the printable character that stands for byte b
    (0..255) in a token's spelling, at index b. Printable bytes stand for themselves;
    the others, in order, for U+0100 onwards."""
    out, extra = [], 0
    for b in range(256):
        if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return tuple(out)


@lru_cache(maxsize=None)
def _unicode_to_byte() -> dict:
    """`byte_alphabet` reversed: a token's character -> the byte it stands for."""
    return {c: b for b, c in enumerate(byte_alphabet())}


def _special_tokens(path: Path) -> dict:
    """eos/pad/bos token names and add_bos_token from special_tokens_map.json or
    tokenizer_config.json, if given."""
    out = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = path / name
        if not f.is_file():
            continue
        data = read_json_object(f, TokenizerError)
        if isinstance(data.get("add_bos_token"), bool) and "add_bos" not in out:
            out["add_bos"] = data["add_bos_token"]
        for key, ours in (("eos_token", "eos"), ("pad_token", "pad"), ("bos_token", "bos")):
            v = data.get(key)
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str) and ours not in out:
                out[ours] = v
    return out


def _bpe_from_vocab_merges(vocab: Path, merges: Path):
    from tokenizers import AddedToken, Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

    try:
        backend = HFTokenizer(models.BPE.from_file(str(vocab), str(merges)))
        vocab_map = json.loads(vocab.read_text(encoding="utf-8"))
    except Exception as e:
        raise TokenizerError(f"{vocab} / {merges} are unreadable: {e}") from None
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # GPT-2 keeps its special tokens in vocab.json; mark them so they match as a whole.
    specials = [t for t in vocab_map if t.startswith("<|") and t.endswith("|>")]
    backend.add_special_tokens([AddedToken(t, special=True) for t in specials])
    return backend
