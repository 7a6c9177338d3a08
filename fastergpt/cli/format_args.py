"""The weight-format flags every command that loads a model takes: --dtype and
--vocab_dtype, their choices read from the engine's format table."""
from __future__ import annotations

import argparse

VOCAB_DTYPE_HELP = ("format of the token table and LM head (default: the weight format's own; "
                    "int4 keeps them int8, and --vocab_dtype int4 reads fewer bytes per token "
                    "at some cost in quality); an exported dir keeps its own")


def add_format_arguments(parser: argparse.ArgumentParser, default=None,
                         dtype_help="weight format (default float32; an exported dir keeps its own)"):
    from fastergpt.quantize import format_names

    parser.add_argument("--dtype", default=default, choices=format_names(), help=dtype_help)
    parser.add_argument("--vocab_dtype", choices=format_names(), help=VOCAB_DTYPE_HELP)
