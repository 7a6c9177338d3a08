#!/usr/bin/env python
"""Thin command line; the logic is fastergpt.cli.export (also installed as fastergpt-export)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastergpt.cli.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
