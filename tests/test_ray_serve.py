"""`fastergpt serve --replicas 2`: the server's app as 2 Ray Serve replicas (1 thread each)
of a local Ray instance on 127.0.0.1, talked to with the official `openai` client.

Completions and streams equal the engine alone; 16 concurrent greedy requests each
return what it returns alone and both replicas serve some; the endpoints and errors are
the single server's; a replica killed mid-load loses no request that the client retries
(Ray Serve fails the requests the dead replica was running, routes the retries to the
live one and starts a replacement); SIGTERM drains a running stream before the server
exits. Marked `ray` (`-m "not ray"` leaves them out of a quick run); they skip where Ray
Serve is not installed (pip install -r requirements-ray.txt).
"""
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai")

from test_server import client, free_port, post  # noqa: E402  (the single server's helpers)

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
REPLICA = "x-fastergpt-replica"


def start_replicas(model_dir, *args, timeout=240):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "fastergpt", "serve", "--model_name_or_path",
                             str(model_dir), "--port", str(port), "--ray_address", "local",
                             *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            time.sleep(0.5)
            raise RuntimeError("".join(lines))
        if any(line.startswith("fastergpt serve:") for line in lines):
            return proc, url, lines
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("the replicas did not start:\n" + "".join(lines))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model slow enough (8 layers x 384 wide, ~100 tokens/s on one thread) that
    requests are still running when a replica is killed or the server is stopped."""
    from layouts import tokenizer_model, write_hf_numpy, write_tokenizer

    model = tokenizer_model(seed=11, n_positions=512, n_embd=384, n_layer=8, n_head=6)
    return write_tokenizer(write_hf_numpy(tmp_path_factory.mktemp("replicated"), model))


@pytest.fixture(scope="module")
def server(model_dir):
    proc, url, lines = start_replicas(model_dir, "--replicas", 2, "--threads", 1, "--max_batch", 8,
                                      "--model_name", "tiny")
    yield url, proc, lines
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def reference(model_dir):
    from fastergpt import Engine
    from fastergpt.tokenizer import Tokenizer

    engine, tok = Engine.from_pretrained(model_dir), Tokenizer.from_dir(model_dir)

    def run(prompt, max_tokens):
        ids, mask = tok.encode_batch([prompt])
        out = engine.generate(ids, mask, max_new_tokens=max_tokens, eos_token_id=tok.eos_token_id)
        return tok.decode(out["ids"][0][:out["lengths"][0]])
    return run


def cpu_seconds(pid):
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def completion(c, prompt, max_tokens):
    """(text, the replica that answered)."""
    raw = c.completions.with_raw_response.create(model="tiny", prompt=prompt, max_tokens=max_tokens,
                                                 temperature=0)
    return raw.parse().choices[0].text, raw.headers[REPLICA]


def test_completions_and_streams_equal_the_engine_alone(server, reference):
    url, _, _ = server
    c = client(url)
    text, _ = completion(c, "hello world", 12)
    assert text == reference("hello world", 12)
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="tiny", prompt="hello world", max_tokens=12, temperature=0, stream=True))
    assert streamed == text
    assert [m.id for m in c.models.list().data] == ["tiny"]


def test_16_concurrent_requests_return_what_each_returns_alone_from_both_replicas(server, reference):
    url, _, _ = server
    c = client(url)
    prompts = [" ".join(["hello"] * (1 + q % 5)) + f" {q}" for q in range(16)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda p: completion(c, p, 24), prompts))
    assert [text for text, _ in results] == [reference(p, 24) for p in prompts]
    assert len({replica for _, replica in results}) == 2, results


def test_the_endpoints_and_errors_are_the_single_servers(server):
    url, _, _ = server
    status, body = post(url, "/v1/completions", {"prompt": "hi", "max_tokens": 0})
    assert status == 400 and body["error"]["param"] == "max_tokens"
    status, body = post(url, "/v1/completions", {"prompt": "hi", "bogus": 1})
    assert status == 400 and "unknown field" in body["error"]["message"]
    status, body = post(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 400 and "chat template" in body["error"]["message"]
    with urllib.request.urlopen(url + "/health", timeout=30) as r:
        assert json.loads(r.read()) == {"status": "ok"} and r.headers[REPLICA]
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        assert "fastergpt_requests_total" in r.read().decode()


def test_a_replica_killed_mid_load_loses_no_retried_request(server, reference):
    import httpx

    url, _, _ = server
    failed = []  # the answers Ray gave for the requests the dead replica ran
    hook = {"response": [lambda r: failed.append(r) if r.status_code >= 500 else None]}
    c = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=5,
                      http_client=httpx.Client(event_hooks=hook, timeout=120))
    prompts = [f"the function {q}" for q in range(16)]
    want = [reference(p, 400) for p in prompts]  # 8 rows x 400 tokens: seconds on one thread
    seen = {completion(c, p, 1)[1] for p in prompts * 2}
    assert len(seen) == 2
    victim = sorted(seen)[0]
    pid = int(victim.split("@")[0])
    with ThreadPoolExecutor(16) as pool:
        idle = cpu_seconds(pid)
        futures = [pool.submit(completion, c, p, 400) for p in prompts]
        # Kill only once the victim is decoding its rows: a fixed sleep raced a fast host,
        # where the requests had finished before the kill.
        deadline = time.monotonic() + 60
        while cpu_seconds(pid) - idle < 0.3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(f.done() for f in futures)
        os.kill(pid, signal.SIGKILL)
        results = [f.result() for f in futures]
    assert [text for text, _ in results] == want
    assert failed and all(r.status_code == 500 for r in failed)  # requests were lost, then retried
    # The controller replaces the dead replica: two live ones answer again.
    deadline, replicas = time.monotonic() + 120, set()
    while time.monotonic() < deadline and len(replicas - {victim}) < 2:
        replicas.add(completion(c, "hello", 1)[1])
    assert len(replicas - {victim}) == 2, replicas


def test_sigterm_drains_a_running_stream_then_exits(server):
    url, proc, lines = server
    c = client(url)
    chunks, first = [], threading.Event()

    def read():
        for ch in c.completions.create(model="tiny", prompt="hello", max_tokens=400, temperature=0,
                                       stream=True):
            chunks.append(ch.choices[0])
            first.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(60)
    proc.send_signal(signal.SIGTERM)
    reader.join(120)
    assert proc.wait(timeout=120) == 0, "".join(lines)
    assert len([ch for ch in chunks if ch.text]) > 0 and chunks[-1].finish_reason == "length"
    assert sum(1 for ch in chunks if ch.finish_reason is None) == 400


@pytest.mark.parametrize("args, message", [
    (["--replicas", "0"], "--replicas must be >= 1"),
    (["--replicas", "2", "--max_replicas", "1"], "--max_replicas (1) must be >= --replicas (2)"),
    (["--replicas", "1", "--threads", str((os.cpu_count() or 1) + 1), "--ray_address", "local"],
     "does not divide"),
    (["--replicas", str((os.cpu_count() or 1) + 1), "--threads", "1", "--ray_address", "local"],
     "CPUs; this machine has"),
    (["--replicas", "1", "--model_name_or_path", "/nonexistent/model"], "/nonexistent/model"),
])
def test_bad_replica_flags_exit_2_naming_the_problem(args, message):
    r = subprocess.run([sys.executable, "-m", "fastergpt", "serve", *args], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_application_builder_for_rays_tools():
    from fastergpt.server.ray_serve import app_builder

    with pytest.raises(ValueError, match="unknown argument"):
        app_builder({"model": "default"})
    app = app_builder({"model_name_or_path": "default", "replicas": "2", "threads": "1"})
    assert type(app).__name__ == "Application"


def test_gpu_replicas_each_reserve_a_gpu():
    from fastergpt.server.ray_serve import app_builder

    def actor_options(**extra):
        args = {"model_name_or_path": "default", "replicas": "2", "threads": "1", **extra}
        return app_builder(args)._bound_deployment.ray_actor_options

    assert actor_options() == {"num_cpus": 1}
    assert actor_options(device="gpu") == {"num_cpus": 1, "num_gpus": 1}


def test_the_cluster_check_counts_what_the_cluster_has(monkeypatch):
    """Without --ray_address an instance already running is joined: the replicas are
    checked against its CPUs and GPUs, not this machine's cores."""
    import ray

    from fastergpt.server.ray_serve import check_cluster
    from fastergpt.server.service import ServerOptions

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 1.0})
    check_cluster(ServerOptions(threads=2), 4, this_machine=False)  # fits exactly
    check_cluster(ServerOptions(threads=1, device="gpu"), 1, this_machine=False)
    with pytest.raises(ValueError, match=r"--replicas 5 x --threads 2 need 10 CPUs; the Ray cluster has 8"):
        check_cluster(ServerOptions(threads=2), 5, this_machine=False)
    with pytest.raises(ValueError, match="does not divide this machine's 8 cores"):
        check_cluster(ServerOptions(threads=3), 1, this_machine=True)
    with pytest.raises(ValueError, match="need 2 GPUs; the Ray cluster has 1"):
        check_cluster(ServerOptions(threads=1, device="gpu"), 2, this_machine=False)
