"""This checkout against another one (an older commit, a branch), case by case, in
alternating processes: each round runs every case once in a fresh process of each
checkout, every other round in reverse order, so this host's drift between processes hits
both alike. Prints the median time per call of each checkout, the ratio, and the CPU.

Cases, int8 weights, 2 threads, 12 layers of width 768 with random weights (made once
under benchmarks/results/work/against/):
  ttft512-neox     a 512-token prompt, GPT-NeoX shape (Pythia-160M: GELU erf, MLP 3072)
  ttft512-llama    a 512-token prompt, LLaMA shape (gated SiLU, MLP 2048)
  ttft512-gpt2     a 512-token prompt, GPT-2 small (GELU tanh)
  greedy64-gpt2    64 tokens after 32, greedy
  top_p64-gpt2     64 tokens after 32, sampling top_p=0.9 (random weights: a broad nucleus)
  top_k64-gpt2     64 tokens after 32, sampling top_k=50
  top_p64x8-gpt2   the same as top_p64, 8 rows

    git worktree add /tmp/old <commit>
    python benchmarks/bench_against_checkout.py /tmp/old --rounds 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "results", "work", "against")
SHAPES = {
    "neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
             dict(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, max_position_embeddings=1024, hidden_act="gelu",
                  rotary_pct=0.25)),
    "llama": ("LlamaConfig", "LlamaForCausalLM",
              dict(vocab_size=32000, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                   num_key_value_heads=12, intermediate_size=2048, max_position_embeddings=1024)),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, n_positions=1024)),
}


def prepare() -> None:
    """Random transformers models of each shape, converted to int8 engines (once)."""
    import torch
    import transformers

    from fastergpt import Engine
    for name, (config_cls, model_cls, kwargs) in SHAPES.items():
        out = os.path.join(WORK, f"{name}_int8")
        if os.path.isdir(out):
            continue
        torch.manual_seed(0)
        model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**kwargs)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.05)
        hf = os.path.join(WORK, f"{name}_hf")
        model.save_pretrained(hf)
        Engine.from_pretrained(hf, dtype="int8").save(out)


def cases():
    import numpy as np

    prompt = np.random.RandomState(0).randint(3, 30000, size=(1, 512)).astype(np.int64)
    short = prompt[:, :32]
    greedy = dict(decode_strategy="greedy_search", eos_token_id=-1)
    top_p = dict(decode_strategy="sampling", top_p=0.9, top_k=0, seed=1, eos_token_id=-1)
    return {
        "ttft512-neox": ("neox", prompt, dict(greedy, max_new_tokens=1)),
        "ttft512-llama": ("llama", prompt, dict(greedy, max_new_tokens=1)),
        "ttft512-gpt2": ("gpt2", prompt, dict(greedy, max_new_tokens=1)),
        "greedy64-gpt2": ("gpt2", short, dict(greedy, max_new_tokens=64)),
        "top_p64-gpt2": ("gpt2", short, dict(top_p, max_new_tokens=64)),
        "top_k64-gpt2": ("gpt2", short, dict(decode_strategy="sampling", top_k=50, seed=1,
                                             eos_token_id=-1, max_new_tokens=64)),
        "top_p64x8-gpt2": ("gpt2", np.repeat(short, 8, 0), dict(top_p, max_new_tokens=64)),
    }


def child(repeats: int) -> None:
    """In the checkout on sys.path: each case's median seconds per call, as JSON."""
    from fastergpt import Engine
    engines, out = {}, {}
    for case, (shape, ids, kw) in cases().items():
        if shape not in engines:
            engines[shape] = Engine.load(os.path.join(WORK, f"{shape}_int8"))
        kw = dict(kw, num_threads=2)
        engines[shape].generate(ids, **kw)  # warm-up
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            engines[shape].generate(ids, **kw)
            t.append(time.perf_counter() - t0)
        out[case] = statistics.median(t)
    print(json.dumps(out))


def run_in(checkout: str, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=checkout)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--repeats",
                           str(repeats)], cwd=checkout, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{checkout}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", nargs="?", help="the other checkout (a directory)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="calls per case per process")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_against_checkout.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        sys.path.insert(0, os.getcwd())
        child(a.repeats)
        return
    if not a.other:
        ap.error("name the other checkout")
    sys.path.insert(0, ROOT)
    from alternating import turns
    from fastergpt.machine import cpu_model
    prepare()
    trees = {"this": ROOT, "other": os.path.abspath(a.other)}
    rounds = {name: [] for name in trees}
    for name in turns(trees, a.rounds):
        rounds[name].append(run_in(trees[name], a.repeats))
    print(f"this checkout ({ROOT}) against {trees['other']}: median of {a.rounds} processes x "
          f"{a.repeats} calls, 2 threads, int8; CPU {cpu_model()}")
    rows = []
    for case in rounds["this"][0]:
        this = [r[case] for r in rounds["this"]]
        other = [r[case] for r in rounds["other"]]
        ratio = statistics.median(other) / statistics.median(this)
        print(f"  {case:15s} this {statistics.median(this) * 1e3:8.1f} ms "
              f"({min(this) * 1e3:.1f}-{max(this) * 1e3:.1f})   other "
              f"{statistics.median(other) * 1e3:8.1f} ms ({min(other) * 1e3:.1f}-{max(other) * 1e3:.1f})"
              f"   {ratio:.2f}x faster")
        rows.append({"case": case, "this_s": this, "other_s": other, "speedup": ratio})
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"cpu": cpu_model(), "other": trees["other"], "rounds": a.rounds,
                   "repeats": a.repeats, "results": rows}, f, indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
