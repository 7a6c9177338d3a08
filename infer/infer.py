#!/usr/bin/env python
"""Thin command line; the logic is fastergpt.cli.infer (also installed as fastergpt-infer)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastergpt.cli.infer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
