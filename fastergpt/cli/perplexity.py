"""`fastergpt perplexity FILE`: perplexity of a text file under any supported model
and weight format (the fused engine's logits; method in fastergpt/evaluation.py)."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv=None) -> int:
    from fastergpt.quantize import format_names

    p = argparse.ArgumentParser(prog="fastergpt perplexity", description=__doc__)
    p.add_argument("file", help="a UTF-8 text file")
    p.add_argument("--model_name_or_path", default="default",
                   help="checkpoint dir (HF or PaddleNLP layout), exported dir, or 'default'")
    p.add_argument("--dtype", choices=format_names(),
                   help="weight format (default float32; an exported dir keeps its own)")
    p.add_argument("--block_size", type=int, help="window length (default: the model's n_positions)")
    p.add_argument("--stride", type=int, help="new tokens scored per window (default block_size/2)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)

    from fastergpt.engine import Engine
    from fastergpt.evaluation import negative_log_likelihood
    from fastergpt.pretrained import resolve_model_path
    from fastergpt.tokenizer import Tokenizer

    try:
        path = resolve_model_path(args.model_name_or_path)
        engine = Engine.from_pretrained(path, dtype=args.dtype)
        tok = Tokenizer.from_dir(path)
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
        ids = tok.encode(text)
        if tok.eos_token_id is not None:  # the document starts after an end-of-text token
            ids = [tok.eos_token_id] + ids
        nll, count = negative_log_likelihood(engine, np.asarray(ids), args.block_size, args.stride,
                                             num_threads=args.threads)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.file}: {count} tokens scored, {nll:.4f} nats/token, perplexity {np.exp(nll):.2f} "
          f"({engine.weight_format} weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
