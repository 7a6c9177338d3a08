"""Command lines (thin: argument parsing and printing over the package's functions)."""
