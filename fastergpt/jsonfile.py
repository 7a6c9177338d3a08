"""Reading a JSON file that came from outside (a model directory): every way it can be
bad (missing, unreadable, not UTF-8, not JSON, nested past the parser's recursion
limit, not an object) becomes one error that names the file."""
from __future__ import annotations

import json
from pathlib import Path


def read_json_object(path: Path, error: type = ValueError) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except RecursionError:
        raise error(f"{path} is not valid JSON: nested too deeply") from None
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise error(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise error(f"{path} does not hold a JSON object (it holds a {type(data).__name__})")
    return data
