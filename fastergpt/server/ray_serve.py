"""`fastergpt serve --replicas N`: the server's app as Ray Serve replicas behind one endpoint.

Each replica is one `fastergpt.server.service.Service` (an engine with its own
continuous batching and `threads` cores) in a Ray actor; Ray Serve's proxy takes the
HTTP requests and routes each to a replica (power of two choices on the requests each
one is running), restarts replicas whose health check fails or whose process dies,
scales between bounds, and drains a replica before it stops. The app a replica serves is
`fastergpt.server.app.create_app`, the very one `fastergpt serve` runs alone, so
streaming, errors, `/v1/models` and `/metrics` behave the same (`/metrics` and
`/health` answer for the replica the request reached).

What Ray Serve guarantees when a replica dies (and what tests/test_ray_serve.py checks):
requests it was running fail (the proxy answers 500) and are not retried by Ray; new
requests go only to live replicas, and the controller starts a replacement. A client that
retries a failed non-streaming request (the `openai` client retries 5xx answers twice by
default) gets its answer from another replica; a stream cut mid-way cannot be resumed.

Also an application builder for Ray's own tools (a KubeRay RayService, `serve run`):
    serve run fastergpt.server.ray_serve:app_builder model_name_or_path=DIR replicas=2 threads=1
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import fields
from pathlib import Path
from typing import Optional

from ray import serve

from fastergpt.server.service import ServerOptions, Service, check_replica_resources

APP_NAME = "fastergpt"
# How long a stopping replica waits for its running requests (a long generation at a
# few tokens/s per row takes tens of seconds), and how often Ray checks a replica.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 60.0
HEALTH_CHECK_PERIOD_S = 5.0
HEALTH_CHECK_TIMEOUT_S = 30.0


@serve.ingress()
class FasterGPTReplica:
    """One replica: builds its Service in the replica's process (the model is loaded
    there, not pickled from the driver) and hands Ray its app."""

    def __init__(self, options: dict):
        self.service = Service(ServerOptions(**options))

    def __serve_build_asgi_app__(self):
        return self.service.app

    def check_health(self) -> None:
        if not self.service.alive():
            raise RuntimeError("the replica's scheduler loop has stopped")

    def __del__(self):
        service = getattr(self, "service", None)
        if service is not None:
            service.close()


def deployment(options: ServerOptions, replicas: int = 1, max_replicas: Optional[int] = None):
    """The bound application: `replicas` replicas (with `max_replicas`, autoscaled between
    the two on the requests each one runs), each reserving `options.threads` CPUs (and one
    GPU with `options.device == "gpu"`, so Ray places each replica on a GPU of its own)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    if max_replicas is not None and max_replicas < replicas:
        raise ValueError(f"max_replicas ({max_replicas}) must be >= replicas ({replicas})")
    if options.threads < 1:
        raise ValueError(f"threads must be >= 1 for a replica (its CPU reservation), got {options.threads}")
    config = dict(
        name=APP_NAME,
        ray_actor_options={"num_cpus": options.threads,
                           **({"num_gpus": 1} if options.device == "gpu" else {})},
        # Ray's default (5) would starve the continuous batch: let a replica hold what its
        # batch and queue hold; past that it answers 429 as the single server does.
        max_ongoing_requests=options.max_batch + options.max_queue,
        health_check_period_s=HEALTH_CHECK_PERIOD_S,
        health_check_timeout_s=HEALTH_CHECK_TIMEOUT_S,
        graceful_shutdown_wait_loop_s=1.0,
        graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_TIMEOUT_S,
    )
    if max_replicas is not None and max_replicas > replicas:
        config["autoscaling_config"] = {"min_replicas": replicas, "initial_replicas": replicas,
                                        "max_replicas": max_replicas,
                                        "target_ongoing_requests": options.max_batch}
    else:
        config["num_replicas"] = replicas
    return serve.deployment(FasterGPTReplica).options(**config).bind(options.to_dict())


def app_builder(args: dict):
    """For Ray's tools: `serve run fastergpt.server.ray_serve:app_builder key=value ...` with
    the ServerOptions fields plus `replicas` and `max_replicas`."""
    args = dict(args)
    replicas = int(args.pop("replicas", 1))
    max_replicas = args.pop("max_replicas", None)
    known = {f.name: f.type for f in fields(ServerOptions)}
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; expected {sorted(known)} or replicas, max_replicas")
    ints = {"max_batch", "max_queue", "max_positions", "threads"}
    options = ServerOptions(**{k: int(v) if k in ints and v is not None else v for k, v in args.items()})
    if options.threads == 0:
        options.threads = 1
    return deployment(options, replicas, None if max_replicas is None else int(max_replicas))


def connect(address: Optional[str]) -> bool:
    """Joins the Ray cluster at `address` ("auto": the one running on this machine), or
    with no address the local instance if one runs, else starts one. Returns whether this
    process started it (and so stops it at the end)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reporting to the network
    if address is None:
        try:
            ray.init(address="auto", logging_level="warning", log_to_driver=False)
            return False
        except ConnectionError:
            address = "local"
    if address != "local":
        ray.init(address=address, logging_level="warning", log_to_driver=False)
        return False
    # A new local instance, on the loopback address (a one-machine instance needs no other):
    # its workers must import this checkout's fastergpt, whether or not it is installed.
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
             logging_level="warning", log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    return True


def check_cluster(options: ServerOptions, replicas: int, this_machine: bool) -> None:
    """Refuses, with a ValueError naming the numbers, a deployment the connected cluster
    cannot place: `replicas` x `threads` CPUs, and a GPU per replica with device gpu. On an
    instance this process started (`this_machine`: its CPUs are this machine's cores), the
    threads must also divide the cores."""
    import ray

    have = ray.cluster_resources()
    check_replica_resources(options, replicas, int(have.get("CPU", 0)), int(have.get("GPU", 0)),
                            this_machine)


def run(options: ServerOptions, replicas: int, max_replicas: Optional[int], host: str, port: int,
        address: Optional[str], on_ready=print) -> int:
    """Deploys and serves until SIGINT or SIGTERM, then drains: the app is deleted (each
    replica finishes its running requests first, up to GRACEFUL_SHUTDOWN_TIMEOUT_S), and
    a Ray instance this process started is stopped."""
    import ray

    app = deployment(options, replicas, max_replicas)
    started = connect(address)
    try:  # against what the cluster joined (or started) has, not this machine's cores
        check_cluster(options, replicas, this_machine=started)
    except ValueError:
        if started:
            ray.shutdown()
        raise
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=APP_NAME, route_prefix="/")
        on_ready()
        stop.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        try:
            serve.delete(APP_NAME)  # drains the replicas; Ray's own actors go with the instance
        finally:
            if started:
                ray.shutdown()
    return 0
