"""`fastergpt settings`: the generation settings every front end takes (the engine's
table: name, kind, default, help), as text or --json."""
from __future__ import annotations

import argparse
import json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastergpt settings", description=__doc__)
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    args = p.parse_args(argv)
    from fastergpt.settings import setting_table

    rows = setting_table()
    if args.json:
        print(json.dumps([{"name": s.name, "kind": s.kind, "default": s.default, "help": s.help,
                           "choices": list(s.choices)} for s in rows], indent=1))
        return 0
    for s in rows:
        kind = "|".join(dict.fromkeys(s.choices)) if s.kind == "choice" else s.kind
        print(f"{s.name:22} {kind:22} default {s.default!s:14} {s.help}")
    return 0
