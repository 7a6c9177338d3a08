"""Runs one engine in this process and prints its figures as one JSON line:
python engines/run_engine.py ENGINE DTYPE WORK_DIR --batch B --prompt P --new-tokens N
[--top-k K] [--num-beams N] [--threads T] [--repeats R]

tokens_per_s: generated tokens / wall time of a whole generate() call (best of R after a
warm-up); ttft_ms: a 1-token generate() of the same prompt (prompt pass + first token);
peak_rss_mb: this process's peak resident memory (model load included), VmHWM from
/proc (getrusage's ru_maxrss would carry the parent's peak across exec)."""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from engines.adapters import ENGINES  # noqa: E402


def peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("engine", choices=sorted(ENGINES))
    ap.add_argument("dtype")
    ap.add_argument("work_dir")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams")
    ap.add_argument("--kv-cache-dtype", default="float32", choices=["float32", "float16"],
                    help="fastergpt's KV cache (the other engines keep their own)")
    ap.add_argument("--matmul-precision", default="float32", choices=["float32", "bfloat16"],
                    help="what fastergpt's float weights multiply in (the others keep their own)")
    a = ap.parse_args()

    t0 = time.perf_counter()
    engine = ENGINES[a.engine](a.work_dir, a.dtype, a.threads)
    if a.engine.startswith("fastergpt"):
        engine.settings = dict(kv_cache_dtype=a.kv_cache_dtype, matmul_precision=a.matmul_precision)
    load_s = time.perf_counter() - t0
    ids = np.random.RandomState(0).randint(0, a.vocab, size=(a.batch, a.prompt)).astype(np.int64)

    out = engine.generate(ids, 4, a.top_k, a.num_beams)  # warm-up
    ttft = []
    for _ in range(3):
        t = time.perf_counter()
        engine.generate(ids, 1, a.top_k, a.num_beams)
        ttft.append(time.perf_counter() - t)
    best = float("inf")
    for _ in range(a.repeats):
        t = time.perf_counter()
        out = engine.generate(ids, a.new_tokens, a.top_k, a.num_beams)
        best = min(best, time.perf_counter() - t)
    assert out.shape == (a.batch, a.new_tokens), f"{a.engine} returned {out.shape}"
    print(json.dumps({
        "engine": engine.name, "key": a.engine, "dtype": a.dtype, "batch": a.batch,
        "top_k": a.top_k, "num_beams": a.num_beams, "tokens_per_s": a.batch * a.new_tokens / best,
        "ttft_ms": min(ttft) * 1e3, "peak_rss_mb": peak_rss_mb(),
        "load_s": load_s, "first_ids": out[0, :8].tolist(),
    }))


if __name__ == "__main__":
    main()
