"""fastergpt-export / export/export_model.py: model -> verified inference directory."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from fastergpt.cli.format_args import add_format_arguments

    p = argparse.ArgumentParser(prog="fastergpt-export", description=__doc__)
    p.add_argument("--model_name_or_path", default="default",
                   help="checkpoint dir (HF or PaddleNLP layout), exported dir, or 'default'")
    p.add_argument("--inference_model_dir", required=True, help="output directory")
    add_format_arguments(p, "float32", "weight format stored in the directory (default float32)")
    p.add_argument("--format", default="pir", choices=["pir", "legacy"],
                   help="PIR model.json (default) or legacy model.pdmodel")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.add_argument("--no_verify", action="store_true", help="skip the predictor check")
    args = p.parse_args(argv)
    from fastergpt.export import export_model

    try:
        export_model(args.model_name_or_path, args.inference_model_dir, dtype=args.dtype,
                     vocab_dtype=args.vocab_dtype, fmt=args.format, overwrite=args.overwrite, verify=not args.no_verify)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
