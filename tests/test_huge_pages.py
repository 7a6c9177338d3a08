"""Weights on 2 MB pages (csrc/cpu/huge_pages.h): when a model binds its weights, the CPU
backend asks Linux to collapse the 2 MB regions that are mostly weights into huge pages,
in place. Checked here in /proc/self/smaps (the AnonHugePages of the mappings that hold
the weights) and in the engine's own count (huge_page_stats), for the NumPy module and for
the Paddle op, with the numbers unchanged, FASTERGPT_HUGE_PAGES=0 turning it off, and
weights shared with a forked parent left shared.

Each case runs in a fresh process: a process that ran other tests holds other huge pages.
"""
import json
import platform
import sys

import pytest

from layouts import run_python


def _thp_setting() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read()
    except OSError:
        return ""


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = platform.release().split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or "[never]" in _thp_setting() or not _thp_setting()
    or not _kernel_at_least(6, 1),
    reason="needs Linux 6.1+ (MADV_COLLAPSE) with transparent huge pages not set to never")

# What a process reports: the engine's count, the AnonHugePages of the mappings that hold
# the weights (summed once per mapping), and the first greedy tokens and logprobs.
PROBE = r"""
import json, re, sys
import numpy as np

def huge_kb_over(ranges):
    total, hit = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                lo, hi = int(m.group(1), 16), int(m.group(2), 16)
                hit = any(a < hi and lo < a + n for a, n in ranges)
            elif hit and line.startswith("AnonHugePages:"):
                total += int(line.split()[1])
    return total

front_end = sys.argv[1]
ids = np.array([[5, 17, 99, 3, 250, 42]])
kw = dict(max_new_tokens=6, eos_token_id=-1, decode_strategy="greedy_search")
if front_end == "engine":
    from fastergpt import Engine
    e = Engine.from_pretrained("default")
    out = e.generate(ids, return_logprobs=True, **kw)
    tokens, logprobs = out["ids"], out["logprobs"]
    ranges = [(a.ctypes.data, a.nbytes) for _, a in e._packed]
else:
    from fastergpt import FasterGPT
    m = FasterGPT.from_pretrained("default")
    out = m.generate(ids, **kw)
    tokens, logprobs = out.ids.numpy(), out.logprobs.numpy()
    ranges = [(t.data_ptr(), int(t.numel()) * t.element_size()) for t in m.packed_weights()]
from fastergpt.ops.loader import engine_module
print(json.dumps({"stats": engine_module().huge_page_stats(), "huge_kb": huge_kb_over(ranges),
                  "tokens": tokens.tolist(), "logprobs": logprobs.tolist()}))
"""


def _probe(monkeypatch, front_end: str, env_value=None) -> dict:
    if env_value is None:
        monkeypatch.delenv("FASTERGPT_HUGE_PAGES", raising=False)
    else:
        monkeypatch.setenv("FASTERGPT_HUGE_PAGES", env_value)
    proc = run_python(["-c", PROBE, front_end])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_engine_weights_sit_on_huge_pages_with_the_same_numbers(monkeypatch):
    on = _probe(monkeypatch, "engine")
    assert on["stats"]["off_reason"] is None
    # The default model's float32 weights are 17 MB in arrays of 4 MB and less.
    assert on["stats"]["asked_bytes"] >= 8 << 20, on["stats"]
    assert on["stats"]["huge_bytes"] >= 8 << 20, on["stats"]
    off = _probe(monkeypatch, "engine", "0")
    assert off["stats"] == {"asked_bytes": 0, "huge_bytes": 0, "shared_bytes": 0, "seconds": 0.0,
                            "off_reason": "FASTERGPT_HUGE_PAGES=0"}
    assert on["stats"]["seconds"] > 0
    # NumPy itself asks for 2 MB pages for its arrays of 4 MB and more (here the token
    # table): the engine's collapse adds the rest.
    assert on["huge_kb"] >= 8 * 1024 and on["huge_kb"] >= off["huge_kb"] + 4 * 1024, (on, off)
    assert on["tokens"] == off["tokens"] and on["logprobs"] == off["logprobs"]


def test_paddle_op_weights_sit_on_huge_pages_with_the_same_numbers(monkeypatch):
    # The Paddle op is a library of its own: its count is not the NumPy module's, so the
    # page size is read from smaps alone.
    on = _probe(monkeypatch, "paddle")
    off = _probe(monkeypatch, "paddle", "0")
    assert on["huge_kb"] >= 8 * 1024 and on["huge_kb"] >= off["huge_kb"] + 4 * 1024, (on, off)
    assert on["tokens"] == off["tokens"] and on["logprobs"] == off["logprobs"]


# A server that loads, then forks workers: the weights' pages are shared copy-on-write,
# and a collapse in a worker would give it a copy of its own. The parent loads without
# asking; the child binds the same arrays and must leave them shared.
FORK = r"""
import json, os, sys
import numpy as np
os.environ["FASTERGPT_HUGE_PAGES"] = "0"
from fastergpt import Engine
from fastergpt.ops.loader import engine_module
parent = Engine.from_pretrained("default")
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    del os.environ["FASTERGPT_HUGE_PAGES"]
    child = Engine(parent.config, dtype=parent.weight_format, packed=parent._packed)
    os.write(w, json.dumps(engine_module().huge_page_stats()).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(r, 4096).decode())
"""


def test_weights_shared_with_a_forked_parent_stay_shared(monkeypatch):
    monkeypatch.delenv("FASTERGPT_HUGE_PAGES", raising=False)
    proc = run_python(["-c", FORK])
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats["asked_bytes"] >= 8 << 20, stats
    assert stats["shared_bytes"] == stats["asked_bytes"] and stats["huge_bytes"] == 0, stats
