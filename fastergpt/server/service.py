"""One server replica, built from its options: the engine, its tokenizer, the
continuous-batching scheduler and the OpenAI-compatible app over them.

`fastergpt serve` runs one Service in its own process (uvicorn); `fastergpt serve
--replicas N` runs one per Ray Serve replica (fastergpt.server.ray_serve). Both build
it here, so there is one HTTP layer and one way to read the options.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass
class ServerOptions:
    """What one replica serves and how (the `fastergpt serve` flags of the same names)."""
    model_name_or_path: str = "default"
    inference_model_dir: Optional[str] = None
    dtype: Optional[str] = None
    vocab_dtype: Optional[str] = None
    device: str = "cpu"
    max_batch: int = 8
    max_queue: int = 64
    max_positions: Optional[int] = None
    threads: int = 0            # engine threads of this replica (0 = all cores)
    kv_cache_dtype: str = "float32"  # the batch's KV cache: float32, or float16 (half the memory)
    matmul_precision: str = "float32"  # float weights multiply in float32, or bfloat16 (AVX-512 BF16)
    model_name: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)


def check_replica_resources(options: ServerOptions, replicas: int, cpus: int,
                            gpus: Optional[int], this_machine: bool) -> None:
    """Refuses, with a ValueError naming the numbers, `replicas` replicas that `cpus` CPUs
    (and `gpus` GPUs with device gpu; None: not known yet) cannot hold, each reserving
    `options.threads` CPUs and one GPU. On this machine (`this_machine`: the CPUs are its
    cores) the threads must also divide the cores."""
    where = "this machine has" if this_machine else "the Ray cluster has"
    if this_machine and cpus % options.threads != 0:
        raise ValueError(f"--threads {options.threads} does not divide this machine's {cpus} cores "
                         "(each replica reserves its threads as CPUs)")
    if replicas * options.threads > cpus:
        raise ValueError(f"--replicas {replicas} x --threads {options.threads} need "
                         f"{replicas * options.threads} CPUs; {where} {cpus}")
    if options.device == "gpu" and gpus is not None and replicas > gpus:
        raise ValueError(f"--replicas {replicas} with --device gpu need {replicas} GPUs; {where} {gpus}")


def replica_id() -> str:
    """What the `x-fastergpt-replica` response header says: this process, on this host."""
    return f"{os.getpid()}@{socket.gethostname()}"


class Service:
    """Builds everything a replica runs; raises ValueError, OSError or RuntimeError with
    the reason when the model cannot be loaded."""

    def __init__(self, options: ServerOptions):
        from fastergpt.engine import Engine
        from fastergpt.pretrained import resolve_model_path
        from fastergpt.server.app import create_app
        from fastergpt.server.scheduler import Scheduler
        from fastergpt.tokenizer import Tokenizer

        self.options = options
        path = resolve_model_path(options.inference_model_dir or options.model_name_or_path)
        engine = Engine.from_pretrained(path, dtype=options.dtype, device=options.device,
                                       vocab_dtype=options.vocab_dtype)
        tokenizer = Tokenizer.from_dir(path)
        self.scheduler = Scheduler(engine, tokenizer, options.max_batch, options.max_queue,
                                   options.max_positions, options.threads, options.kv_cache_dtype,
                                   options.matmul_precision)
        default = options.model_name_or_path in (None, "", "default") and not options.inference_model_dir
        self.model_name = options.model_name or ("default" if default else str(path))
        self.app = create_app(self.scheduler, self.model_name, chat_template_of(path), replica_id())

    def alive(self) -> bool:
        """False once the scheduler's loop thread has died (the health check's answer)."""
        return self.scheduler.alive()

    def close(self) -> None:
        self.scheduler.close()


def chat_template_of(path) -> Optional[str]:
    """The chat template in the model directory's tokenizer_config.json, if any."""
    config = path / "tokenizer_config.json"
    if not config.is_file():
        return None
    try:
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    except (ValueError, AttributeError, RecursionError):
        return None
    return template if isinstance(template, str) else None
