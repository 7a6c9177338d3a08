"""Inputs that used to crash, hang or silently change a result (issue: "No input
crashes, corrupts or silently changes a result"): non-finite or overflowing
weights, integer and bfloat16 safetensors, a process forked after a first
generate, bad prompt files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastergpt import Engine, FasterGPT, GPTConfig
from fastergpt.checkpoint import CheckpointError, read_safetensors
from helpers import tiny_model
from layouts import run_python, write_hf_numpy, write_tokenizer


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=8)


def _header(tensors: dict) -> bytes:
    """A safetensors file from {name: (dtype string, shape, raw bytes)}, by the format's description."""
    header, body, offset = {}, b"", 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        body += raw
        offset += len(raw)
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + body


def test_safetensors_integer_tensor_is_refused_by_name(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(_header({"w": ("I16", (2, 2), np.arange(4, dtype="<i2").tobytes())}))
    with pytest.raises(CheckpointError, match=r"tensor 'w' has dtype I16; model weights must be floating point"):
        read_safetensors(f)


def test_safetensors_bfloat16_is_widened_exactly(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 1e-3], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")  # truncation: exact for these values' tops
    f = tmp_path / "model.safetensors"
    f.write_bytes(_header({"w": ("BF16", (4,), bf16.tobytes())}))
    want = (bf16.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(read_safetensors(f)["w"], want)


def test_safetensors_truncated_and_bad_offsets(tmp_path):
    f = tmp_path / "model.safetensors"
    good = _header({"w": ("F32", (4,), np.zeros(4, np.float32).tobytes())})
    f.write_bytes(good[:-3])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_safetensors(f)
    f.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_safetensors(f)
    # Offsets that are not numbers, and a header nested past Python's recursion limit
    # (these had escaped as TypeError and RecursionError).
    bad = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": ["zero", "8"]}}).encode()
    f.write_bytes(len(bad).to_bytes(8, "little") + bad + bytes(8))
    with pytest.raises(CheckpointError, match="corrupt or truncated: bad header entry for 'w'"):
        read_safetensors(f)
    deep = b"[" * 100000 + b"]" * 100000
    f.write_bytes(len(deep).to_bytes(8, "little") + deep)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_safetensors(f)


def test_weights_that_overflow_float16_are_refused(model):
    state = model.state_dict_numpy()
    state["transformer.h.0.mlp.c_fc.weight"] = state["transformer.h.0.mlp.c_fc.weight"].copy()
    state["transformer.h.0.mlp.c_fc.weight"][0, 0] = 1e6
    Engine(model.config, state, "float32")  # fine in float32
    with pytest.raises(ValueError, match=r"layers\.0\.fc\.weight does not fit float16"):
        Engine(model.config, state, "float16")


@pytest.mark.parametrize("front_end", [Engine, FasterGPT])
def test_non_finite_weights_are_refused_in_memory(model, front_end):
    state = model.state_dict_numpy()
    state["transformer.ln_f.weight"] = state["transformer.ln_f.weight"].copy()
    state["transformer.ln_f.weight"][3] = np.nan
    with pytest.raises(ValueError, match=r"final_ln\.gamma holds NaN or Inf"):
        front_end(model.config, state)


def test_non_finite_weights_are_refused_by_engine_load(model, tmp_path):
    from safetensors.numpy import load_file, save_file

    d = Engine.from_model(model).save(tmp_path / "saved")
    tensors = load_file(str(d / "engine.safetensors"))
    tensors["final_ln.beta"] = np.full_like(tensors["final_ln.beta"], np.inf)
    save_file(tensors, str(d / "engine.safetensors"))
    with pytest.raises(ValueError, match=r"final_ln\.beta.*NaN or Inf"):
        Engine.load(d)


def test_infinite_epsilon_is_refused():
    with pytest.raises(ValueError, match="layer_norm_epsilon"):
        GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                  layer_norm_epsilon=float("inf")).validate()


FORK = r"""
import os, sys, numpy as np
sys.path.insert(0, {tests!r})
from helpers import tiny_model
from fastergpt import Engine
engine = Engine.from_model(tiny_model(seed=8))
ids = np.array([[1, 2, 3]])
before = engine.generate(ids, max_new_tokens=5)["ids"].tolist()
pid = os.fork()
if pid == 0:
    ok = engine.generate(ids, max_new_tokens=5)["ids"].tolist() == before
    ok = ok and engine.generate(ids, max_new_tokens=5, num_threads=1)["ids"].tolist() == before
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0, status
print("fork ok")
"""


def test_generate_in_a_forked_child():
    """A child forked after a first generate gets a fresh thread pool (it used to hang)."""
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = run_python(["-c", FORK.format(tests=tests)], timeout=120)
    assert proc.returncode == 0 and "fork ok" in proc.stdout, proc.stderr[-3000:]


def test_infer_cli_prompt_file_errors(tmp_path):
    missing = run_python(["infer/infer.py", "--prompt_file", str(tmp_path / "nope.txt")])
    assert missing.returncode != 0 and "error: --prompt_file" in missing.stderr
    assert "Traceback" not in missing.stderr
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    bad = run_python(["infer/infer.py", "--prompt_file", str(latin)])
    assert bad.returncode != 0 and "is not UTF-8 text" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_long_prompt_pass_in_chunks_equals_each_prompt_alone():
    """A batch whose prompts hold more tokens than one prompt-pass chunk (512) gives
    each row what it gives alone, in generate and in logits."""
    from helpers import padded_batch

    model = tiny_model(seed=9, n_positions=320)
    engine = Engine.from_model(model)
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(0, 53, n)) for n in (300, 250, 7, 180)]
    ids, mask = padded_batch(prompts)
    got = engine.generate(ids, mask, max_new_tokens=8, eos_token_id=-1)["ids"]
    logits = engine.logits(ids, mask)
    for b, p in enumerate(prompts):
        alone = np.array([p])
        np.testing.assert_array_equal(got[b], engine.generate(alone, max_new_tokens=8, eos_token_id=-1)["ids"][0])
        np.testing.assert_array_equal(logits[b, -len(p):], engine.logits(alone)[0])


RSS = r"""
import sys, numpy as np
sys.path.insert(0, {tests!r})
from helpers import tiny_model
from fastergpt import Engine

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

engine = Engine.from_model(tiny_model(seed=2, vocab_size=5000, n_positions=300, n_embd=256,
                                      n_layer=4, n_head=4))
small = np.ones((1, 4), np.int64)
engine.generate(small, max_new_tokens=2)
before = rss_mb()
big = np.random.default_rng(0).integers(0, 5000, (64, 250))
engine.generate(big, max_new_tokens=2)
after = rss_mb()
print("RSS", before, after)
"""


def test_a_large_prompt_pass_does_not_pin_memory():
    """Batch 64 x 250 tokens: the prompt pass runs in chunks and keeps logits for the
    last token of each prompt only, so memory afterwards grows by about the KV cache
    (64 x 252 x 4 layers x 2 x 256 floats = 132 MB), not by logits of every prompt
    token (16000 x 5000 floats = 320 MB) plus activations of all of them."""
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = run_python(["-c", RSS.format(tests=tests)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = map(float, proc.stdout.split("RSS")[-1].split())
    assert after - before < 200, (before, after)


THREADS = r"""
import resource, sys, numpy as np
sys.path.insert(0, {tests!r})
from helpers import tiny_model
from fastergpt import Engine
engine = Engine.from_model(tiny_model(seed=2))
engine.generate(np.ones((1, 3), np.int64), max_new_tokens=2)
# Room for the process as it is plus ~100 thread stacks: 1024 threads cannot all start.
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + (800 << 20), size + (800 << 20)))
try:
    engine.generate(np.ones((1, 3), np.int64), max_new_tokens=2, num_threads=1024)
    print("NO ERROR")
except ValueError as e:
    print("ERROR", e)
print("AFTER", engine.generate(np.ones((1, 3), np.int64), max_new_tokens=2, num_threads=2)["ids"].tolist())
"""


def test_thread_creation_failure_is_an_error_not_a_hang():
    """When the system cannot start the threads asked for, the call fails with a message
    (it used to deadlock in the pool's destructor) and the next call still runs."""
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = run_python(["-c", THREADS.format(tests=tests)], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "ERROR num_threads: could start only" in out and "of 1024 threads" in out, out
    assert "AFTER [[" in out, out


@pytest.mark.parametrize("strategy", ["greedy_search", "sampling"])
def test_overflowing_activations_are_an_error_not_a_token(model, strategy):
    """Finite weights can still overflow (1e38 here): the NaN logits are reported, not
    turned into a token (greedy used to return NaN log-probabilities, sampling the
    last token)."""
    state = model.state_dict_numpy()
    state["transformer.h.1.mlp.c_proj.weight"] = np.full_like(state["transformer.h.1.mlp.c_proj.weight"], 1e38)
    engine = Engine(model.config, state)
    with pytest.raises(ValueError, match="logits are not finite"):
        engine.generate(np.array([[1, 2, 3]]), max_new_tokens=3, decode_strategy=strategy)


def test_an_error_inside_the_thread_pool_is_raised_not_fatal(model):
    """Beam search checks each beam's logits on the pool's threads (several beams run in
    parallel): the error reaches the caller as ValueError instead of ending the process
    (a C++ exception on a worker thread used to call std::terminate)."""
    state = model.state_dict_numpy()
    state["transformer.h.1.mlp.c_proj.weight"] = np.full_like(state["transformer.h.1.mlp.c_proj.weight"], 1e38)
    engine = Engine(model.config, state)
    prompts = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [3, 2, 1]])
    for _ in range(3):
        with pytest.raises(ValueError, match="logits are not finite"):
            engine.generate(prompts, max_new_tokens=3, num_beams=4, num_threads=2)
    ok = Engine.from_model(model).generate(prompts, max_new_tokens=3, num_beams=4, num_threads=2)
    assert ok["ids"].shape == (4, 3)


class _Marker:
    """Pickles as a call to os.system that would create a marker file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.mark.parametrize("where", ["value", "top"])
def test_malicious_pdparams_runs_nothing(tmp_path, model, where):
    """A model_state.pdparams whose pickle calls os.system is refused by name and the
    call never happens (paddle.load used to run it before any check)."""
    import pickle

    from layouts import paddlenlp_state, write_paddlenlp

    marker = tmp_path / "marker"
    write_paddlenlp(tmp_path, model)
    state = paddlenlp_state(model)
    payload = _Marker(marker)
    obj = dict(state, evil=payload) if where == "value" else payload
    (tmp_path / "model_state.pdparams").write_bytes(pickle.dumps(obj, protocol=4))
    with pytest.raises(CheckpointError, match=r"model_state\.pdparams: refusing to load it: it references posix\.system"):
        FasterGPT.from_pretrained(tmp_path)
    assert not marker.exists()


def test_pdparams_that_is_not_a_state_dict(tmp_path, model):
    import pickle

    from layouts import write_paddlenlp

    write_paddlenlp(tmp_path, model)
    (tmp_path / "model_state.pdparams").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        FasterGPT.from_pretrained(tmp_path)
    (tmp_path / "model_state.pdparams").write_bytes(pickle.dumps({"w": "text"}))
    with pytest.raises(CheckpointError, match="are not named arrays"):
        FasterGPT.from_pretrained(tmp_path)


@pytest.mark.parametrize("front_end", ["FasterGPT", "Engine"])
def test_requests_over_the_memory_budget_are_refused_with_the_figure(front_end):
    """A request that would need more memory than the budget (max_memory_mb; by default
    what the machine has available) is refused before anything is allocated, quickly,
    with the figure; the process survives and one that fits runs."""
    import time

    from helpers import front_ends

    big = tiny_model(seed=3, n_embd=256, n_layer=4, n_head=4, n_positions=512)
    run = dict(front_ends(big))[front_end]
    prompt = np.ones((1, 3), np.int64)
    run(prompt, max_new_tokens=2)  # (a small request first: its reading of what is
    # available may be reused for a while, but never for one that needs more than half)
    t0 = time.time()
    # 65536 rows x 512 positions x 4 layers x 2 x 256 floats: about 256 GB of KV cache.
    with pytest.raises(ValueError, match=r"this request needs about \d+ MB \(KV cache \d+ MB.*"
                                         r"but the machine has \d+ MB available"):
        run(prompt, max_new_tokens=509, num_return_sequences=65536)
    assert time.time() - t0 < 5
    with pytest.raises(ValueError, match=r"needs about \d+ MB .* but max_memory_mb allows 1 MB"):
        run(np.ones((4, 3), np.int64), max_new_tokens=8, num_return_sequences=64, max_memory_mb=1)
    out = run(np.ones((4, 3), np.int64), max_new_tokens=8, num_return_sequences=2, max_memory_mb=64)
    assert out["ids"].shape == (8, 8)


FLAT = r"""
import sys, numpy as np
sys.path.insert(0, {tests!r})
from helpers import tiny_model
from fastergpt import Engine

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])

engine = Engine.from_model(tiny_model(seed=2))
ids = np.array([[1, 2, 3, 4], [0, 5, 6, 7]])
mask = np.array([[1, 1, 1, 1], [0, 1, 1, 1]])
def call(i):
    engine.generate(ids, mask, max_new_tokens=8, decode_strategy="sampling", top_k=5, seed=i,
                    num_return_sequences=2, repetition_penalty=1.1, return_logprobs=True)
for i in range(200):  # warm-up: buffers reach their size, allocators their pools
    call(i)
before = rss_kb()
for i in range(1000):
    call(i)
print("RSS", before, rss_kb())
"""


def test_rss_is_flat_over_1000_generations():
    tests = os.path.dirname(os.path.abspath(__file__))
    proc = run_python(["-c", FLAT.format(tests=tests)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after = map(int, proc.stdout.split("RSS")[-1].split())
    assert after <= before * 1.02, (before, after)
