"""Generation settings as the engine takes them: one place that checks the Python
values and fills defaults, shared by FasterGPT, Engine and Predictor. Range
checks (top_p in (0, 1], ...) stay in the engine, which every path reaches."""
from __future__ import annotations

from typing import Optional

import numpy as np

DECODE_STRATEGIES = {"greedy_search": 0, "greedy": 0, "sampling": 1}

# Runtime settings in the operator's input order, with their dtypes.
SETTING_NAMES = (
    ("max_new_tokens", "int64"), ("min_length", "int64"), ("top_k", "int64"),
    ("top_p", "float32"), ("temperature", "float32"), ("repetition_penalty", "float32"),
    ("eos_token_id", "int64"), ("pad_token_id", "int64"), ("seed", "int64"),
    ("decode_strategy", "int64"), ("num_return_sequences", "int64"), ("num_threads", "int64"),
)


def _number(value, name: str, dtype: str):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if dtype == "int64":
        if not (isinstance(value, (int, np.integer)) or float(value).is_integer()):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


def resolve_settings(max_new_tokens=20, decode_strategy: str = "greedy_search", top_k=0,
                     top_p=1.0, temperature=1.0, repetition_penalty=1.0, min_length=0,
                     eos_token_id: Optional[int] = None, pad_token_id: Optional[int] = None,
                     num_return_sequences=1, seed: Optional[int] = None,
                     num_threads=0, config=None) -> dict:
    """{name: int or float} for every entry of SETTING_NAMES. None ids fall back to
    the model config's (when given), else mean "none" (-1 for the engine); seed
    None draws a random seed."""
    if config is not None:
        eos_token_id = config.eos_token_id if eos_token_id is None else eos_token_id
        pad_token_id = config.pad_token_id if pad_token_id is None else pad_token_id
    if decode_strategy not in DECODE_STRATEGIES:
        raise ValueError(f"decode_strategy must be one of {sorted(DECODE_STRATEGIES)}, "
                         f"got {decode_strategy!r}")
    if seed is None:
        seed = int(np.random.randint(0, 2**62))
    raw = {
        "max_new_tokens": max_new_tokens, "min_length": min_length, "top_k": top_k,
        "top_p": top_p, "temperature": temperature, "repetition_penalty": repetition_penalty,
        "eos_token_id": -1 if eos_token_id is None else eos_token_id,
        "pad_token_id": -1 if pad_token_id is None else pad_token_id,
        "seed": seed, "decode_strategy": DECODE_STRATEGIES[decode_strategy],
        "num_return_sequences": num_return_sequences, "num_threads": num_threads,
    }
    return {name: _number(raw[name], name, dtype) for name, dtype in SETTING_NAMES}


def check_int_array(x, name: str) -> np.ndarray:
    """A 2-D int64 array from an integer array-like; floats are refused, not truncated."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: dtype must be an integer type, got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: must be 2-D [batch, length], got shape {list(arr.shape)}")
    return arr.astype(np.int64)
