"""Generation speed of fastergpt against the engines users would pick instead, in
ONE run on the same random weights (GPT-2 small or medium shape, or a LLaMA
shape of about GPT-2-small size with grouped-query attention: --arch llama).

Engines (each in its own process, see benchmarks/engines/): fastergpt through the
Paddle op and through the NumPy module in float32 / float16 / int8 / int4, and
int4-vocab4 (int4 with the token table and LM head in 4 bits too: vocab_dtype="int4",
against llama.cpp's q4_0 with a q4_0 output matrix); the reference
Paddle dygraph generate(); and, when installed, HF transformers on torch,
CTranslate2 (float32, int8), ONNX Runtime (float32, int8 dynamic
quantization) and llama.cpp through llama-cpp-python (float32, float16, q8_0 in the
int8 rows and q4_0 in the int4 rows; batch 1 only, as its API runs one sequence at a time), all converted from the
same checkpoint. The end token is
disabled, so every engine makes exactly --new-tokens tokens per row.

Prints tokens/s, time to first token and peak resident memory per engine, the
ratio of each fastergpt run to the best other engine of the same dtype, and the
roofline: this machine's read bandwidth divided by the bytes of weights read per
generated token, and again counting the KV cache a step reads too (the bandwidth is
measured just before and just after each fastergpt batch-1 run, and the run is held to
the higher reading: it wanders over minutes; the probe reads as 1, 2, 4 and 8 streams
per thread and keeps the best, since a core's reads grow with the streams its
prefetchers follow, csrc/cpu/bandwidth_cpu.cc).
Writes JSON and a PNG chart.

    python benchmarks/bench_generate.py                       # GPT-2 small, batch 1 and 8
    python benchmarks/bench_generate.py --model medium
    python benchmarks/bench_generate.py --arch llama          # LLaMA shape (GQA)
    python benchmarks/bench_generate.py --layers 2 --quick    # smoke run
    python benchmarks/bench_generate.py --num-beams 4 --batch 1 --new-tokens 64 \
        --engines fastergpt-paddle fastergpt-numpy ctranslate2 hf-torch   # beam search
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

SHAPES = {"small": (12, 768, 12), "medium": (24, 1024, 16)}  # layers, hidden, heads
# Engines that run each architecture (the reference and the ONNX exporter are GPT-2 only).
ARCH_ENGINES = {"gpt2": None, "llama": {"fastergpt-paddle", "fastergpt-numpy", "hf-torch", "ctranslate2"}}
RUNS = [  # (engine key, dtype)
    ("fastergpt-paddle", "float32"), ("fastergpt-paddle", "float16"), ("fastergpt-paddle", "int8"),
    ("fastergpt-paddle", "int4"), ("fastergpt-paddle", "int4-vocab4"),
    ("fastergpt-numpy", "float32"), ("fastergpt-numpy", "float16"), ("fastergpt-numpy", "int8"),
    ("fastergpt-numpy", "int4"), ("fastergpt-numpy", "int4-vocab4"),
    ("fastergpt-paddle", "bfloat16"), ("fastergpt-numpy", "bfloat16"),
    ("reference", "float32"), ("hf-torch", "float32"),
    ("ctranslate2", "float32"), ("ctranslate2", "int8"),
    ("onnxruntime", "float32"), ("onnxruntime", "int8"),
    ("llama-cpp", "float32"), ("llama-cpp", "float16"), ("llama-cpp", "int8"), ("llama-cpp", "int4"),
    ("llama-cpp", "int4-vocab4"), ("llama-cpp", "bfloat16"),
]
# Engines with beam search (--num-beams > 1).
BEAM_ENGINES = {"fastergpt-paddle", "fastergpt-numpy", "hf-torch", "ctranslate2"}
# The modules an optional engine needs: its runtime and what writes its files (onnx for
# ONNX Runtime's export, gguf for llama.cpp's).
OPTIONAL = {"hf-torch": ("transformers",), "ctranslate2": ("ctranslate2",),
            "onnxruntime": ("onnxruntime", "onnx"), "llama-cpp": ("llama_cpp", "gguf")}
# llama-cpp-python's API runs one sequence at a time (llama.cpp batches only in its own
# server): its rows would be sequential throughput, not a batch, so it runs at batch 1.
BATCH1_ENGINES = {"llama-cpp"}


def missing_modules(key: str) -> list:
    return [m for m in OPTIONAL.get(key, ()) if importlib.util.find_spec(m) is None]


def installed(key: str) -> bool:
    return not missing_modules(key)


def weight_bytes_per_token(work: str, dtype: str) -> int:
    """Bytes of packed weights one decoding step reads (the position table counts
    one row, and a tied token table is read once, as the LM head; a token table packed
    apart from its head, an int4 vocabulary's int8 one, counts one row too)."""
    from safetensors import safe_open

    info = json.load(open(os.path.join(work, f"fastergpt_{dtype}", "engine_config.json")))
    table_apart = "lm_head.weight" in info["order"]
    total = 0
    with safe_open(os.path.join(work, f"fastergpt_{dtype}", "engine.safetensors"), "np") as f:
        for name in info["order"]:
            t = f.get_slice(name)
            shape = t.get_shape()
            n = 1
            for s in shape:
                n *= s
            size = {"F32": 4, "F16": 2, "U16": 2, "I8": 1}[t.get_dtype()]  # U16: bfloat16's bits
            if name == "position_embedding":
                n = shape[1]
            elif table_apart and name.startswith("token_embedding"):
                n = -(-n // info["model"]["vocab_size"])  # a row's share of it
            total += n * size
    return total


def kv_bytes_per_token(work: str, dtype: str, args) -> float:
    """Bytes of KV cache one batch-1 step reads, on average over a call: a step attends over
    every position so far (the prompt and the tokens before it), so the mean over the
    --new-tokens steps is layers x (keys + values) x their width x (prompt + new / 2).
    The shape is the packed engine's own (its config.json's "model", every family's
    names already mapped to GPT-2's)."""
    from fastergpt.config import GPTConfig

    info = json.load(open(os.path.join(work, f"fastergpt_{dtype}", "engine_config.json")))
    c = GPTConfig.from_dict(info["model"])
    element = 2 if args.kv_cache_dtype == "float16" else 4
    width = (c.n_kv_head or c.n_head) * c.head_size
    return c.n_layer * 2 * width * element * (args.prompt + args.new_tokens / 2)


def run_one(key, dtype, work, args, batch, top_k):
    cmd = [sys.executable, os.path.join(HERE, "engines", "run_engine.py"), key, dtype, work,
           "--batch", str(batch), "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens),
           "--top-k", str(top_k), "--threads", str(args.threads), "--repeats", str(args.repeats),
           "--vocab", str(args.vocab), "--num-beams", str(args.num_beams),
           "--kv-cache-dtype", args.kv_cache_dtype, "--matmul-precision", args.matmul_precision]
    if key == "reference" or key == "hf-torch":
        cmd[cmd.index("--repeats") + 1] = "1"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        print(f"  {key} {dtype}: FAILED\n{proc.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def chart(results, path, title):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    groups = sorted({(r["batch"], r["top_k"]) for r in results})
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 5), squeeze=False)
    for ax, (batch, top_k) in zip(axes[0], groups):
        rows = [r for r in results if r["batch"] == batch and r["top_k"] == top_k]
        rows.sort(key=lambda r: r["tokens_per_s"])
        labels = [f"{r['engine']} {r['dtype']}" for r in rows]
        colors = ["tab:red" if r["key"].startswith("fastergpt") else "tab:gray" for r in rows]
        ax.barh(labels, [r["tokens_per_s"] for r in rows], color=colors)
        ax.set_xlabel("generated tokens/s")
        ax.set_title(f"batch {batch}, {'greedy' if not top_k else f'top-k {top_k}'}")
        for i, r in enumerate(rows):
            ax.text(r["tokens_per_s"], i, f" {r['tokens_per_s']:.0f}", va="center", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(SHAPES), default="small")
    ap.add_argument("--arch", choices=sorted(ARCH_ENGINES), default="gpt2",
                    help="gpt2, or llama: RMSNorm, rotary, 4 KV heads, gated SiLU MLP")
    ap.add_argument("--layers", type=int, help="override the layer count (smoke runs)")
    ap.add_argument("--vocab", type=int, help="default: 50257 (gpt2), 32000 (llama)")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--top-k", type=int, nargs="+", default=[0, 4], help="0 = greedy")
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every engine this many times, interleaved (engine A, B, ..., A, B, "
                         "...), keeping each one's best: the machine's speed wanders over "
                         "minutes, and interleaving gives every engine the same stretches of it")
    ap.add_argument("--engines", nargs="+", help="only these engine keys")
    ap.add_argument("--work-dir", default=os.path.join(HERE, "results", "work"))
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--dtypes", nargs="+", help="only these weight formats (e.g. int8 int4)")
    ap.add_argument("--quick", action="store_true", help="16 new tokens, 1 repeat, greedy only")
    ap.add_argument("--num-beams", type=int, default=1,
                    help="beam search with this many beams (engines that have it; no top-k runs)")
    ap.add_argument("--kv-cache-dtype", default="float32", choices=["float32", "float16"],
                    help="fastergpt's KV cache (kv_cache_dtype); llama.cpp keeps its default "
                         "float16 cache, the other engines float32")
    ap.add_argument("--matmul-precision", default="float32", choices=["float32", "bfloat16"],
                    help="what fastergpt's float32/float16 weights multiply in (matmul_precision; "
                         "bfloat16 needs AVX-512 BF16); the other engines keep their own")
    args = ap.parse_args()
    if args.quick:
        args.new_tokens, args.repeats, args.top_k = 16, 1, [0]
    layers, hidden, heads = SHAPES[args.model]
    layers = args.layers or layers
    args.vocab = args.vocab or (32000 if args.arch == "llama" else 50257)
    supported = ARCH_ENGINES[args.arch]
    if args.num_beams > 1:
        args.top_k = [0]
        supported = BEAM_ENGINES if supported is None else supported & BEAM_ENGINES
    for key in sorted(k for k in set(args.engines or ()) if not installed(k)):
        print(f"note: --engines {key} skipped: module(s) {', '.join(missing_modules(key))} not "
              "installed", file=sys.stderr)
    runs = [r for r in RUNS if installed(r[0]) and (not args.engines or r[0] in args.engines)
            and (not args.dtypes or r[1] in args.dtypes)
            and (supported is None or r[0] in supported)]
    arch_tag = "" if args.arch == "gpt2" else f"{args.arch}_"
    work = os.path.join(args.work_dir, f"{arch_tag}{args.model}_{layers}l_{args.vocab}v")

    from engines.prepare import prepare
    from fastergpt.machine import cpu_model
    from fastergpt.ops import engine_module

    print(f"preparing {work} ...")
    prepare(work, layers, hidden, heads, args.vocab, {k for k, _ in runs}, log=lambda s: print("  " + s),
            arch=args.arch)
    # The machine's bandwidth wanders over minutes (a shared host: 26-62 GB/s within one
    # run here), so a figure measured once would flatter or wrong a run made minutes later:
    # each fastergpt batch-1 run is held to the higher of the readings just before and
    # just after it.
    def measure_bandwidth():
        bandwidths.append(engine_module().measure_read_bandwidth(1024, args.threads, 2))
        return bandwidths[-1]

    bandwidths = []
    bandwidth = measure_bandwidth()
    shape = f"{'LLaMA (GQA)' if args.arch == 'llama' else 'GPT-2'} {args.model}"
    print(f"\n{shape} shape ({layers} layers, hidden {hidden}, vocab {args.vocab}); prompt "
          f"{args.prompt}, {args.new_tokens} new tokens, {args.threads} threads; CPU {cpu_model()} "
          f"(kernels: {engine_module().cpu_isa()}); measured read bandwidth {bandwidth:.1f} GB/s; "
          f"fastergpt's KV cache {args.kv_cache_dtype}, matmul_precision {args.matmul_precision}")
    from engines.prepare import BENCH_DTYPES

    # (a dtype is packed only when a fastergpt engine runs it)
    step_bytes = {dtype: weight_bytes_per_token(work, dtype) for dtype in BENCH_DTYPES
                  if os.path.isdir(os.path.join(work, f"fastergpt_{dtype}"))}
    roofline = {dtype: bandwidth * 1e9 / b for dtype, b in step_bytes.items()}
    # A step must read its KV cache too: the roofline "with the KV cache" counts it (fastergpt's
    # cache, --kv-cache-dtype; at 64 tokens after 32 on GPT-2 small, 1% of the float32
    # weights, 4% of the int8 ones, 6% of int4).
    kv_bytes = {dtype: kv_bytes_per_token(work, dtype, args) for dtype in step_bytes}
    for dtype, b in step_bytes.items():
        print(f"  {dtype}: {b / 1e6:7.1f} MB of weights per step -> batch-1 roofline "
              f"{roofline[dtype]:6.1f} tokens/s (at this bandwidth); with the KV cache's "
              f"{kv_bytes[dtype] / 1e6:.1f} MB a step on average, "
              f"{bandwidth * 1e9 / (b + kv_bytes[dtype]):6.1f}")

    results = []
    for batch in args.batch:
        for top_k in args.top_k:
            strategy = (f"beam search, {args.num_beams} beams" if args.num_beams > 1
                        else "greedy" if not top_k else f"top-k {top_k}")
            print(f"\nbatch {batch}, {strategy}:")
            print(f"  {'engine':30s} {'dtype':11s} {'tokens/s':>9s} {'TTFT ms':>8s} {'peak MB':>8s}  note")
            group = []
            here = [(key, dtype) for key, dtype in runs
                    if not (key == "reference" and batch > 1 and top_k)  # greedy suffices for it
                    and not (key in BATCH1_ENGINES and batch > 1)]
            rounds = {}  # (key, dtype) -> every round's result
            for round_ in range(args.rounds):
                # Every other round in reverse order, so that a drift within a round
                # favours no engine.
                for key, dtype in (here if round_ % 2 == 0 else here[::-1]):
                    held = batch == 1 and key.startswith("fastergpt") and dtype in step_bytes
                    before = measure_bandwidth() if held else None
                    r = run_one(key, dtype, work, args, batch, top_k)
                    if r is not None and held:
                        r["bandwidth_gb_s"] = max(before, measure_bandwidth())
                        r["roofline_tokens_per_s"] = r["bandwidth_gb_s"] * 1e9 / step_bytes[dtype]
                        r["roofline_with_kv_tokens_per_s"] = (r["bandwidth_gb_s"] * 1e9
                                                              / (step_bytes[dtype] + kv_bytes[dtype]))
                    if r is not None:
                        r["round"] = round_
                        rounds.setdefault((key, dtype), []).append(r)
                        if args.rounds > 1:
                            print(f"    round {round_ + 1}: {r['engine']} {dtype} "
                                  f"{r['tokens_per_s']:.1f} tok/s", flush=True)
            for key, dtype in here:
                if (key, dtype) not in rounds:
                    continue
                every = rounds[(key, dtype)]
                r = dict(max(every, key=lambda o: o["tokens_per_s"]))
                r["ttft_ms"] = min(o["ttft_ms"] for o in every)
                r["rounds_tokens_per_s"] = [o["tokens_per_s"] for o in every]
                group.append(r)
                note = ""
                if "bandwidth_gb_s" in r:
                    shares = [o["tokens_per_s"] / o["roofline_tokens_per_s"] for o in every]
                    r["rounds_roofline_share"] = shares
                    r["rounds_roofline_with_kv_share"] = [
                        o["tokens_per_s"] / o["roofline_with_kv_tokens_per_s"] for o in every]
                    note = (f"{100 * r['tokens_per_s'] / r['roofline_tokens_per_s']:.0f}% of the "
                            f"roofline ({100 * r['tokens_per_s'] / r['roofline_with_kv_tokens_per_s']:.0f}% "
                            f"with the KV cache) at {r['bandwidth_gb_s']:.1f} GB/s")
                    if len(every) > 1:
                        note += f" (rounds {100 * min(shares):.0f}-{100 * max(shares):.0f}%)"
                if len(every) > 1:
                    note += (f"{'; ' if note else ''}rounds {min(r['rounds_tokens_per_s']):.1f}-"
                             f"{max(r['rounds_tokens_per_s']):.1f}")
                print(f"  {r['engine']:30s} {dtype:11s} {r['tokens_per_s']:9.1f} {r['ttft_ms']:8.1f} "
                      f"{r['peak_rss_mb']:8.0f}  {note}", flush=True)
            for r in group:
                if r["dtype"] in roofline and "roofline_tokens_per_s" not in r:
                    r["roofline_tokens_per_s"] = roofline[r["dtype"]] * batch
                if r["key"].startswith("fastergpt"):
                    others = [o for o in group if not o["key"].startswith("fastergpt")]
                    same = [o for o in others if o["dtype"] == r["dtype"]]
                    ref = [o for o in others if o["key"] == "reference"]
                    hf = [o for o in others if o["key"] == "hf-torch"]
                    if hf:
                        r["vs_transformers"] = r["tokens_per_s"] / hf[0]["tokens_per_s"]
                    if same:
                        best = max(same, key=lambda o: o["tokens_per_s"])
                        r["vs_best_same_dtype"] = r["tokens_per_s"] / best["tokens_per_s"]
                        r["best_same_dtype"] = f"{best['engine']} {best['dtype']}"
                        r["ttft_vs_best_same_dtype"] = r["ttft_ms"] / min(o["ttft_ms"] for o in same)
                        r["rss_vs_same_dtype"] = {o["engine"]: r["peak_rss_mb"] / o["peak_rss_mb"] for o in same}
                        # Over rounds, the ratio to the best other engine of the same round,
                        # round by round: the host's speed moves by up to 1.5x within minutes,
                        # and a best of rounds can pair one engine's fast stretch with
                        # another's slow one.
                        def by_round(o):
                            every = rounds[(o["key"], o["dtype"])]
                            return {x["round"]: x["tokens_per_s"] for x in every}
                        mine, theirs = by_round(r), [by_round(o) for o in same]
                        rounds_ratio = [mine[i] / max(t[i] for t in theirs) for i in sorted(mine)
                                        if all(i in t for t in theirs)]
                        if len(rounds_ratio) > 1:
                            r["rounds_vs_best_same_dtype"] = rounds_ratio
                    if ref:
                        r["vs_reference"] = r["tokens_per_s"] / ref[0]["tokens_per_s"]
                    if r["dtype"].startswith("int4"):  # also against int8 (its own and CTranslate2's)
                        for o in group:
                            if o["dtype"] == "int8" and o["key"] in (r["key"], "ctranslate2"):
                                r.setdefault("vs_int8", {})[o["engine"]] = r["tokens_per_s"] / o["tokens_per_s"]
            print("  ratios:")
            for r in group:
                if r["key"].startswith("fastergpt"):
                    parts = []
                    if "vs_best_same_dtype" in r:
                        parts.append(f"{r['vs_best_same_dtype']:.2f}x {r['best_same_dtype']}")
                        if "rounds_vs_best_same_dtype" in r:
                            rr = r["rounds_vs_best_same_dtype"]
                            parts.append(f"round by round {statistics.median(rr):.2f}x the best "
                                         f"other (median; {min(rr):.2f}-{max(rr):.2f})")
                        parts.append(f"TTFT {r['ttft_vs_best_same_dtype']:.2f}x of the best")
                    if "vs_reference" in r:
                        parts.append(f"{r['vs_reference']:.1f}x reference")
                    if "vs_transformers" in r:
                        parts.append(f"{r['vs_transformers']:.1f}x transformers")
                    for engine, ratio in r.get("vs_int8", {}).items():
                        parts.append(f"{ratio:.2f}x {engine} int8")
                    print(f"    {r['engine']:28s} {r['dtype']:11s} " + "; ".join(parts))
            results.extend(group)

    print(f"\nread bandwidth over the run: {min(bandwidths):.1f}-{max(bandwidths):.1f} GB/s "
          f"({len(bandwidths)} measurements; each fastergpt batch-1 run is held to the higher "
          "reading next to it)")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"bench_generate_{arch_tag}{args.model}" +
                        (f"_{layers}l" if args.layers else "") +
                        (f"_beam{args.num_beams}" if args.num_beams > 1 else "") +
                        ("_kv16" if args.kv_cache_dtype == "float16" else "") +
                        ("_bf16" if args.matmul_precision == "bfloat16" else ""))
    with open(stem + ".json", "w") as f:
        json.dump({"args": vars(args), "cpu": cpu_model(), "bandwidth_gb_s": bandwidth,
                   "bandwidth_measurements_gb_s": bandwidths,  # each run's own: its "bandwidth_gb_s"
                   "roofline_batch1": roofline, "kv_cache_bytes_per_step": kv_bytes,
                   "results": results}, f, indent=1)
    print(f"\nwrote {stem}.json (CPU: {cpu_model()})")
    chart(results, stem + ".png", f"{shape} shape, {args.threads} threads, "
                                  f"prompt {args.prompt}, {args.new_tokens} new tokens")


if __name__ == "__main__":
    main()
