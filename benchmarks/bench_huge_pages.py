"""What 2 MB pages give a whole decoding call (csrc/cpu/huge_pages.h): the same saved
engine loaded twice in one process (Engine.load, as bench_generate's NumPy module loads
it), once with FASTERGPT_HUGE_PAGES=0 (the pages the arrays were read into, as before the
engine asked) and once as the engine binds them now, alternated round by round (this
host's speed drifts more between processes than the difference).

The model is random, GPT-2-small-shaped by default. Prints, per weight format, tokens/s
(median and best), the share of each engine's weights on 2 MB pages (read from
/proc/self/pagemap and /proc/kpageflags, where this process may: as root) and the
per-round time ratio, with the CPU model.

    python benchmarks/bench_huge_pages.py
    python benchmarks/bench_huge_pages.py --dtypes int4 --layers 2 --rounds 2   # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

from alternating import alternate, report

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


RESULT = "result: "  # a child's line for the parent's JSON


def huge_share(arrays) -> str:
    """The share of the arrays' 4 KB pages that belong to a transparent huge page."""
    try:
        with open("/proc/self/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as flags:
            huge = total = 0
            for arr in arrays:
                first = arr.ctypes.data // 4096
                n = (arr.ctypes.data + arr.nbytes - 1) // 4096 - first + 1
                pagemap.seek(first * 8)
                for (entry,) in struct.iter_unpack("<Q", pagemap.read(n * 8)):
                    pfn = entry & ((1 << 55) - 1)
                    total += 1
                    if entry >> 63 and pfn:
                        flags.seek(pfn * 8)
                        huge += (struct.unpack("<Q", flags.read(8))[0] >> 22) & 1  # KPF_THP
    except OSError as e:
        return f"unknown ({e.strerror})"
    return f"{100 * huge / total:.0f}%"


def main():
    from fastergpt import Engine
    from fastergpt.config import GPTConfig
    from fastergpt.models import family
    from fastergpt.ops.loader import engine_module

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", nargs="+", default=["int4", "int8", "float16", "float32"])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "results", "bench_huge_pages.json"))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child process of one format
    a = ap.parse_args()
    if not a.one:  # a process per format: freed memory keeps its pages for the next one
        from fastergpt.machine import cpu_model
        print(f"GPT-2-small shape ({a.layers} layers), prompt {a.prompt}, {a.new_tokens} new "
              f"tokens, batch 1, {a.threads} threads, {a.rounds} alternating rounds; "
              f"CPU {cpu_model()}", flush=True)
        results = []
        for dtype in a.dtypes:
            proc = subprocess.run([sys.executable, __file__, "--one", dtype, "--layers",
                                   str(a.layers), "--prompt", str(a.prompt), "--new-tokens",
                                   str(a.new_tokens), "--rounds", str(a.rounds), "--threads",
                                   str(a.threads)], check=True, capture_output=True, text=True)
            for line in proc.stdout.splitlines():
                if line.startswith(RESULT):
                    results.append(json.loads(line[len(RESULT):]))
                else:
                    print(line, flush=True)
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "cpu": cpu_model(), "results": results}, f, indent=1)
        print(f"wrote {a.out}")
        return

    # NumPy asks for 2 MB pages for its own arrays of 4 MB and more; memory they leave
    # behind would put the first engine's arrays partly on them. Off here, the first engine
    # gets the 4 KB pages a fresh process's Engine.load gets.
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _set_madvise_hugepage
    _set_madvise_hugepage(False)
    module = engine_module()
    reason = module.huge_page_stats()["off_reason"]
    if reason and reason != "FASTERGPT_HUGE_PAGES=0":
        raise SystemExit(f"2 MB pages are not asked for on this system: {reason}")
    config = GPTConfig(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=a.layers, n_head=12)
    rng = np.random.default_rng(0)
    state = {k: (rng.standard_normal(s) * 0.02).astype(np.float32)
             for k, s in family("gpt2").expected_shapes(config).items()}
    ids = rng.integers(0, config.vocab_size, (1, a.prompt))
    kw = dict(max_new_tokens=a.new_tokens, min_length=a.new_tokens, eos_token_id=-1,
              decode_strategy="greedy_search", num_threads=a.threads)
    dtype = a.one
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FASTERGPT_HUGE_PAGES"] = "0"
        try:
            Engine(config, state, dtype).save(tmp)
            del state
            small = Engine.load(tmp)
        finally:
            del os.environ["FASTERGPT_HUGE_PAGES"]
        before = module.huge_page_stats()
        huge = Engine.load(tmp)
        after = module.huge_page_stats()
    weights = sum(arr.nbytes for _, arr in small._packed)
    share_before = huge_share(arr for _, arr in small._packed)
    share_after = huge_share(arr for _, arr in huge._packed)
    print(f"{dtype}: {weights / 1e6:.1f} MB of weights; on 2 MB pages: {share_before} loaded "
          f"with FASTERGPT_HUGE_PAGES=0, {share_after} as the engine binds them (it asked for "
          f"{(after['asked_bytes'] - before['asked_bytes']) / 1e6:.1f} MB, the kernel "
          f"collapsed {(after['huge_bytes'] - before['huge_bytes']) / 1e6:.1f} MB in "
          f"{after['seconds'] - before['seconds']:.3f} s)")
    engines = {"4 KB pages": small, "2 MB pages": huge}
    outs = [e.generate(ids, **kw)["ids"] for e in engines.values()]  # also the warm-up
    assert np.array_equal(outs[0], outs[1]), "the page size changed the output"
    times = alternate(engines, lambda e: e.generate(ids, **kw), a.rounds)
    ratios = report(times, a.new_tokens, "2 MB pages", "4 KB pages")
    print(RESULT + json.dumps({
        "dtype": dtype, "weight_bytes": weights,
        "huge_share_before": share_before, "huge_share_after": share_after,
        "collapsed_bytes": after["huge_bytes"] - before["huge_bytes"],
        "collapse_seconds": after["seconds"] - before["seconds"],
        "tokens_per_s_4kb": {"median": a.new_tokens / np.median(times["4 KB pages"]),
                             "best": a.new_tokens / min(times["4 KB pages"])},
        "tokens_per_s_2mb": {"median": a.new_tokens / np.median(times["2 MB pages"]),
                             "best": a.new_tokens / min(times["2 MB pages"])},
        "time_ratio_median": float(np.median(ratios)), "time_ratios": ratios}))


if __name__ == "__main__":
    main()
