"""Build the training corpus of fastergpt's default model, offline.

The corpus
----------
**The English documentation strings of the CPython standard library, plus
the help() topics the standard library ships (``pydoc_data.topics``), as
extracted from the running interpreter.** Nothing is downloaded: every
machine with the same CPython release (the shipped model was built with
CPython 3.11.7 on Linux x86-64) produces the same corpus byte for byte.

How it is built (:func:`collect_documents`):

1. Module names: ``sys.stdlib_module_names`` (the interpreter's own list of
   standard-library top-level modules), sorted. Private modules (leading
   underscore) and modules in :data:`SKIP_TOP_LEVEL` (ones with side effects
   on import such as ``antigravity``/``this``, GUI toolkits, test suites, the
   IDLE editor, lib2to3 which may write grammar caches, platform-only modules)
   are skipped. Packages are walked recursively with
   :func:`pkgutil.iter_modules`, again skipping private submodules,
   ``__main__`` submodules and test packages (never imported).
   A module that fails to import is skipped (the set therefore depends on the
   interpreter build; this is the only platform dependence).
2. For each module (sorted by dotted name), documents are taken with
   :func:`inspect.getdoc` from: the module itself, then every public class
   and function defined in that module (``__module__`` is the module's name,
   or a private module such as ``_io`` whose objects it re-exports; sorted
   by name), then every public method / property of those
   classes defined in the class itself (sorted by name). ``getdoc`` is used
   as-is, so a member without its own docstring may contribute an inherited
   one; deduplication removes the repeats.
3. After the modules come the ``help()`` topics shipped with the standard
   library in ``pydoc_data.topics`` (the language-reference sections that
   ``help("assert")`` etc. print; sorted by topic name), one document each.
4. Each document is normalised (:func:`normalize_doc`): Unicode NFC, tabs
   expanded, lines made only of a repeated ``*=~^#-`` character (reST
   heading underlines, rules) removed, trailing whitespace removed from
   every line, runs of blank lines collapsed to one, leading/trailing
   blank lines removed. Documents
   shorter than :data:`MIN_CHARS` characters or with fewer than
   :data:`MIN_WORDS` words, or mostly non-ASCII, are dropped.
5. Exact duplicates are removed, keeping the first occurrence in the order
   above.

Split (:func:`split_documents`): a document is held out iff
``sha1(text) % 20 == 0`` (about 5%, independent of order); the rest is the
training split.

CLI::

    python tools/build_corpus.py                    # print statistics
    python tools/build_corpus.py --out corpus.json  # also write {"train": [...], "heldout": [...]}

Importing modules happens in whatever process calls :func:`collect_documents`;
callers that must stay clean (tests) should run the CLI in a subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import inspect
import io
import itertools
import json
import os
import pkgutil
import re
import string
import sys
import unicodedata
import warnings
from typing import Iterable, Iterator

MIN_CHARS = 20
MIN_WORDS = 4
HELDOUT_MODULUS = 20

# Top-level stdlib modules never imported: side effects on import (open a web
# browser, print, start a GUI, write files), test suites, or pure noise.
SKIP_TOP_LEVEL = frozenset({
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo",
    "test", "lib2to3", "pydoc_data", "ensurepip", "venv", "msilib", "winreg",
    "winsound", "msvcrt", "nt", "_winapi", "xxlimited", "xxsubtype",
    "xxlimited_35", "__main__", "__phello__", "__hello__", "sitecustomize",
    "usercustomize", "site", "distutils",
})

# Submodule name parts that are never imported.
SKIP_PARTS = frozenset({"__main__", "test", "tests", "idle_test", "_test"})

_RULE_RE = re.compile(r"^\s*([*=~^#-])\1{2,}\s*$")  # reST heading underlines, rules
_WORD_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def module_names() -> list[str]:
    """Sorted dotted names of the stdlib modules the corpus is drawn from.

    Only packages are imported here (to list their submodules); plain modules
    are imported later, in sorted order, by :func:`iter_raw_documents`.
    """
    names: list[str] = []

    def visit(name: str, is_package: bool) -> None:
        names.append(name)
        if not is_package:
            return
        mod = _import(name)
        path = getattr(mod, "__path__", None)
        if not path:
            return
        for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
            if info.name.startswith("_") or info.name in SKIP_PARTS:
                continue
            visit(f"{name}.{info.name}", info.ispkg)

    for top in sorted(sys.stdlib_module_names):
        if not top.startswith("_") and top not in SKIP_TOP_LEVEL:
            visit(top, True)
    return sorted(names)


def _import(name: str):
    """Import a module quietly; None if it fails (any exception) or tries to exit."""
    parent = name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # noqa: BLE001 - ImportError, OSError, SystemExit, ...
        return None


def normalize_doc(text: str) -> str:
    """NFC, tabs expanded, lines right-stripped, blank-line runs collapsed, ends stripped."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.expandtabs(8).rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if _RULE_RE.match(line):
            continue
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip()


def _keep(text: str) -> bool:
    if len(text) < MIN_CHARS or len(words(text)) < MIN_WORDS:
        return False
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    return ascii_chars >= 0.95 * len(text)


def _getdoc(obj) -> str | None:
    try:
        doc = inspect.getdoc(obj)
    except Exception:  # noqa: BLE001 - odd objects with broken __doc__
        return None
    return doc if isinstance(doc, str) else None


def _module_objects(mod) -> Iterator[object]:
    """The module, then its own public classes/functions, then their own methods (all sorted)."""
    yield mod
    name = mod.__name__
    try:
        members = sorted(vars(mod).items())
    except TypeError:
        return
    for attr, obj in members:
        if attr.startswith("_"):
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if not _defined_here(obj, name):
            continue
        yield obj
        if inspect.isclass(obj):
            for mname, member in sorted(vars(obj).items()):
                if mname.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if inspect.isroutine(member) or isinstance(member, property) \
                        or inspect.isdatadescriptor(member):
                    yield member


def _defined_here(obj, module_name: str) -> bool:
    """True if obj belongs to module_name: defined there, or in a private module it re-exports."""
    owner = getattr(obj, "__module__", None)
    if not isinstance(owner, str):
        return False
    return owner == module_name or (owner.startswith("_") and owner != "__main__")


def iter_raw_documents(names: Iterable[str]) -> Iterator[str]:
    for name in names:
        mod = _import(name)
        if mod is None:
            continue
        for obj in _module_objects(mod):
            doc = _getdoc(obj)
            if doc:
                yield doc


def iter_topic_documents() -> Iterator[str]:
    """The help() topics shipped in ``pydoc_data.topics`` (language reference text), sorted by key."""
    mod = _import("pydoc_data") and _import("pydoc_data.topics")
    topics = getattr(mod, "topics", None) or {}
    for key in sorted(topics):
        if isinstance(topics[key], str):
            yield topics[key]


def collect_documents() -> list[str]:
    """All corpus documents, normalised, filtered and deduplicated, in corpus order."""
    seen: set[str] = set()
    docs: list[str] = []
    raw_docs = itertools.chain(iter_raw_documents(module_names()), iter_topic_documents())
    for raw in raw_docs:
        text = normalize_doc(raw)
        if not _keep(text) or text in seen:
            continue
        seen.add(text)
        docs.append(text)
    return docs


def is_heldout(text: str) -> bool:
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_MODULUS == 0


def split_documents(docs: list[str]) -> tuple[list[str], list[str]]:
    """(train, heldout), each keeping corpus order; see the module docstring."""
    train = [d for d in docs if not is_heldout(d)]
    heldout = [d for d in docs if is_heldout(d)]
    return train, heldout


def build_corpus() -> dict[str, list[str]]:
    train, heldout = split_documents(collect_documents())
    return {"train": train, "heldout": heldout}


def words(text: str) -> list[str]:
    """Lower-cased alphabetic words of text (apostrophes inside a word kept)."""
    return [w.lower() for w in _WORD_RE.findall(text)]


def plain_words(text: str) -> list[str]:
    """Whitespace-separated words of text, punctuation stripped from both ends, lower-cased."""
    out = []
    for w in text.split():
        w = w.strip(string.punctuation).lower()
        if w:
            out.append(w)
    return out


def word_set(docs: Iterable[str]) -> set[str]:
    """Every :func:`plain_words` word of docs."""
    out: set[str] = set()
    for d in docs:
        out.update(plain_words(d))
    return out


def corpus_digest(corpus: dict[str, list[str]]) -> str:
    h = hashlib.sha256()
    for split in ("train", "heldout"):
        for d in corpus[split]:
            h.update(split.encode())
            h.update(b"\0")
            h.update(d.encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()


def stats(corpus: dict[str, list[str]]) -> dict:
    out = {"python": sys.version.split()[0], "platform": sys.platform, "sha256": corpus_digest(corpus)}
    for split in ("train", "heldout"):
        docs = corpus[split]
        out[split] = {
            "documents": len(docs),
            "characters": sum(len(d) for d in docs),
            "words": sum(len(words(d)) for d in docs),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="write the corpus as JSON {train: [...], heldout: [...]} here")
    ap.add_argument("--heldout_text", metavar="FILE",
                    help="write the held-out documents as plain text here (blank line between "
                         "documents), for `fastergpt perplexity FILE`")
    ap.add_argument("--quiet", action="store_true", help="do not print statistics")
    args = ap.parse_args(argv)
    corpus = build_corpus()
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(corpus, f, ensure_ascii=False)
    if args.heldout_text:
        with open(args.heldout_text, "w", encoding="utf-8") as f:
            f.write("\n\n".join(corpus["heldout"]))
    if not args.quiet:
        print(json.dumps(stats(corpus), indent=2))
    sys.stdout.flush()
    # Some stdlib modules leave threads or atexit hooks behind; leave promptly.
    os._exit(0)


if __name__ == "__main__":
    main()
