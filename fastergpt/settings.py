"""Generation settings on the Python side, derived from the engine's one table.

The table (name, kind, default, range, help, choices) is declared once in C++
(`FGPT_SETTINGS`, csrc/core/generation_options.h) and read here through the
pybind11 module; nothing in Python lists the settings again. Every front end
(FasterGPT, Engine, Predictor, the CLIs) resolves a user's keyword arguments
with `resolve_settings` and hands the engine ONE value: a {name: number} dict
(`Engine`) or a float64 vector in table order (the Paddle op, an export).
Range checks stay in the engine, which every path reaches.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str          # "int", "float" or "choice"
    default: object    # int / float, or the choice's canonical name
    help: str
    choices: dict      # choice name -> index (canonical names first); {} for other kinds

    def to_number(self, value) -> float:
        """The engine's number for a Python value (a choice's name -> its index)."""
        if self.kind == "choice":
            if isinstance(value, (bool, np.bool_)) and str(bool(value)).lower() in self.choices:
                value = str(bool(value)).lower()  # early_stopping=True, as transformers takes it
            if isinstance(value, str):
                if value not in self.choices:
                    raise ValueError(f"{self.name} must be one of {sorted(self.choices)}, got {value!r}")
                return float(self.choices[value])
            raise ValueError(f"{self.name}: expected one of {sorted(self.choices)}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{self.name}: expected a number, got {value!r}")
        if self.kind == "int" and not (isinstance(value, (int, np.integer))
                                       or float(value).is_integer()):
            raise ValueError(f"{self.name}: expected an integer, got {value!r}")
        return float(value)

    def from_number(self, number: float):
        if self.kind == "choice":
            return next(n for n, i in self.choices.items() if i == int(number))
        return int(number) if self.kind == "int" else float(number)


@lru_cache(maxsize=None)
def setting_table() -> tuple:
    """Every setting, in the engine's order (the order of a settings vector)."""
    from fastergpt.ops import engine_module

    rows = []
    for r in engine_module().settings_table():
        s = Setting(r["name"], r["kind"], None, r["help"], dict(r["choices"]))
        default = s.from_number(r["default"])
        rows.append(Setting(s.name, s.kind, default, s.help, s.choices))
    return tuple(rows)


def setting_names() -> tuple:
    return tuple(s.name for s in setting_table())


def _by_name() -> dict:
    return {s.name: s for s in setting_table()}


# The ids fall back to the model config's; the seed is drawn when not given.
_FROM_CONFIG = ("eos_token_id", "pad_token_id")


def resolve_settings(config=None, **given) -> dict:
    """{name: python value} for every setting: `given` over the defaults. None ids
    fall back to the model config's (when given), else mean "none" (-1); seed
    None draws a random seed. Unknown names raise ValueError naming them."""
    table = _by_name()
    unknown = sorted(set(given) - set(table))
    if unknown:
        raise ValueError(f"unknown generation setting(s) {unknown}; known: {sorted(table)}")
    values = {name: s.default for name, s in table.items()}
    values.update({k: v for k, v in given.items() if v is not None})
    if _asks_for_beam_search(given):
        values["decode_strategy"] = "beam_search"
    for name in _FROM_CONFIG:
        if given.get(name) is None:
            from_config = getattr(config, name, None) if config is not None else None
            values[name] = -1 if from_config is None else from_config
    if given.get("seed") is None:
        values["seed"] = int(np.random.randint(0, 2**53, dtype=np.int64))
    for name, value in values.items():
        table[name].to_number(value)  # type checks, naming the setting
    return values


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _asks_for_beam_search(given: dict) -> bool:
    """decode_strategy="beam_search", or num_beams > 1 with no decode_strategy (as in
    transformers)."""
    strategy = given.get("decode_strategy")
    return strategy == "beam_search" or (
        strategy is None and _is_number(given.get("num_beams")) and given["num_beams"] > 1)


def only_for(strategy: str) -> tuple:
    """The settings only `strategy` reads ("sampling", "beam search"): the table's
    help says so first."""
    return tuple(s.name for s in setting_table() if s.help.startswith(strategy + ": "))


def over_defaults(defaults: dict, given: dict) -> dict:
    """A model's default settings (an export's config.json, a checkpoint's
    generation_config.json) overridden by what the caller gave. When the caller
    asks for beam search (decode_strategy, or num_beams > 1), the defaults'
    sampling settings are dropped rather than refused: beam search does not use
    them, and they were not the caller's choice."""
    given = {k: v for k, v in given.items() if v is not None}
    merged = dict(defaults)
    merged.update(given)
    if _asks_for_beam_search(given):
        merged["decode_strategy"] = "beam_search"
        table = _by_name()
        for name in only_for("sampling"):
            if name not in given:
                merged[name] = table[name].default
    return merged


def choice_names(name: str) -> list:
    """The names a Choice setting accepts, in the order of their values (a command line's
    choices)."""
    row = _by_name()[name]
    return sorted(row.choices, key=row.choices.get)


def settings_numbers(values: dict) -> dict:
    """{name: float} as the engine takes them (a choice becomes its index)."""
    table = _by_name()
    return {name: table[name].to_number(v) for name, v in values.items()}


def settings_vector(values: dict, layout: Optional[Sequence[str]] = None) -> np.ndarray:
    """The float64 vector of `values` in `layout` order (default: the engine's
    table), as the Paddle op and an exported graph take it. A setting the layout
    lacks must hold its default, else ValueError (the export predates it)."""
    layout = list(layout) if layout is not None else list(setting_names())
    numbers = settings_numbers(values)
    newer = [n for n in layout if n not in numbers]
    if newer:
        raise ValueError(f"the exported model takes setting(s) {newer} that this fastergpt does "
                         "not know; use the fastergpt version that exported it")
    table = _by_name()
    missing = [n for n in numbers if n not in layout
               and numbers[n] != table[n].to_number(table[n].default)]
    if missing:
        raise ValueError(f"setting(s) {missing} are not inputs of this exported model (it was "
                         "exported by an older fastergpt); re-export it to use them")
    return np.array([numbers[n] for n in layout], dtype=np.float64)


def check_int_array(x, name: str) -> np.ndarray:
    """A 2-D int64 array from an integer array-like; floats are refused, not truncated, and
    so are unsigned values past int64's range (a cast would wrap them)."""
    if x is None:
        raise ValueError(f"{name}: got None, not an integer array [batch, length]")
    try:
        arr = np.asarray(x)
    except ValueError:  # nested sequences of different lengths
        raise ValueError(f"{name}: its rows have different lengths; pad them on the left to "
                         "one length and pass an attention_mask") from None
    if arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: dtype must be an integer type, got {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: must be 2-D [batch, length], got shape {list(arr.shape)}")
    if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:
        at = np.unravel_index(int(arr.argmax()), arr.shape)
        raise ValueError(f"{name}: value {int(arr.max())} at {list(map(int, at))} is past int64's range")
    return arr.astype(np.int64)
