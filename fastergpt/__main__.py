"""`python -m fastergpt <command>` / `fastergpt <command>`: infer, export, perplexity, settings, serve, quantize."""
import sys

COMMANDS = {
    "infer": "fastergpt.cli.infer",
    "export": "fastergpt.cli.export",
    "perplexity": "fastergpt.cli.perplexity",
    "settings": "fastergpt.cli.settings",
    "serve": "fastergpt.cli.serve",
    "quantize": "fastergpt.cli.quantize",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: fastergpt {{{','.join(COMMANDS)}}} [options]  (--help after a command)",
              file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
