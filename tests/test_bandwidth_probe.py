"""The roofline of bench_generate and bench_kernels: the read-bandwidth probe
(csrc/cpu/bandwidth_cpu.cc), which reads its buffer as 1, 2, 4 and 8 streams per thread
and returns the best, a finite figure in GB/s at any size and thread count; and the KV
cache bytes a decoding step reads, which bench_generate's second roofline counts."""
import math

import pytest

from fastergpt.ops import engine_module


@pytest.mark.parametrize("megabytes,threads", [(64, 1), (64, 2), (0, 2), (3, 3)])
def test_probe_reads_at_a_plausible_rate(megabytes, threads):
    # 0 MB: the probe's floor of 64K floats; 3 threads over 3 MB: shares that are not a
    # multiple of the streams' pieces.
    gb_s = engine_module().measure_read_bandwidth(megabytes, threads, 1)
    assert math.isfinite(gb_s)
    # Any machine that runs the suite reads memory faster than 0.1 GB/s; no memory reads
    # 10 TB/s (a figure that high would mean the reads were skipped).
    assert 0.1 < gb_s < 10_000


def test_kv_cache_bytes_in_the_roofline(tmp_path, monkeypatch):
    # bench_generate's roofline with the KV cache: a batch-1 step over p + i positions reads
    # layers x (K + V) x kv width x element bytes; the mean over n new tokens is at p + n/2.
    import argparse
    import json
    import os
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    from bench_generate import kv_bytes_per_token

    engine = tmp_path / "fastergpt_int8"
    engine.mkdir()

    def write(model):  # the packed engine's config, its "model" in the engine's names
        (engine / "engine_config.json").write_text(json.dumps({"model": model}))

    write(dict(n_layer=12, n_embd=768, n_head=12))
    args = argparse.Namespace(prompt=32, new_tokens=64, kv_cache_dtype="float32")
    assert kv_bytes_per_token(str(tmp_path), "int8", args) == 12 * 2 * 768 * 4 * 64
    # Grouped-query attention reads its KV heads only (of head_dim, where a family sets it
    # apart from n_embd / n_head); a float16 cache half the bytes.
    write(dict(n_layer=12, n_embd=768, n_head=12, n_kv_head=4, head_dim=80))
    args.kv_cache_dtype = "float16"
    assert kv_bytes_per_token(str(tmp_path), "int8", args) == 12 * 2 * 4 * 80 * 2 * 64
