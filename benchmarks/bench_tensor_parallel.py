"""Tensor-parallel decoding (fastergpt.tensor_parallel) against one process, GPT-2 small
shape (random weights), batch 1 and 4, greedy: 2 processes x 1 thread (each a shard of half
the heads and MLP columns, gloo all-reduce over 127.0.0.1) vs 1 process x 1 thread and
1 process x 2 threads. Prints tokens/s, the share of the sharded time spent in the
all-reduce, and whether the tokens are equal; writes JSON.

    python benchmarks/bench_tensor_parallel.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--work-dir", default=os.path.join(HERE, "results", "work"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_tensor_parallel.json"))
    a = ap.parse_args()

    import numpy as np

    from engines.prepare import prepare
    from fastergpt import Engine
    from fastergpt.machine import cpu_model
    from fastergpt.tensor_parallel import run_sharded
    from fastergpt.tokenizer import left_pad

    work = os.path.join(a.work_dir, f"small_{a.layers}l_50257v")
    prepare(work, a.layers, 768, 12, 50257, {"fastergpt-numpy"}, log=lambda s: print("  " + s))
    model = os.path.join(work, "hf")
    print(f"tensor parallel, GPT-2 small shape ({a.layers} layers, random weights), {a.dtype}, prompt 32, "
          f"{a.new_tokens} new tokens, greedy; CPU {cpu_model()}", flush=True)
    engine = Engine.from_pretrained(model, dtype=a.dtype)
    rows = []
    for batch in a.batch:
        rng = np.random.default_rng(batch)
        prompts = [rng.integers(0, 50257, 32).tolist() for _ in range(batch)]
        ids, mask = left_pad(prompts)
        settings = dict(max_new_tokens=a.new_tokens, eos_token_id=-1)
        result = {"batch": batch}
        for threads in (1, 2):
            engine.generate(ids, mask, num_threads=threads, max_new_tokens=2, eos_token_id=-1)  # warm-up
            t = time.perf_counter()
            single = engine.generate(ids, mask, num_threads=threads, **settings)
            result[f"one_process_{threads}_threads_tok_s"] = batch * a.new_tokens / (time.perf_counter() - t)
        ranks = run_sharded(model, prompts, 2, a.dtype, **settings)
        seconds = max(r["seconds"] for r in ranks)
        result["two_processes_tok_s"] = batch * a.new_tokens / seconds
        result["all_reduce_share"] = max(r["all_reduce_seconds"] for r in ranks) / seconds
        result["equal_tokens"] = all(r["ids"] == single["ids"].tolist() for r in ranks)
        rows.append(result)
        print(f"  batch {batch}: 1 process x 1 thread {result['one_process_1_threads_tok_s']:.1f} tok/s, "
              f"1 x 2 threads {result['one_process_2_threads_tok_s']:.1f}, 2 processes x 1 thread "
              f"{result['two_processes_tok_s']:.1f} ({result['two_processes_tok_s'] / result['one_process_1_threads_tok_s']:.2f}x "
              f"1 x 1; {100 * result['all_reduce_share']:.0f}% of it in the all-reduce); equal tokens: "
              f"{result['equal_tokens']}", flush=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"args": vars(a), "cpu": cpu_model(), "results": rows}, f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
