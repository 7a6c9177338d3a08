"""`fastergpt quantize`: a HuggingFace checkpoint -> a 4-bit GPTQ checkpoint (the layout
AutoGPTQ and transformers read), by GPTQ on calibration text or round-to-nearest.
fastergpt loads the result like any checkpoint directory (fastergpt/gptq.py, gptq_format.py)."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from fastergpt.gptq import (DEFAULT_DAMP, DEFAULT_NSAMPLES, DEFAULT_SEQLEN, METHODS)
    from fastergpt.int4 import BITS, DEFAULT_GROUP_SIZE

    p = argparse.ArgumentParser(prog="fastergpt quantize", description=__doc__)
    p.add_argument("--model_name_or_path", default="default",
                   help="HF checkpoint directory (float weights), or 'default'")
    p.add_argument("--output", required=True, help="directory to write the quantized checkpoint to")
    p.add_argument("--method", default="gptq", choices=METHODS,
                   help="gptq (calibrated, default) or rtn (round-to-nearest, no calibration)")
    p.add_argument("--bits", type=int, default=BITS, help=f"bits per weight (only {BITS})")
    p.add_argument("--group_size", type=int, default=DEFAULT_GROUP_SIZE,
                   help="input columns per scale: a power of two >= 8, or -1 for one group "
                        f"per row (default {DEFAULT_GROUP_SIZE})")
    p.add_argument("--sym", action="store_true", help="symmetric grid (zero point 8)")
    p.add_argument("--act_order", action="store_true",
                   help="gptq: visit columns by decreasing Hessian diagonal (desc_act); int4 "
                        "keeps each matrix's columns sorted by group with their order")
    p.add_argument("--calibration", metavar="FILE",
                   help="gptq: a UTF-8 text file to calibrate on (default: the default model's "
                        "training corpus, built by tools/build_corpus.py; never its held-out split)")
    p.add_argument("--nsamples", type=int, default=DEFAULT_NSAMPLES,
                   help=f"gptq: calibration windows (default {DEFAULT_NSAMPLES})")
    p.add_argument("--seqlen", type=int, default=DEFAULT_SEQLEN,
                   help=f"gptq: tokens per window (default {DEFAULT_SEQLEN}; at most the "
                        "model's positions)")
    p.add_argument("--damp", type=float, default=DEFAULT_DAMP,
                   help=f"gptq: damping, a fraction of the mean Hessian diagonal (default {DEFAULT_DAMP})")
    clip = p.add_mutually_exclusive_group()
    clip.add_argument("--clip_search", action="store_true", default=None,
                      help="search each group's range for the clipping that rounds it with "
                           "the least error (the default for gptq)")
    clip.add_argument("--no_clip_search", dest="clip_search", action="store_false",
                      help="keep each group's full range (the default for rtn)")
    p.set_defaults(clip_search=None)  # neither flag: the method's own default
    p.add_argument("--lm_head", action="store_true",
                   help="quantize the LM head too, last (gptq: on its inputs from the quantized "
                        "layers); a tied head becomes a module of its own, the token table "
                        "stays float. --dtype int4 then runs it in 4 bits")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier quantized checkpoint in --output")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def arg_error(args):
    """The first bad value, named by its option, checked before any model is loaded; None
    when all are good."""
    from pathlib import Path

    from fastergpt.gptq import check_damp, check_group_size
    from fastergpt.int4 import BITS

    if args.bits != BITS:
        return f"--bits {args.bits} is not supported (fastergpt quantizes to {BITS} bits)"
    try:
        check_group_size(args.group_size, "--group_size")
        check_damp(args.damp, "--damp")
    except ValueError as e:
        return str(e)
    for name in ("nsamples", "seqlen"):
        if getattr(args, name) < 1:
            return f"--{name} must be >= 1, got {getattr(args, name)}"
    if args.act_order and args.method != "gptq":
        return "--act_order needs --method gptq"
    if args.calibration is not None:
        if args.method != "gptq":
            return "--calibration is only read by --method gptq"
        if not Path(args.calibration).is_file():
            return f"--calibration {args.calibration}: no such file"
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        return f"--output {args.output} exists and is not a directory"
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        return (f"--output {args.output} is not empty; pass --overwrite to replace an earlier "
                "quantized checkpoint there")
    return None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    error = arg_error(args)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from fastergpt.gptq import quantize_model
    from fastergpt.pretrained import resolve_model_path

    try:
        model = resolve_model_path(args.model_name_or_path)
    except ValueError as e:
        print(f"error: --model_name_or_path: {e}", file=sys.stderr)
        return 2
    try:
        quantize_model(model, args.output, method=args.method, bits=args.bits,
                       group_size=args.group_size, sym=args.sym, act_order=args.act_order,
                       calibration=args.calibration, nsamples=args.nsamples, seqlen=args.seqlen,
                       damp=args.damp, clip_search=args.clip_search, lm_head=args.lm_head,
                       overwrite=args.overwrite,
                       progress=(lambda s: None) if args.quiet else None)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
