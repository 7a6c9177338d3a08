"""FASTERGPT_PROFILE=1: the engine's per-op wall-time table (csrc/core/op_profile.h).

It must count exactly the ops the decoder runs: for P prompt tokens and N new greedy
tokens of an L-layer model, each layer op runs once per layer on 1 row for each of the
N - 1 later steps; in the prompt pass the first L - 1 layers run on the prompt's P rows,
and the last computes Q/K/V and stores K/V for the P rows, then runs on the last row
alone (only its logits are wanted); the LM head runs on 1 row N times. Off, nothing is
printed.
"""
import re

import pytest

from layouts import run_python

PROMPT, NEW, LAYERS = 20, 8, 4  # the default model has 4 layers

SCRIPT = f"""
import numpy as np
from fastergpt import Engine
e = Engine.from_pretrained("default")
e.generate(np.arange(1, {PROMPT + 1})[None], max_new_tokens={NEW}, eos_token_id=-1,
           decode_strategy="greedy_search")
"""


def _table(stderr: str) -> dict:
    """(op, rows) -> calls, from the table's lines."""
    rows = {}
    for line in stderr.splitlines():
        m = re.match(r"^(\w+)\s+(\d+(?:-\d+)?)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)%$", line)
        if m:
            assert float(m.group(4)) >= 0 and float(m.group(5)) >= 0
            rows[(m.group(1), m.group(2))] = int(m.group(3))
    return rows


def test_profile_counts_every_op(monkeypatch):
    monkeypatch.setenv("FASTERGPT_PROFILE", "1")  # run_python passes this environment on
    proc = run_python(["-c", SCRIPT])
    assert proc.returncode == 0, proc.stderr
    assert "fastergpt op profile (FASTERGPT_PROFILE)" in proc.stderr
    table = _table(proc.stderr)
    prompt_rows = "17-32"  # 20 rows: up to the next power of two
    assert table[("qkv", "1")] == LAYERS * (NEW - 1), table
    assert table[("qkv", prompt_rows)] == LAYERS, table
    assert table[("store_kv", prompt_rows)] == 1 and ("store_kv", "1") not in table, table
    for op in ("attention", "attn_out", "fc", "proj"):
        assert table[(op, "1")] == LAYERS * (NEW - 1) + 1, (op, table)
        assert table[(op, prompt_rows)] == LAYERS - 1, (op, table)
    # Two norms per layer per pass (the last layer's second on the prompt's last row), and
    # the final one before the LM head (1 row each time).
    assert table[("norm", "1")] == 2 * LAYERS * (NEW - 1) + 1 + NEW, table
    assert table[("norm", prompt_rows)] == 2 * LAYERS - 1, table
    assert table[("embed", "1")] == NEW - 1 and table[("embed", prompt_rows)] == 1, table
    assert table[("lm_head", "1")] == NEW, table
    assert ("rotary", "1") not in table and ("all_reduce", "1") not in table  # GPT-2, one shard


@pytest.mark.parametrize("value", [None, "0", ""])
def test_profile_off_by_default(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("FASTERGPT_PROFILE", raising=False)
    else:
        monkeypatch.setenv("FASTERGPT_PROFILE", value)
    proc = run_python(["-c", SCRIPT])
    assert proc.returncode == 0, proc.stderr
    assert "op profile" not in proc.stderr
