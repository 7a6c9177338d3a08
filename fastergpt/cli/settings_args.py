"""Command-line flags for the generation settings, derived from the engine's table:
`--<name>` for every setting (plus the spellings PaddleNLP's scripts used), so a
new setting is a flag of every command without touching them."""
from __future__ import annotations

import argparse

from fastergpt.settings import setting_table

# Older spellings kept for PaddleNLP users' scripts (and gpt_infer's, which match).
ALIASES = {"top_k": ["--topk"], "top_p": ["--topp"], "max_new_tokens": ["--max_length"],
           "num_threads": ["--threads"]}


def add_setting_arguments(parser: argparse.ArgumentParser, skip=()) -> None:
    group = parser.add_argument_group("generation settings (default: the model's)")
    for s in setting_table():
        if s.name in skip:
            continue
        flags = [f"--{s.name}"] + ALIASES.get(s.name, [])
        kwargs = {"dest": s.name, "default": None, "help": s.help}
        if s.kind == "choice":
            kwargs["choices"] = list(s.choices)
        else:
            kwargs["type"] = int if s.kind == "int" else float
        group.add_argument(*flags, **kwargs)


def settings_from_args(args: argparse.Namespace) -> dict:
    """{name: value} of the settings given on the command line."""
    return {s.name: getattr(args, s.name) for s in setting_table()
            if getattr(args, s.name, None) is not None}
