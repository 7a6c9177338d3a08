"""Markdown tables from a bench_generate.py JSON (what the README shows):
python benchmarks/report.py benchmarks/results/bench_generate_small.json"""
import json
import sys


def main(path: str) -> None:
    data = json.load(open(path))
    results = data["results"]
    groups = sorted({(r["batch"], r["top_k"]) for r in results})
    engines = []
    for r in results:
        key = (r["engine"], r["dtype"])
        if key not in engines:
            engines.append(key)
    head = ["engine", "dtype"] + [f"b{b} {'greedy' if not k else f'top-k {k}'} tok/s" for b, k in groups]
    head += ["TTFT ms (b1)", "peak MB (b1)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for name, dtype in engines:
        cells = [name, dtype]
        first = None
        for b, k in groups:
            r = next((r for r in results if r["engine"] == name and r["dtype"] == dtype
                      and r["batch"] == b and r["top_k"] == k), None)
            cells.append(f"{r['tokens_per_s']:.1f}" if r else "-")
            if r and b == 1 and first is None:
                first = r
        cells += [f"{first['ttft_ms']:.1f}", f"{first['peak_rss_mb']:.0f}"] if first else ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    print()
    spread = data.get("bandwidth_measurements_gb_s")
    over = (f" at the start; {min(spread):.1f}-{max(spread):.1f} over the run, and each fastergpt "
            "batch-1 run's % below is of the higher reading next to it") if spread else ""
    print(f"Read bandwidth {data['bandwidth_gb_s']:.1f} GB/s{over}; batch-1 roofline (tokens/s): " +
          ", ".join(f"{d} {v:.0f}" for d, v in data["roofline_batch1"].items()))
    print()
    print("| fastergpt run | batch | strategy | vs best other engine, same dtype | TTFT vs best | vs reference | % of roofline |")
    print("|---|---:|---|---|---:|---:|---:|")
    for r in results:
        if not r["key"].startswith("fastergpt"):
            continue
        vs = f"{r['vs_best_same_dtype']:.2f}x {r['best_same_dtype']}" if "vs_best_same_dtype" in r else "-"
        ttft = f"{r['ttft_vs_best_same_dtype']:.2f}x" if "ttft_vs_best_same_dtype" in r else "-"
        ref = f"{r['vs_reference']:.1f}x" if "vs_reference" in r else "-"
        roof = f"{100 * r['tokens_per_s'] / r['roofline_tokens_per_s']:.0f}%"
        strat = "greedy" if not r["top_k"] else f"top-k {r['top_k']}"
        print(f"| {r['engine']} {r['dtype']} | {r['batch']} | {strat} | {vs} | {ttft} | {ref} | {roof} |")


if __name__ == "__main__":
    main(sys.argv[1])
