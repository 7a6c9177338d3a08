"""Tensor-parallel decoding: one model split over processes by attention heads and MLP
columns (Megatron-LM's split), each process an `Engine` over its shard that sums its
sublayers' outputs with an all-reduce (docs/tensor-parallel.md says how and why).

What a shard holds, of each block (H query heads, K KV heads, F MLP width, size S):
- qkv: the rows of its H/S query heads and K/S KV heads (its KV cache holds only those);
- attn_out: the matching columns; its output is a partial sum over the heads;
- fc (gate|up): F/S rows; proj: the matching columns, again a partial sum;
- everything else (embeddings, norms, output biases, the LM head) whole.
The engine adds each partial output's bias once (rank 0) and all-reduces it before the
residual add: 2 all-reduces of [tokens, D] floats per block (1 with a parallel
residual). Every shard then holds the same logits, bit for bit, so with the same
settings and seed every shard chooses the same tokens and no token is sent.

    python -m fastergpt.tensor_parallel --size 2          # the default model over 2 processes

runs the demonstration: SIZE processes on this machine joined by torch.distributed's
gloo backend on 127.0.0.1, each with one thread, and prints rank 0's text next to one
process's (they are equal token for token; tests/test_tensor_parallel.py checks it).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.tokenizer import left_pad

# The block tensors a shard cuts: key -> the axis of its heads / MLP columns.
_BY_HEADS_ROWS = ("qkv.weight", "qkv.bias")
_BY_HEADS_COLS = ("attn_out.weight",)
_BY_MLP_ROWS = ("fc.weight", "fc.bias")
_BY_MLP_COLS = ("proj.weight",)


def shard_config(config: GPTConfig, size: int) -> GPTConfig:
    """The architecture of one shard of `size`: H/S query and K/S KV heads of the same
    head size, F/S MLP width. A ValueError names what `size` does not divide."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    heads, kv_heads, inner = config.n_head, config.n_kv_head or config.n_head, config.inner_size
    for what, n in (("attention heads (n_head)", heads), ("key/value heads (n_kv_head)", kv_heads),
                    ("MLP width (n_inner)", inner)):
        if n % size:
            raise ValueError(f"tensor parallel size {size} must divide the model's {what}: {n}")
    return replace(config, n_head=heads // size,
                   n_kv_head=None if config.n_kv_head is None else kv_heads // size,
                   head_dim=config.head_size, n_inner=inner // size)


def shard_tensors(config: GPTConfig, tensors: dict, rank: int, size: int) -> tuple[GPTConfig, dict]:
    """(shard config, shard tensors) of process `rank` from the whole model's
    engine-named float32 tensors (fastergpt.packing.engine_tensors)."""
    part = shard_config(config, size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}), got {rank!r}")
    H, K, Dh, F = config.n_head, config.n_kv_head or config.n_head, config.head_size, config.inner_size
    h, k, f = H // size, K // size, F // size
    # Rows of the fused qkv (q heads | k heads | v heads) and of fc (gate | up) this rank keeps.
    qkv_rows = np.concatenate([np.arange(rank * h * Dh, (rank + 1) * h * Dh),
                               H * Dh + np.arange(rank * k * Dh, (rank + 1) * k * Dh),
                               (H + K) * Dh + np.arange(rank * k * Dh, (rank + 1) * k * Dh)])
    q_cols = np.arange(rank * h * Dh, (rank + 1) * h * Dh)
    mlp = np.arange(rank * f, (rank + 1) * f)
    mlp_rows = np.concatenate([mlp, F + mlp]) if config.gated_mlp else mlp
    out = {}
    for name, a in tensors.items():
        key = name.split(".", 2)[2] if name.startswith("layers.") else name
        if key in _BY_HEADS_ROWS:
            a = a[qkv_rows]
        elif key in _BY_HEADS_COLS:
            a = a[:, q_cols]
        elif key in _BY_MLP_ROWS:
            a = a[mlp_rows]
        elif key in _BY_MLP_COLS:
            a = a[:, mlp]
        out[name] = np.ascontiguousarray(a)
    return part, out


def shard_engine(config: GPTConfig, state_dict: dict, rank: int, size: int,
                 all_reduce: Callable[[np.ndarray], None], dtype: str = "float32", tokenizer=None):
    """The Engine of shard `rank` of `size`, from the whole model's state dict (the family's
    names). `all_reduce(array)` sums a float32 array in place over the `size` processes
    (gloo_all_reduce below, or any library's). Settings that would let one shard stop on
    its own (max_time) are refused."""
    from fastergpt.engine import Engine
    from fastergpt.packing import engine_tensors, pack_engine_tensors
    from fastergpt.quantize import normalize_dtype

    fmt = normalize_dtype(dtype)
    tensors, quantized = engine_tensors(config.validate(), state_dict, fmt)
    if quantized:
        raise ValueError("tensor parallel: a checkpoint's 4-bit (GPTQ) matrices cannot be sharded; "
                         "load its float weights, or quantize each shard with --dtype int4")
    part, shard = shard_tensors(config, tensors, rank, size)
    packed = pack_engine_tensors(part, shard, fmt)
    return Engine(part, dtype=fmt, packed=packed, tokenizer=tokenizer, all_reduce=all_reduce,
                  rank=rank, size=size)


def gloo_all_reduce(group=None) -> Callable[[np.ndarray], None]:
    """An all_reduce over torch.distributed (initialised by the caller, e.g. with the gloo
    backend): sums the array in place, through a tensor sharing its memory."""
    import torch
    import torch.distributed as dist

    def all_reduce(array: np.ndarray) -> None:
        dist.all_reduce(torch.from_numpy(array), op=dist.ReduceOp.SUM, group=group)

    return all_reduce


# ---- the demonstration: SIZE processes on this machine ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(args) -> int:
    """One rank: joins the group, builds its shard, generates, prints its result as JSON."""
    import datetime
    import json

    import torch.distributed as dist

    from fastergpt.pretrained import load_state_dict

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank,
                            world_size=args.size, timeout=datetime.timedelta(seconds=120))
    try:
        config, state = load_state_dict(args.model_name_or_path)
        reduce, reducing = gloo_all_reduce(), [0.0]

        def timed_all_reduce(array):  # the time spent communicating, for the benchmark
            t = time.perf_counter()
            reduce(array)
            reducing[0] += time.perf_counter() - t

        engine = shard_engine(config, state, args.rank, args.size, timed_all_reduce, args.dtype)
        settings = json.loads(args.settings)
        ids, mask = left_pad(json.loads(args.ids))
        start = time.perf_counter()
        out = engine.generate(ids, mask, return_logprobs=True, **settings)
        seconds = time.perf_counter() - start
        print(json.dumps({"rank": args.rank, "ids": out["ids"].tolist(), "lengths": out["lengths"].tolist(),
                          "logprobs": out["logprobs"].tolist(), "seconds": seconds,
                          "all_reduce_seconds": reducing[0]}), flush=True)
    finally:
        dist.destroy_process_group()
    return 0


def run_sharded(model_name_or_path, prompts: list, size: int, dtype: str = "float32",
                timeout: float = 300, **settings) -> list:
    """Generates from `prompts` (token id lists) with `settings` in `size` processes, one
    shard and one thread each, and returns each rank's result ({'ids', 'lengths',
    'logprobs', 'seconds', 'all_reduce_seconds'}: generate's time, and the part of it spent
    in the all-reduce) in rank order; a rank's failure raises RuntimeError with its
    error output."""
    import json

    settings.setdefault("num_threads", 1)
    cmd = [sys.executable, "-m", "fastergpt.tensor_parallel", "--worker", "--port", str(_free_port()),
           "--size", str(size), "--model_name_or_path", str(model_name_or_path), "--dtype", dtype,
           "--ids", json.dumps([[int(t) for t in p] for p in prompts]), "--settings", json.dumps(settings)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(x for x in (root, os.environ.get("PYTHONPATH")) if x))
    procs = [subprocess.Popen(cmd + ["--rank", str(r)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for r in range(size)]
    results = []
    try:
        for r, p in enumerate(procs):
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                raise RuntimeError(f"tensor parallel rank {r} failed ({p.returncode}):\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fastergpt.tensor_parallel", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_name_or_path", default="default")
    ap.add_argument("--size", type=int, default=2, help="processes (shards)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--prompt", action="append", help="repeatable (default: two built-in prompts)")
    ap.add_argument("--max_new_tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, help="sample with this seed (default: greedy)")
    ap.add_argument("--top_k", type=int, default=0)
    for hidden in ("--worker",):
        ap.add_argument(hidden, action="store_true", help=argparse.SUPPRESS)
    for hidden, kind in (("--rank", int), ("--port", int), ("--ids", str), ("--settings", str)):
        ap.add_argument(hidden, type=kind, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args)
    from fastergpt.engine import Engine
    from fastergpt.pretrained import resolve_model_path
    from fastergpt.tokenizer import Tokenizer

    prompts = args.prompt or ["The function returns", "This module provides"]
    try:
        path = resolve_model_path(args.model_name_or_path)
        tok = Tokenizer.from_dir(path)
        ids, mask = tok.encode_batch(prompts)
        rows = [[int(t) for t, m in zip(i, k) if m] for i, k in zip(ids, mask)]
        settings = dict(max_new_tokens=args.max_new_tokens, num_threads=1,
                        eos_token_id=-1 if tok.eos_token_id is None else tok.eos_token_id)
        if args.seed is not None:
            settings.update(decode_strategy="sampling", seed=args.seed, top_k=args.top_k)
        sharded = run_sharded(path, rows, args.size, args.dtype, **settings)
        one = Engine.from_pretrained(path, dtype=args.dtype)
        start = time.perf_counter()
        single = one.generate(ids, mask, **settings)
        seconds_one = time.perf_counter() - start
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    same = all(r["ids"] == single["ids"].tolist() for r in sharded)
    for i, prompt in enumerate(prompts):
        n = sharded[0]["lengths"][i]
        print(f"{prompt!r} -> {tok.decode(sharded[0]['ids'][i][:n])!r}")
    seconds = ", ".join("%.3f" % r["seconds"] for r in sharded)
    print(f"{args.size} processes x 1 thread: {seconds} s (1 process, 1 thread: "
          f"{seconds_one:.3f} s); equal to 1 process token for token: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
