"""PaddleNLP's own generate() against `use_fast=True` (fastergpt.paddlenlp.enable) on the
same live PaddleNLP GPTForCausalLM of the GPT-2 small shape (random weights), in one
run: greedy, prompt 32, --new-tokens new tokens (min_length = max_length, so both make
the same number), batch 1 and 8, 2 threads. Needs paddlenlp (requirements-paddlenlp.txt,
in an environment of its own):

    $FASTERGPT_PADDLENLP_PYTHON benchmarks/bench_paddlenlp.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def best_of(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_paddlenlp.json"))
    a = ap.parse_args()

    import paddle
    from paddlenlp.transformers import GPTConfig, GPTForCausalLM

    import fastergpt.paddlenlp
    from fastergpt.machine import cpu_model

    paddle.set_num_threads(a.threads) if hasattr(paddle, "set_num_threads") else None
    paddle.seed(0)
    model = GPTForCausalLM(GPTConfig(vocab_size=50257, hidden_size=768, num_hidden_layers=a.layers,
                                     num_attention_heads=12, intermediate_size=3072,
                                     max_position_embeddings=1024, eos_token_id=50256, pad_token_id=0))
    model.eval()
    fastergpt.paddlenlp.enable(model, num_threads=a.threads)
    kw = dict(max_length=a.new_tokens, min_length=a.new_tokens, decode_strategy="greedy_search",
              eos_token_id=50256, pad_token_id=0)
    print(f"PaddleNLP GPTForCausalLM, GPT-2 small shape ({a.layers} layers), prompt {a.prompt}, "
          f"{a.new_tokens} new tokens, greedy, {a.threads} threads; CPU {cpu_model()}")
    results = []
    for batch in a.batch:
        ids = paddle.to_tensor(np.random.RandomState(batch).randint(1, 50000, size=(batch, a.prompt)))
        slow = best_of(lambda: model.generate(input_ids=ids, **kw), 1)
        fast = best_of(lambda: model.generate(input_ids=ids, use_fast=True, **kw), a.repeats)
        # Random weights give nearly flat logits, where float rounding (MKL vs the engine)
        # can decide a greedy argmax: report how many rows agree, not a pass/fail.
        a_ids = model.generate(input_ids=ids, **kw)[0].numpy()
        b_ids = model.generate(input_ids=ids, use_fast=True, **kw)[0].numpy()
        same = float(np.mean([np.array_equal(x, y) for x, y in zip(a_ids, b_ids)]))
        tokens = batch * a.new_tokens
        r = {"batch": batch, "paddlenlp_tokens_per_s": tokens / slow, "use_fast_tokens_per_s": tokens / fast,
             "speedup": slow / fast, "rows_identical": same}
        results.append(r)
        print(f"  batch {batch}: PaddleNLP generate() {r['paddlenlp_tokens_per_s']:7.1f} tok/s, "
              f"use_fast=True {r['use_fast_tokens_per_s']:7.1f} tok/s, {r['speedup']:.1f}x; "
              f"rows with identical tokens: {same:.0%}")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"args": vars(a), "cpu": cpu_model(), "results": results}, f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
