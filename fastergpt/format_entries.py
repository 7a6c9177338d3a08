"""Entries that name a way to store a checkpoint's weights, for comparing them
(`fastergpt perplexity --compare`, benchmarks/bench_quant_agreement.py).

An entry is a weight format of the engine's table (by name or alias), or int4-rtn /
int4-gptq / int4-gptq-act: the checkpoint's decoder layers quantized first by `fastergpt
quantize` (round to nearest, or GPTQ on its default calibration text, int4-gptq-act with
--act_order) and run as int4, the float
token table and LM head of such a checkpoint in int8. FORMAT@VOCAB stores the token
table and LM head in VOCAB instead (an int4 vocabulary keeps its token table in int8);
int4-rtn@int4 / int4-gptq@int4 quantize the LM head with the layers (`fastergpt quantize
--lm_head`: GPTQ for the gptq entries), where the GPTQ layout holds it (both dimensions
multiples of 8; otherwise it is rounded to nearest at load, which the progress says)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

# entry -> its quantize method and act_order
QUANTIZED = {"int4-rtn": ("rtn", False), "int4-gptq": ("gptq", False),
             "int4-gptq-act": ("gptq", True)}


def entry_names() -> list:
    """What an entry (before any @VOCAB) may be, for help texts and errors."""
    from fastergpt.quantize import format_names

    return format_names() + list(QUANTIZED)


def is_known(entry: str) -> bool:
    from fastergpt.quantize import format_names, weight_formats

    known = format_names() + [r["alias"] for r in weight_formats() if r["alias"]]
    fmt, _, vocab = entry.partition("@")
    return (fmt in QUANTIZED or fmt in known) and (not vocab or vocab in known)


def is_quantized(entry: str) -> bool:
    return entry.partition("@")[0] in QUANTIZED


def load_entry(entry: str, path, workdir, group_size: Optional[int] = None,
               nsamples: Optional[int] = None, seqlen: Optional[int] = None,
               progress: Optional[Callable[[str], None]] = None):
    """The fastergpt.Engine of the checkpoint at `path` stored as `entry`. A quantized
    entry's checkpoint is written under `workdir` (groups of `group_size`; GPTQ with
    `nsamples` windows of `seqlen` tokens; None: quantize_model's defaults), once: entries
    that differ only in @VOCAB share it."""
    from fastergpt.engine import Engine
    from fastergpt.quantize import normalize_dtype

    fmt, _, vocab = entry.partition("@")
    if fmt in QUANTIZED:
        from fastergpt.gptq import quantize_model

        vocab = normalize_dtype(vocab, "vocab_dtype") if vocab else ""
        head = vocab == "int4" and _head_fits_gptq(path)
        if vocab == "int4" and not head and progress:
            progress(f"{entry}: the LM head's dimensions are not multiples of 8 (GPTQ's "
                     "layout): it is rounded to nearest at load")
        source, dtype = Path(workdir) / (fmt + ("+lm_head" if head else "")), "int4"
        if not source.is_dir():
            given = {"group_size": group_size, "nsamples": nsamples, "seqlen": seqlen}
            method, act_order = QUANTIZED[fmt]
            quantize_model(path, source, method=method, act_order=act_order, lm_head=head,
                           progress=progress, **{k: v for k, v in given.items() if v is not None})
    else:
        source, dtype = path, normalize_dtype(fmt)
    return Engine.from_pretrained(source, dtype=dtype, vocab_dtype=vocab or None)


def _head_fits_gptq(path) -> bool:
    """Whether the checkpoint's LM head ([vocab, width]) fits the GPTQ layout."""
    from fastergpt.checkpoint import _hf_config
    from fastergpt.gptq_format import fits_layout
    from fastergpt.pretrained import resolve_model_path

    config = _hf_config(resolve_model_path(path))
    return fits_layout(config.vocab_size, config.embed_size or config.n_embd)
