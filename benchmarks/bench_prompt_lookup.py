"""Prompt-lookup decoding against plain greedy search, same engine, same prompts, one run.

Prompts ask the model to go on from the start of a summary of a text it was just
given (the standard library's docstrings, the default model's own domain), where
the output copies spans of the input. Every setting is timed interleaved with the
others, `--repeats` times, and the median is kept; the output of every setting is
checked to equal plain greedy's, token for token. Prints tokens/s, the ratio to
plain greedy (the median of the rounds' ratios: a round runs each prompt through every
setting back to back, every other prompt in reverse order, so that the host's drift
cancels), and the drafts' acceptance rate, with the CPU model; tokens/s counts the
whole generate() call, prompt pass included, and again after the prompt pass (the
tokens after the first over the time after a 1-token generate() of the same prompts),
where prompt lookup acts.

    python benchmarks/bench_prompt_lookup.py                       # the default model
    python benchmarks/bench_prompt_lookup.py --model DIR --dtype int8
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def prompts(tokenizer, max_prompt: int) -> list:
    docs = [str.split, str.join, list.sort, dict.get, str.replace, str.startswith, dict.update,
            list.index, str.strip, sorted, zip, enumerate]
    out = []
    for f in docs:
        text = " ".join(f.__doc__.split())
        ids = tokenizer.encode(text + "\n\nIn short: " + " ".join(text.split()[:5]))
        out.append(np.array([ids[-max_prompt:]], dtype=np.int64))
    return out


def main():
    from fastergpt import Engine
    from fastergpt.machine import cpu_model
    from fastergpt.pretrained import resolve_model_path
    from fastergpt.tokenizer import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--drafts", type=int, nargs="+", default=[0, 1, 2, 4, 8],
                    help="prompt_lookup_num_tokens values (0 = plain greedy)")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--max-prompt", type=int, default=400)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--matmul-precision", default="float32", choices=["float32", "bfloat16"],
                    help="what float weights multiply in (bfloat16: AVX-512 BF16), every setting")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_prompt_lookup.json"))
    a = ap.parse_args()

    path = resolve_model_path(a.model)
    engine = Engine.from_pretrained(path, dtype=a.dtype)
    batch = prompts(Tokenizer.from_dir(path), a.max_prompt)
    settings = {k: dict(max_new_tokens=a.new_tokens, eos_token_id=-1, num_threads=a.threads,
                        decode_strategy="greedy_search", prompt_lookup_num_tokens=k,
                        matmul_precision=a.matmul_precision)
                for k in a.drafts}
    want = [engine.generate(ids, **settings[0])["ids"] for ids in batch]  # also a warm-up
    first = dict(settings[min(a.drafts)], max_new_tokens=1)  # the prompt pass + one token
    times = {k: [] for k in a.drafts}
    prompt_times = []
    stats = {}
    for r in range(a.repeats):
        # A round: every prompt through every setting (and the 1-token call), the calls of
        # one prompt back to back, every other prompt in reverse order, so that the host's
        # drift, which moves within a second, hits every setting alike; a round's time for
        # a setting is the sum over the prompts.
        spent = {k: 0.0 for k in a.drafts}
        spent_prompt, outs = 0.0, {k: [] for k in a.drafts}
        for i, ids in enumerate(batch):
            order = [None, *a.drafts] if (r + i) % 2 == 0 else [*a.drafts[::-1], None]
            for k in order:
                t0 = time.perf_counter()
                out = engine.generate(ids, **(first if k is None else settings[k]))
                dt = time.perf_counter() - t0
                if k is None:
                    spent_prompt += dt
                else:
                    spent[k] += dt
                    outs[k].append(out)
        prompt_times.append(spent_prompt)
        for k in a.drafts:
            times[k].append(spent[k])
            for got, ref in zip(outs[k], want):
                assert np.array_equal(got["ids"], ref), f"prompt_lookup_num_tokens={k} changed the output"
            stats[k] = (sum(o.get("drafted_tokens", 0) for o in outs[k]),
                        sum(o.get("accepted_tokens", 0) for o in outs[k]))
    tokens = a.new_tokens * len(batch)
    # The same after the prompt pass: the tokens after the first, over the time after it.
    prompt_s = statistics.median(prompt_times)
    later = {k: (tokens - len(batch)) / (statistics.median(times[k]) - prompt_s) for k in a.drafts}

    def paired(k, after_prompt=False):
        """The ratio to plain greedy round by round (a round's calls of one prompt ran back
        to back, so the host's drift, which moved the medians' ratio by 0.1x or more here,
        cancels): the median and the range of the rounds."""
        if 0 not in times:
            return None, None, None
        cut = prompt_times if after_prompt else [0.0] * a.repeats
        ratios = sorted((g - c) / (t - c) for g, t, c in zip(times[0], times[k], cut))
        return statistics.median(ratios), ratios[0], ratios[-1]
    print(f"prompt lookup, {path.name if a.model != 'default' else 'default model'} ({a.dtype}, "
          f"matmul_precision {a.matmul_precision}), "
          f"{len(batch)} prompts, {a.new_tokens} new tokens each, batch 1, {a.threads} threads, "
          f"median of {a.repeats}; the ratios to greedy are medians of per-round ratios (their "
          f"range in brackets); CPU {cpu_model()}")
    rows = []
    for k in a.drafts:
        tps = tokens / statistics.median(times[k])
        drafted, accepted = stats[k]
        vs, vs_lo, vs_hi = paired(k)
        vs_after, after_lo, after_hi = paired(k, after_prompt=True)
        row = {"prompt_lookup_num_tokens": k, "tokens_per_s": tps,
               "vs_greedy": vs, "vs_greedy_rounds": [vs_lo, vs_hi],
               "tokens_per_s_after_prompt": later[k],
               "vs_greedy_after_prompt": vs_after,
               "vs_greedy_after_prompt_rounds": [after_lo, after_hi],
               "drafted": drafted, "accepted": accepted,
               "acceptance": accepted / drafted if drafted else None,
               "tokens_per_pass": tokens / (tokens - accepted)}
        rows.append(row)
        ratio = f"  {vs:.2f}x ({vs_lo:.2f}-{vs_hi:.2f}) greedy" if vs else ""
        after = (f"; after the prompt pass {later[k]:8.1f} tok/s {vs_after:.2f}x "
                 f"({after_lo:.2f}-{after_hi:.2f})" if vs_after else "")
        print(f"  K={k:2d}: {tps:8.1f} tok/s{ratio}{after}  drafted {drafted:5d} "
              f"accepted {accepted:5d} ({100 * (row['acceptance'] or 0):.0f}%)  "
              f"{row['tokens_per_pass']:.2f} tokens per pass")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"args": vars(a), "cpu": cpu_model(), "results": rows}, f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
