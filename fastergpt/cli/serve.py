"""fastergpt serve: an OpenAI-compatible HTTP server (completions, chat completions when
the tokenizer has a chat template, models, health, metrics, a page at /) over the
continuous batch: requests join the running batch at the next step.

With --replicas N (or --max_replicas, or --ray_address) the same app runs as Ray Serve
replicas behind one endpoint (pip install -r requirements-ray.txt): each replica is an
engine with its own continuous batch and --threads cores."""
from __future__ import annotations

import argparse
import os
import sys


def main(argv=None) -> int:
    from fastergpt.cli.format_args import add_format_arguments
    from fastergpt.settings import choice_names

    p = argparse.ArgumentParser(prog="fastergpt serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", default="default",
                   help="checkpoint dir (HF or PaddleNLP layout), exported dir, or 'default'")
    p.add_argument("--inference_model_dir", help="an exported directory (its packed weights)")
    add_format_arguments(p)
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"],
                   help="where the engine runs (gpu: the CUDA backend, float32/float16 weights)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max_batch", type=int, default=8, help="sequences decoded together (per replica)")
    p.add_argument("--max_queue", type=int, default=64,
                   help="requests waiting (per replica); more get 429")
    p.add_argument("--max_positions", type=int, help="context per sequence (default: the model's)")
    p.add_argument("--threads", type=int, default=0,
                   help="engine threads (per replica); 0 = all cores, or with replicas the "
                        "cores divided among the --replicas")
    p.add_argument("--kv_cache_dtype", default="float32", choices=choice_names("kv_cache_dtype"),
                   help="how the batch's KV cache stores keys and values (float16: half the "
                        "memory per sequence, and less to read per token)")
    p.add_argument("--matmul_precision", default="float32", choices=choice_names("matmul_precision"),
                   help="what float32/float16 weights multiply in (bfloat16: vdpbf16ps, on CPUs "
                        "with AVX-512 BF16; faster prompts, about bfloat16's rounding)")
    p.add_argument("--model_name", help="the model id the API reports (default: the path)")
    ray = p.add_argument_group("replicas (Ray Serve)")
    ray.add_argument("--replicas", type=int, help="replicas to run (autoscaling: the lower bound)")
    ray.add_argument("--max_replicas", type=int, help="autoscale up to this many replicas")
    ray.add_argument("--ray_address", help="the Ray cluster to join ('auto': the one on this machine; "
                                          "'local': always start a new one); default: the running "
                                          "local instance, else a new one")
    args = p.parse_args(argv)
    from fastergpt.pretrained import resolve_model_path
    from fastergpt.server.service import ServerOptions, Service

    options = ServerOptions(**{f: getattr(args, f) for f in ServerOptions.__dataclass_fields__})
    for name in ("max_batch", "max_queue"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    if args.threads < 0:
        print(f"error: --threads must be >= 0, got {args.threads}", file=sys.stderr)
        return 2
    if args.replicas is not None or args.max_replicas is not None or args.ray_address is not None:
        return serve_replicas(args, options)
    try:
        import uvicorn
    except ImportError:
        print("error: fastergpt serve needs fastapi and uvicorn (pip install -r requirements.txt)",
              file=sys.stderr)
        return 2
    try:
        resolve_model_path(options.inference_model_dir or options.model_name_or_path)
        service = Service(options)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"fastergpt serve: {service.model_name} on http://{args.host}:{args.port} "
          f"(max_batch {args.max_batch})", flush=True)
    uvicorn.run(service.app, host=args.host, port=args.port, log_level="warning")
    service.close()
    return 0


def serve_replicas(args, options) -> int:
    from fastergpt.pretrained import resolve_model_path

    replicas = 1 if args.replicas is None else args.replicas
    if replicas < 1:
        print(f"error: --replicas must be >= 1, got {replicas}", file=sys.stderr)
        return 2
    if args.max_replicas is not None and args.max_replicas < replicas:
        print(f"error: --max_replicas ({args.max_replicas}) must be >= --replicas ({replicas})",
              file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    if options.threads == 0:
        options.threads = max(1, cores // replicas)
    # A new local instance's CPUs are this machine's cores: refuse before starting Ray. A
    # cluster joined (an address, or without one an instance already running here) is
    # checked against its own resources once connected (ray_serve.check_cluster).
    if args.ray_address == "local":
        from fastergpt.server.service import check_replica_resources

        try:  # the GPUs are Ray's to count, once it runs
            check_replica_resources(options, replicas, cores, None, this_machine=True)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        from fastergpt.server import ray_serve
    except ImportError as e:
        print(f"error: --replicas needs Ray Serve (pip install -r requirements-ray.txt): {e}",
              file=sys.stderr)
        return 2
    try:
        resolve_model_path(options.inference_model_dir or options.model_name_or_path)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def ready():
        bound = f"{replicas}..{args.max_replicas}" if args.max_replicas else f"{replicas}"
        print(f"fastergpt serve: {options.model_name or options.model_name_or_path} on "
              f"http://{args.host}:{args.port} ({bound} Ray Serve replicas x {options.threads} "
              f"threads, max_batch {options.max_batch})", flush=True)

    try:
        return ray_serve.run(options, replicas, args.max_replicas, args.host, args.port,
                             args.ray_address, on_ready=ready)
    except (ValueError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
