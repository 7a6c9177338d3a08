"""`fastergpt serve`: a real server on 127.0.0.1 (a free port), talked to with the
official `openai` client and with raw HTTP for the errors. 32 concurrent greedy
requests return what each returns alone; a client that hangs up frees its rows; a
full queue answers 429; a bad request answers 400 and the server keeps serving."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


PIDS = {}  # server url -> its process id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model_dir, *args):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "fastergpt", "serve", "--model_name_or_path",
                             str(model_dir), "--port", str(port), "--threads", "1", *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(proc.stdout.read())
        try:
            urllib.request.urlopen(url + "/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from layouts import tokenizer_model, write_hf_numpy, write_tokenizer

    d = write_tokenizer(write_hf_numpy(tmp_path_factory.mktemp("served"), tokenizer_model(seed=8, n_positions=64)))
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))
    return d


@pytest.fixture(scope="module")
def server(model_dir):
    proc, url = start(model_dir, "--max_batch", 8, "--max_queue", 64, "--model_name", "tiny")
    PIDS[url] = proc.pid
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def reference(model_dir):
    """What the engine gives a prompt alone (greedy)."""
    from fastergpt import Engine
    from fastergpt.tokenizer import Tokenizer

    engine, tok = Engine.from_pretrained(model_dir), Tokenizer.from_dir(model_dir)

    def run(prompt, max_tokens, template=False):
        ids, mask = tok.encode_batch([prompt])
        out = engine.generate(ids, mask, max_new_tokens=max_tokens, eos_token_id=tok.eos_token_id)
        return tok.decode(out["ids"][0][:out["lengths"][0]])
    return run


def post(url, path, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="none")


def test_completions_with_the_openai_client(server, reference):
    c = client(server)
    out = c.completions.create(model="tiny", prompt="hello world", max_tokens=12, temperature=0)
    assert out.choices[0].text == reference("hello world", 12)
    assert out.usage.completion_tokens == 12 and out.choices[0].finish_reason == "length"
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="tiny", prompt="hello world", max_tokens=12, temperature=0, stream=True))
    assert streamed == out.choices[0].text
    # n choices with a seed: reproducible, and the list form of prompt.
    a = c.completions.create(model="tiny", prompt=["café", "the function"], max_tokens=6, n=2, seed=3,
                             temperature=0.9)
    b = c.completions.create(model="tiny", prompt=["café", "the function"], max_tokens=6, n=2, seed=3,
                             temperature=0.9)
    assert [x.text for x in a.choices] == [x.text for x in b.choices] and len(a.choices) == 4
    # A stop string is not returned and ends the choice.
    full = reference("hello world", 12)
    stop = full[3:6]
    cut = c.completions.create(model="tiny", prompt="hello world", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[:full.find(stop)] and cut.choices[0].finish_reason == "stop"
    assert [m.id for m in c.models.list().data] == ["tiny"]


def test_chat_with_a_template(server, reference):
    c = client(server)
    messages = [{"role": "user", "content": "hello"}]
    out = c.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    assert out.choices[0].message.content == reference("<user>hello\n<assistant>", 8)
    streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
        model="tiny", messages=messages, max_tokens=8, temperature=0, stream=True))
    assert streamed == out.choices[0].message.content


def test_concurrent_requests_return_what_each_returns_alone(server, reference):
    prompts = [" ".join(["hello"] * (1 + q % 7)) + f" {q}" for q in range(32)]
    results = {}

    def one(q):
        results[q] = client(server).completions.create(model="tiny", prompt=prompts[q], max_tokens=8 + q % 5,
                                                       temperature=0).choices[0].text

    threads = [threading.Thread(target=one, args=(q,)) for q in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(32))
    for q in range(32):
        assert results[q] == reference(prompts[q], 8 + q % 5), q


@pytest.mark.parametrize("body, raw, message", [
    (None, b"{not json", "not valid JSON"),
    (None, b"[1, 2]", "must be a JSON object"),
    pytest.param(None, b"[" * 100000 + b"]" * 100000, "nested too deeply", id="nested-json"),
    ({"prompt": "x", "colour": "red"}, None, "unknown field"),
    ({"prompt": "x", "max_tokens": -3}, None, "max_tokens must be in"),
    ({"prompt": "x", "max_tokens": 10**12}, None, "max_tokens must be in"),
    ({"prompt": "x", "max_tokens": "ten"}, None, "max_tokens must be an integer"),
    ({"prompt": "x", "n": 99}, None, "n must be in"),
    ({"prompt": ""}, None, "prompt must not be empty"),
    ({"prompt": 5}, None, "prompt must be a string"),
    ({"prompt": "hello " * 80, "max_tokens": 4}, None, "context"),
    ({"prompt": "x", "temperature": "hot"}, None, "temperature must be a number"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, None, "stop must be"),
    ({"prompt": "x", "stream": "yes"}, None, "stream must be true or false"),
    ({"prompt": "x \ud800"}, None, "prompt: not valid Unicode at character 2"),
    ({"prompt": "x", "stop": ["\udfff"]}, None, "stop: string 0: not valid Unicode"),
])
def test_bad_requests_get_400_and_the_server_goes_on(server, body, raw, message):
    status, out = post(server, "/v1/completions", body, raw)
    assert status == 400 and message in out["error"]["message"], out
    assert out["error"]["type"] == "invalid_request_error"
    assert post(server, "/v1/completions", {"prompt": "hi", "max_tokens": 2})[0] == 200


def metric(url, name) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return float(next(l.split()[1] for l in text.splitlines() if l.startswith(name + " ")))


def test_a_client_hanging_up_frees_its_rows(server):
    req = urllib.request.Request(server + "/v1/completions", headers={"Content-Type": "application/json"},
                                 data=json.dumps({"prompt": "hello", "max_tokens": 60, "n": 4,
                                                  "stream": True}).encode())
    r = urllib.request.urlopen(req, timeout=60)
    assert r.readline().startswith(b"data: ")
    r.close()  # hang up mid-stream
    for _ in range(100):
        if metric(server, "fastergpt_running_sequences") == 0:
            break
        time.sleep(0.1)
    assert metric(server, "fastergpt_running_sequences") == 0


def test_a_full_queue_answers_429(model_dir):
    proc, url = start(model_dir, "--max_batch", 1, "--max_queue", 1)
    try:
        statuses = []

        def one():
            statuses.append(post(url, "/v1/completions", {"prompt": "hello", "max_tokens": 40})[0])

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert 429 in statuses and 200 in statuses, statuses
        assert post(url, "/v1/completions", {"prompt": "hi", "max_tokens": 2})[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_rss_is_flat_over_500_requests(server):
    pid = PIDS[server]

    def rss_kb():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    for _ in range(50):
        post(server, "/v1/completions", {"prompt": "hello world", "max_tokens": 3})
    before = rss_kb()
    for i in range(500):
        post(server, "/v1/completions", {"prompt": f"hello {i}", "max_tokens": 3, "temperature": 0.5})
    after = rss_kb()
    assert after - before < max(0.02 * before, 4096), (before, after)
