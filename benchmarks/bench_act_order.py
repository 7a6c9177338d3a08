"""What act-order costs a whole decoding call: int4 weights with and without column orders
(csrc/core/matrix.h, "<matrix>.columns"), same engine, same weights, alternated round by
round in one process (this host's speed drifts more between runs than the difference).

The model is random, GPT-2-small-shaped by default; the act-order engine takes the plain
engine's packed int4 weights with a random permutation as each layer matrix's order, so the
two stream the same bytes and differ only in the reordered read of the activations. Prints
tokens/s (median and best) and the per-round time ratio, with the CPU model.

    python benchmarks/bench_act_order.py
    python benchmarks/bench_act_order.py --layers 2 --rounds 2     # smoke run
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

from alternating import alternate, report

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    from fastergpt import Engine
    from fastergpt.config import GPTConfig
    from fastergpt.machine import cpu_model
    from fastergpt.models import family
    from fastergpt.packing import weight_spec

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()

    config = GPTConfig(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=a.layers, n_head=12)
    rng = np.random.default_rng(0)
    state = {k: (rng.standard_normal(s) * 0.02).astype(np.float32)
             for k, s in family("gpt2").expected_shapes(config).items()}
    plain = Engine(config, state, "int4")
    ordered_config = dataclasses.replace(config, act_order=True)
    have = dict(plain._packed)
    packed = [(e.name, rng.permutation(e.shape[0]).astype(np.int32) if e.name.endswith(".columns")
               else have[e.name]) for e in weight_spec(ordered_config, "int4")]
    ordered = Engine(ordered_config, dtype="int4", packed=packed)

    ids = rng.integers(0, config.vocab_size, (1, a.prompt))
    kw = dict(max_new_tokens=a.new_tokens, min_length=a.new_tokens, eos_token_id=-1,
              decode_strategy="greedy_search", num_threads=a.threads)
    engines = {"plain": plain, "act-order": ordered}
    for e in engines.values():
        e.generate(ids, **kw)  # warm-up
    times = alternate(engines, lambda e: e.generate(ids, **kw), a.rounds)
    print(f"int4, GPT-2-small shape ({a.layers} layers), prompt {a.prompt}, {a.new_tokens} new "
          f"tokens, batch 1, {a.threads} threads, {a.rounds} alternating rounds; CPU {cpu_model()}")
    report(times, a.new_tokens, "act-order", "plain")


if __name__ == "__main__":
    main()
