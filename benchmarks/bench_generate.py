"""Generation speed: fastergpt (Paddle op and NumPy module) against the reference
Paddle dygraph `generate()` with a KV cache, on the same random weights.

Every engine does the same work: the end token is disabled, so each row makes
exactly --new-tokens tokens. Prints tokens/s per engine and the ratio to the
reference, measured in this run; writes the figures as JSON.

    python benchmarks/bench_generate.py                  # GPT-2 small shape, batch 1 and 8
    python benchmarks/bench_generate.py --layers 2 --quick   # a fast smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402

from fastergpt import Engine, FasterGPT, GPTConfig  # noqa: E402
from fastergpt.reference import GPTLMHeadModel, generate  # noqa: E402


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: builds/loads, grows the workspace
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="engine threads (0 = all cores)")
    ap.add_argument("--quick", action="store_true", help="fewer tokens, one repeat")
    ap.add_argument("--json", default="benchmarks/results/bench_generate.json")
    args = ap.parse_args()
    if args.quick:
        args.new_tokens, args.repeats = min(args.new_tokens, 16), 1

    cfg = GPTConfig(vocab_size=args.vocab, n_positions=1024, n_embd=args.hidden,
                    n_layer=args.layers, n_head=args.heads)
    paddle.seed(0)
    reference = GPTLMHeadModel(cfg)
    reference.eval()
    state = reference.state_dict_numpy()
    fused = FasterGPT(cfg, state)
    engine = Engine(cfg, state)
    rng = np.random.RandomState(0)

    print(f"model: {args.layers} layers, hidden {args.hidden}, vocab {args.vocab}; prompt "
          f"{args.prompt}, {args.new_tokens} new tokens, greedy; threads "
          f"{args.threads or os.cpu_count()}; paddle {paddle.__version__}")
    results = []
    for batch in args.batch:
        ids = rng.randint(0, args.vocab, size=(batch, args.prompt)).astype("int64")
        kw = dict(max_new_tokens=args.new_tokens, eos_token_id=None)
        engines = {
            "fastergpt (Paddle op)": lambda: fused.generate(ids, num_threads=args.threads, **kw),
            "fastergpt (NumPy module)": lambda: engine.generate(ids, num_threads=args.threads, **kw),
            "reference Paddle generate()": lambda: generate(reference, ids, **kw),
        }
        row = {"batch": batch}
        for name, fn in engines.items():
            repeats = 1 if name.startswith("reference") else args.repeats
            seconds = timed(fn, repeats)
            row[name] = batch * args.new_tokens / seconds
        base = row["reference Paddle generate()"]
        print(f"\nbatch {batch}:")
        for name in engines:
            print(f"  {name:30s} {row[name]:8.1f} tokens/s   {row[name] / base:5.2f}x reference")
        results.append(row)
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
