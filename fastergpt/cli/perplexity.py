"""`fastergpt perplexity FILE`: perplexity of a text file under any supported model
and weight format (the fused engine's logits; method in fastergpt/evaluation.py).

`--compare float32,float16,int8,int4-rtn,int4-gptq` scores the same tokens under each
and prints a table (the entries: fastergpt/format_entries.py; int4-rtn and int4-gptq
quantize into a temporary directory, in groups of --group_size). With float32 in the
list, each row also gives its perplexity relative to float32's and how often its most
likely next token is float32's (teacher-forced)."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def document_ids(tok, file) -> np.ndarray:
    """The file's tokens, after an end-of-text token where the tokenizer has one (the
    document starts there); at least 2, or an error that says the text is too short."""
    with open(file, encoding="utf-8") as f:
        ids = tok.encode(f.read())
    if tok.eos_token_id is not None:
        ids = [tok.eos_token_id] + ids
    if len(ids) < 2:
        raise ValueError(f"{file}: the text gives {len(ids)} token(s); a perplexity needs at "
                         "least 2 (one to predict the next from)")
    return np.asarray(ids)


def main(argv=None) -> int:
    from fastergpt.cli.format_args import add_format_arguments
    from fastergpt.settings import choice_names
    from fastergpt.format_entries import entry_names

    p = argparse.ArgumentParser(prog="fastergpt perplexity", description=__doc__)
    p.add_argument("file", help="a UTF-8 text file")
    p.add_argument("--model_name_or_path", default="default",
                   help="checkpoint dir (HF or PaddleNLP layout), exported dir, or 'default'")
    add_format_arguments(p)
    p.add_argument("--block_size", type=int, help="window length (default: the model's n_positions)")
    p.add_argument("--stride", type=int, help="new tokens scored per window (default block_size/2)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--matmul_precision", default="float32", choices=choice_names("matmul_precision"),
                   help="what float32/float16 weights multiply in (bfloat16: CPUs with AVX-512 "
                        "BF16); with --compare, every entry")
    p.add_argument("--compare", help="comma-separated formats to score the same tokens under: "
                   f"{', '.join(entry_names())}; FORMAT@VOCAB stores the token "
                   "table and LM head in VOCAB (e.g. int4-gptq@int4)")
    p.add_argument("--group_size", type=int, default=128, help="--compare's int4-*: columns per group")
    p.add_argument("--nsamples", type=int, default=128, help="--compare's int4-gptq: calibration windows")
    p.add_argument("--seqlen", type=int, default=512, help="--compare's int4-gptq: tokens per window")
    args = p.parse_args(argv)
    if args.compare is not None:
        if args.dtype is not None or args.vocab_dtype is not None:
            print("error: --dtype / --vocab_dtype and --compare exclude each other (name the "
                  "vocabulary's format in an entry: FORMAT@VOCAB)", file=sys.stderr)
            return 2
        return compare(args)

    from fastergpt.engine import Engine
    from fastergpt.evaluation import negative_log_likelihood
    from fastergpt.pretrained import resolve_model_path, vocabulary_dtype
    from fastergpt.tokenizer import Tokenizer

    try:
        path = resolve_model_path(args.model_name_or_path)
        engine = Engine.from_pretrained(path, dtype=args.dtype, vocab_dtype=args.vocab_dtype)
        ids = document_ids(Tokenizer.from_dir(path), args.file)
        nll, count = negative_log_likelihood(engine, ids, args.block_size, args.stride,
                                             num_threads=args.threads,
                                             matmul_precision=args.matmul_precision)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.file}: {count} tokens scored, {nll:.4f} nats/token, perplexity {np.exp(nll):.2f} "
          f"({engine.weight_format} weights, token table and LM head "
          f"{vocabulary_dtype(engine.config, engine.weight_format)}"
          f"{'' if args.matmul_precision == 'float32' else '; matmul_precision ' + args.matmul_precision})")
    return 0


def compare(args) -> int:
    import tempfile

    from fastergpt.evaluation import token_scores
    from fastergpt.format_entries import entry_names, is_known, is_quantized, load_entry
    from fastergpt.pretrained import resolve_model_path
    from fastergpt.tokenizer import Tokenizer

    names = [n.strip() for n in args.compare.split(",") if n.strip()]
    bad = [n for n in names if not is_known(n)]
    if not names or bad:
        print(f"error: --compare: unknown format(s) {bad or names}; expected some of "
              f"{', '.join(entry_names())}, each optionally @ a vocabulary "
              "format", file=sys.stderr)
        return 2
    try:
        path = resolve_model_path(args.model_name_or_path)
        ids = document_ids(Tokenizer.from_dir(path), args.file)
        rows = []
        with tempfile.TemporaryDirectory(prefix="fastergpt-compare-") as tmp:
            for name in names:
                engine = load_entry(name, path, tmp, args.group_size, args.nsamples, args.seqlen,
                                    progress=lambda line: print("  " + line, file=sys.stderr))
                nlls, top = token_scores(engine, ids, args.block_size, args.stride,
                                         num_threads=args.threads,
                                         matmul_precision=args.matmul_precision)
                nll = float(nlls.sum()) / nlls.size
                rows.append((name, nll, nlls.size, top))
                print(f"  {name}: {np.exp(nll):.3f}", file=sys.stderr, flush=True)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    by_name = {r[0]: r for r in rows}
    reference = by_name.get("float32", by_name.get("fp32"))
    base = reference[1] if reference is not None else None
    quantized = any(is_quantized(n) for n in names)
    print(f"{args.file}: {rows[0][2]} tokens scored ({args.model_name_or_path}"
          f"{f', int4 groups of {args.group_size}' if quantized else ''})")
    # With float32 in the list: each format's perplexity relative to it, and the share of
    # scored positions where the format's most likely next token is float32's
    # (teacher-forced on the text, so one disagreement does not derail the rest).
    extra_head = " vs float32 | next token as float32 |" if base is not None else ""
    print(f"| format | nats/token | perplexity |{extra_head}")
    print(f"|---|---:|---:|{'---:|---:|' if base is not None else ''}")
    for name, nll, _, top in rows:
        extra = (f" {np.exp(nll - base):.4f}x | {float(np.mean(top == reference[3])):.3f} |"
                 if base is not None else "")
        print(f"| {name} | {nll:.4f} | {np.exp(nll):.3f} |{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
