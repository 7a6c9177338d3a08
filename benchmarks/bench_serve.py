"""Load on `fastergpt serve`: N concurrent clients (default 1, 8, 32), each sending
greedy completions back to back, against the same server; and the same requests
served one at a time as the baseline. Prints requests/s, generated tokens/s, time to
first token (p50) and latency (p50, p99) per level, with the ratios the serving
issue asks for; writes JSON (and a PNG when matplotlib is installed).

    python benchmarks/bench_serve.py                 # GPT-2 small shape, random weights
    python benchmarks/bench_serve.py --layers 2 --requests 16   # smoke run
    python benchmarks/bench_serve.py --replica-sweep # Ray Serve: 1 and 2 replicas x 1 thread
                                                     # vs 1 replica x 2 threads, 32 clients
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_request(url, prompt, max_tokens):
    """(time to first token, latency, tokens) of one streamed greedy completion."""
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True}).encode()
    req = urllib.request.Request(url + "/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first, chunks = None, 0
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"][0].get("finish_reason") is None:
                chunks += 1
                if first is None:
                    first = time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0, chunks  # one chunk per token


def load(url, clients, requests, prompts, max_tokens):
    """`clients` threads send `requests` in all, back to back; request i has prompt
    prompts[i % len] and max_tokens[i % len]."""
    results, lock, next_i = [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= requests:
                return
            r = one_request(url, prompts[i % len(prompts)], max_tokens[i % len(max_tokens)])
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft = sorted(r[0] for r in results)
    lat = sorted(r[1] for r in results)
    tokens = sum(r[2] for r in results)

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(p * len(xs)))]
    return {"clients": clients, "requests": len(results), "requests_per_s": len(results) / wall,
            "tokens_per_s": tokens / wall, "ttft_p50_ms": 1e3 * pct(ttft, 0.5),
            "latency_p50_ms": 1e3 * pct(lat, 0.5), "latency_p99_ms": 1e3 * pct(lat, 0.99)}


def plot(json_path: str) -> None:
    """The PNG next to a results JSON: tokens/s and TTFT p50 per level."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    with open(json_path) as f:
        data = json.load(f)
    rows = data["results"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = [str(r["clients"]) for r in rows]
    left.bar(labels, [r["tokens_per_s"] for r in rows])
    left.set_xlabel("concurrent clients")
    left.set_ylabel("generated tokens/s")
    right.bar(labels, [r["ttft_p50_ms"] for r in rows], color="tab:orange")
    right.set_xlabel("concurrent clients")
    right.set_ylabel("time to first token p50 (ms)")
    fig.suptitle(f"fastergpt serve, GPT-2 small shape, 2 threads, {data.get('cpu', '?')}")
    fig.tight_layout()
    out = json_path.replace(".json", ".png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=64, help="requests per level")
    ap.add_argument("--max-tokens", type=int, default=32,
                    help="new tokens per request: on average; see --same-length")
    ap.add_argument("--same-length", action="store_true",
                    help="every request generates exactly --max-tokens (default: 0.5x to 1.5x of "
                         "it, as requests of real traffic differ; equal lengths keep closed-loop "
                         "clients in lockstep, so all of them join in the same step)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--work-dir", default=os.path.join(HERE, "results", "work"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_serve.json"))
    ap.add_argument("--plot", metavar="JSON", help="only draw the PNG of an earlier run's JSON")
    ap.add_argument("--replica-sweep", action="store_true",
                    help="Ray Serve replicas (pip install -r requirements-ray.txt) at the last --clients "
                         "level: 1 and 2 replicas x 1 thread, 1 replica x 2 threads, and the single server")
    a = ap.parse_args()
    if a.plot:
        return plot(a.plot)

    from engines.prepare import prepare
    from fastergpt.machine import cpu_model

    work = os.path.join(a.work_dir, f"small_{a.layers}l_50257v")
    prepare(work, a.layers, 768, 12, 50257, {"fastergpt-numpy"}, log=lambda s: print("  " + s))
    if a.replica_sweep:
        return replica_sweep(a, os.path.join(work, "hf"))
    proc, url = start_server(os.path.join(work, "hf"), a.threads, a.max_batch)
    try:
        prompts, lengths = workload(a)
        one_request(url, prompts[0], 4)  # warm-up
        print(f"fastergpt serve, GPT-2 small shape ({a.layers} layers, random weights), "
              f"{'/'.join(map(str, lengths))} new tokens per request, greedy, {a.threads} threads, "
              f"max_batch {a.max_batch}; CPU {cpu_model()}")
        rows = []
        for clients in a.clients:
            r = load(url, clients, a.requests, prompts, lengths)
            rows.append(r)
            print(f"  {clients:3d} client(s): {r['requests_per_s']:6.2f} req/s, {r['tokens_per_s']:7.1f} "
                  f"tok/s, TTFT p50 {r['ttft_p50_ms']:7.1f} ms, latency p50 {r['latency_p50_ms']:7.1f} "
                  f"p99 {r['latency_p99_ms']:7.1f} ms", flush=True)
        base = next((r for r in rows if r["clients"] == 1), rows[0])
        for r in rows:
            r["tokens_per_s_vs_one_at_a_time"] = r["tokens_per_s"] / base["tokens_per_s"]
            r["ttft_p50_vs_idle"] = r["ttft_p50_ms"] / base["ttft_p50_ms"]
        print("  ratios to one client at a time: " + "; ".join(
            f"{r['clients']} clients: {r['tokens_per_s_vs_one_at_a_time']:.1f}x tok/s, TTFT "
            f"{r['ttft_p50_vs_idle']:.1f}x" for r in rows))
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "cpu": cpu_model(), "results": rows}, f, indent=1)
        print(f"wrote {a.out}")
        plot(a.out)
    finally:
        stop_server(proc)


def workload(a):
    """Prompts of different lengths (ragged), so joins and leaves interleave, and output
    lengths 0.5x, 0.75x, 1x, 1.25x, 1.5x of --max-tokens (mean --max-tokens)."""
    prompts = [" ".join(["The function returns a new list"] * (1 + i % 6)) for i in range(16)]
    lengths = ([a.max_tokens] if a.same_length else
               [max(1, a.max_tokens * k // 4) for k in (2, 3, 4, 5, 6)])
    return prompts, lengths


def start_server(model, threads, max_batch, replicas=None, timeout=600):
    """`fastergpt serve` on a free port (with `replicas`: as Ray Serve replicas of a new
    local Ray instance); returns (process, url) once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "fastergpt", "serve", "--model_name_or_path", model, "--port", str(port),
           "--threads", str(threads), "--max_batch", str(max_batch), "--max_queue", "1024",
           "--max_positions", "256"]
    if replicas:
        cmd += ["--replicas", str(replicas), "--ray_address", "local"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=ROOT), start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError("the server did not start")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def replica_sweep(a, model):
    """At `--clients` (default 32) concurrent clients: Ray Serve with 1 replica x 1 thread, 2
    replicas x 1 thread and 1 replica x 2 threads, and the single-process server x 2 threads."""
    from fastergpt.machine import cpu_model

    clients = a.clients[-1]
    prompts, lengths = workload(a)
    print(f"fastergpt serve replica sweep, GPT-2 small shape ({a.layers} layers, random weights), "
          f"{clients} clients, {a.requests} requests, {'/'.join(map(str, lengths))} new tokens, greedy, "
          f"max_batch {a.max_batch} per replica; CPU {cpu_model()}", flush=True)
    rows = []
    for name, replicas, threads in (("ray 1 replica x 1 thread", 1, 1), ("ray 2 replicas x 1 thread", 2, 1),
                                    ("ray 1 replica x 2 threads", 1, 2), ("single process x 2 threads", None, 2)):
        proc, url = start_server(model, threads, a.max_batch, replicas)
        try:
            for p in prompts[:4]:
                one_request(url, p, 4)  # warm-up (both replicas, most likely)
            r = load(url, clients, a.requests, prompts, lengths)
        finally:
            stop_server(proc)
        r.update(setup=name, replicas=replicas or 0, threads=threads)
        rows.append(r)
        print(f"  {name:28s}: {r['tokens_per_s']:7.1f} tok/s, {r['requests_per_s']:6.2f} req/s, TTFT p50 "
              f"{r['ttft_p50_ms']:7.1f} ms, latency p50 {r['latency_p50_ms']:7.1f} ms", flush=True)
    base = rows[0]["tokens_per_s"]
    print("  tokens/s against 1 replica x 1 thread: " + "; ".join(
        f"{r['setup']}: {r['tokens_per_s'] / base:.2f}x" for r in rows))
    out = a.out.replace(".json", "_replicas.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"args": vars(a), "cpu": cpu_model(), "results": rows}, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
