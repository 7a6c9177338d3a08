"""fastergpt serve: an OpenAI-compatible HTTP server (completions, chat completions when
the tokenizer has a chat template, models, health, metrics, a page at /) over the
continuous batch: requests join the running batch at the next step."""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastergpt serve", description=__doc__)
    p.add_argument("--model_name_or_path", default="default",
                   help="checkpoint dir (HF or PaddleNLP layout), exported dir, or 'default'")
    p.add_argument("--inference_model_dir", help="an exported directory (its packed weights)")
    p.add_argument("--dtype", help="weight format (default float32; an export keeps its own)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max_batch", type=int, default=8, help="sequences decoded together")
    p.add_argument("--max_queue", type=int, default=64, help="requests waiting; more get 429")
    p.add_argument("--max_positions", type=int, help="context per sequence (default: the model's)")
    p.add_argument("--threads", type=int, default=0, help="engine threads (0 = all cores)")
    p.add_argument("--model_name", help="the model id the API reports (default: the path)")
    args = p.parse_args(argv)
    try:
        import uvicorn
    except ImportError:
        print("error: fastergpt serve needs fastapi and uvicorn (pip install -r requirements.txt)",
              file=sys.stderr)
        return 2
    from fastergpt.engine import Engine
    from fastergpt.pretrained import resolve_model_path
    from fastergpt.server.app import create_app
    from fastergpt.server.scheduler import Scheduler
    from fastergpt.tokenizer import Tokenizer

    try:
        path = resolve_model_path(args.inference_model_dir or args.model_name_or_path)
        engine = Engine.from_pretrained(path, dtype=args.dtype)
        tokenizer = Tokenizer.from_dir(path)
        scheduler = Scheduler(engine, tokenizer, args.max_batch, args.max_queue, args.max_positions,
                              args.threads)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    template = None
    config = path / "tokenizer_config.json"
    if config.is_file():
        try:
            template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (ValueError, AttributeError):
            template = None
    name = args.model_name or ("default" if args.model_name_or_path in (None, "", "default")
                               and not args.inference_model_dir else str(path))
    app = create_app(scheduler, name, template if isinstance(template, str) else None)
    print(f"fastergpt serve: {name} on http://{args.host}:{args.port} (max_batch {args.max_batch})",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    scheduler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
