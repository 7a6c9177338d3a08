"""fastergpt's CUDA backend against transformers' eager `generate` on torch, on the
same GPU in ONE run, on the same random GPT-2 weights (small and medium shapes),
float16, greedy, the end token disabled so every row makes exactly --new-tokens.

Paddle-free (only `fastergpt.Engine`): runs where torch, transformers and a GPU are.
Prints the GPU's name, tokens/s and time per call of each, and fastergpt's ratio.

    python benchmarks/bench_gpu.py                     # small and medium, batch 1 and 32
    python benchmarks/bench_gpu.py --models small --batch 1 --new-tokens 32 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {"small": dict(n_layer=12, n_embd=768, n_head=12),
          "medium": dict(n_layer=24, n_embd=1024, n_head=16)}


def random_gpt2(shape: str, directory: Path):
    import torch
    import transformers

    config = transformers.GPT2Config(vocab_size=50257, n_positions=1024, **SHAPES[shape])
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(directory)
    return model


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (and cuBLAS's first-call setup)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    import torch

    from fastergpt.engine import Engine, cuda_available

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["small", "medium"], choices=sorted(SHAPES))
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32])
    p.add_argument("--prompt", type=int, default=32, help="prompt tokens per row")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    ok, why = cuda_available()
    if not ok or not torch.cuda.is_available():
        print(f"bench_gpu: no GPU to measure on ({why or 'torch sees no CUDA device'})", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name(0)
    print(f"GPU: {gpu}; torch {torch.__version__}; float16, greedy, prompt {args.prompt}, "
          f"{args.new_tokens} new tokens, best of {args.repeats}")
    rows = []
    for shape in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            hf = random_gpt2(shape, Path(tmp))
            engine = Engine.from_pretrained(tmp, "float16", device="gpu")
        hf = hf.half().cuda()
        rng = np.random.default_rng(0)
        for batch in args.batch:
            ids = rng.integers(0, 50257, size=(batch, args.prompt), dtype=np.int64)

            def ours():
                engine.generate(ids, max_new_tokens=args.new_tokens, eos_token_id=-1)

            tids = torch.tensor(ids, device="cuda")

            def theirs():
                with torch.no_grad():
                    hf.generate(tids, attention_mask=torch.ones_like(tids), do_sample=False,
                                max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                pad_token_id=0, eos_token_id=None)
                torch.cuda.synchronize()

            t_ours, t_theirs = best_of(ours, args.repeats), best_of(theirs, args.repeats)
            tokens = batch * args.new_tokens
            row = dict(gpu=gpu, model=shape, batch=batch, fastergpt_tok_s=tokens / t_ours,
                       transformers_tok_s=tokens / t_theirs, ratio=t_theirs / t_ours)
            rows.append(row)
            print(f"  {shape:6s} batch {batch:3d}: fastergpt {row['fastergpt_tok_s']:9.1f} tok/s, "
                  f"transformers eager {row['transformers_tok_s']:9.1f} tok/s, "
                  f"ratio {row['ratio']:.2f}x")
        del hf, engine
        torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
