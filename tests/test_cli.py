"""The command lines, as a user runs them: infer/infer.py and export/export_model.py
in subprocesses on a tiny checkpoint directory written by the test."""
import re

import pytest

from layouts import ROOT, run_python, tokenizer_model, write_hf_numpy, write_tokenizer

INFER = ROOT / "infer" / "infer.py"
EXPORT = ROOT / "export" / "export_model.py"
SAMPLING_ARGS = ["--topk", "4", "--max_length", "5", "--seed", "1", "--prompt", "hello"]
GREEDY_ARGS = ["--decode_strategy", "greedy_search", "--max_length", "8", "--prompt", "hello",
               "--prompt", "The function returns"]


def generated_section(stdout: str) -> str:
    """The generated lines: between the settings line and the 'N tokens in' summary."""
    m = re.search(r"^settings: [^\n]*\n\n(.*)\n\n\d+ tokens in [\d.]+ ms: [\d.]+ tokens/s$",
                  stdout, re.S | re.M)
    assert m, stdout
    return m.group(1)


def check_ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def src_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    write_hf_numpy(d, tokenizer_model("gelu_new", tied=True, seed=31))
    write_tokenizer(d, "json")
    return d


@pytest.fixture(scope="module")
def greedy_dygraph(src_dir):
    """The generated lines of the greedy command on the checkpoint (dygraph FasterGPT)."""
    return generated_section(check_ok(run_python([INFER, "--model_name_or_path", src_dir,
                                                  *GREEDY_ARGS])).stdout)


@pytest.fixture(scope="module")
def export_run(tmp_path_factory, src_dir):
    out = tmp_path_factory.mktemp("exports") / "pir"
    proc = run_python([EXPORT, "--model_name_or_path", src_dir, "--inference_model_dir", out])
    return proc, out


@pytest.fixture(scope="module")
def exported_dir(export_run):
    proc, out = export_run
    check_ok(proc)
    return out


# ---- export/export_model.py ----------------------------------------------------

def test_export_cli(export_run):
    proc, out = export_run
    check_ok(proc)
    assert "verified" in proc.stdout
    names = {p.name for p in out.iterdir()}
    assert {"model.json", "model.pdiparams", "config.json", "libfastergpt_ops.so",
            "tokenizer.json"} <= names


def test_export_cli_refuses_to_overwrite(exported_dir, src_dir):
    before = {p.name: p.read_bytes() for p in exported_dir.iterdir()}
    proc = run_python([EXPORT, "--model_name_or_path", src_dir, "--inference_model_dir", exported_dir])
    assert proc.returncode != 0
    assert "not empty" in proc.stderr and "--overwrite" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in exported_dir.iterdir()} == before


def test_export_cli_legacy_format(tmp_path, src_dir, greedy_dygraph):
    out = tmp_path / "legacy"
    proc = check_ok(run_python([EXPORT, "--model_name_or_path", src_dir, "--inference_model_dir", out,
                                "--format", "legacy"]))
    assert "verified" in proc.stdout
    assert (out / "model.pdmodel").is_file() and (out / "model.pdiparams").is_file()
    assert not (out / "model.json").exists()
    # And infer.py runs it, with the dygraph output.
    ex = check_ok(run_python([INFER, "--inference_model_dir", out, *GREEDY_ARGS]))
    assert generated_section(ex.stdout) == greedy_dygraph
    # --benchmark on it either runs or says why not; never a traceback.
    bench = run_python([INFER, "--inference_model_dir", out, "--benchmark", "1", "--max_length", "3",
                        "--seed", "0", "--prompt", "hello"])
    assert "Traceback" not in bench.stderr, bench.stderr
    if bench.returncode == 0:
        assert "speed-up" in bench.stdout
    else:
        assert "error:" in bench.stderr and "legacy" in bench.stderr, bench.stderr


def test_export_cli_missing_model(tmp_path):
    proc = run_python([EXPORT, "--model_name_or_path", tmp_path / "no_such_model",
                       "--inference_model_dir", tmp_path / "out"])
    assert proc.returncode != 0
    assert "no_such_model" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


# ---- infer/infer.py ----------------------------------------------------------------

@pytest.fixture(scope="module")
def sampled(src_dir, exported_dir):
    """{"dygraph": proc, "exported": proc} for the same seeded sampling command."""
    return {
        "dygraph": run_python([INFER, "--model_name_or_path", src_dir, *SAMPLING_ARGS]),
        "exported": run_python([INFER, "--inference_model_dir", exported_dir, *SAMPLING_ARGS]),
    }


@pytest.mark.parametrize("backend", ["dygraph", "exported"])
def test_infer_sampling(sampled, backend, src_dir, exported_dir):
    proc = check_ok(sampled[backend])
    out = proc.stdout
    assert re.search(r"^\[0\] hello", out, re.M), out
    assert "tokens/s" in out
    assert str(src_dir if backend == "dygraph" else exported_dir) in out  # the model line
    assert "top_k=4" in out and "max_new_tokens=5" in out and "seed=1" in out
    generated_section(out)


def test_infer_sampling_same_seed_same_text(sampled):
    """Same engine, same settings and seed: the exported directory samples the same tokens."""
    assert generated_section(check_ok(sampled["dygraph"]).stdout) == \
        generated_section(check_ok(sampled["exported"]).stdout)


def test_infer_greedy_dygraph_equals_exported(exported_dir, greedy_dygraph):
    ex = check_ok(run_python([INFER, "--inference_model_dir", exported_dir, *GREEDY_ARGS]))
    assert generated_section(ex.stdout) == greedy_dygraph
    assert re.search(r"^\[0\] hello", greedy_dygraph, re.M)
    assert re.search(r"^\[1\] The function returns", greedy_dygraph, re.M)


def test_infer_benchmark(src_dir):
    proc = check_ok(run_python([INFER, "--model_name_or_path", src_dir, "--benchmark", "1",
                                "--max_length", "4", "--seed", "0", "--prompt", "hello"]))
    assert re.search(r"^\s*speed-up \(tokens/s\)\s+[\d.]+x$", proc.stdout, re.M), proc.stdout
    assert "reference generate()" in proc.stdout


def test_infer_benchmark_exported(exported_dir):
    proc = check_ok(run_python([INFER, "--inference_model_dir", exported_dir, "--benchmark", "1",
                                "--max_length", "4", "--seed", "0", "--prompt", "hello"]))
    assert re.search(r"^\s*speed-up \(tokens/s\)\s+[\d.]+x$", proc.stdout, re.M), proc.stdout


def test_infer_missing_model_directory(tmp_path):
    proc = run_python([INFER, "--model_name_or_path", tmp_path / "no_such_model", "--prompt", "hi"])
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "no_such_model" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_infer_missing_inference_directory(tmp_path):
    proc = run_python([INFER, "--inference_model_dir", tmp_path / "no_such_export", "--prompt", "hi"])
    assert proc.returncode != 0
    assert "error:" in proc.stderr and "no_such_export" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_infer_bad_setting_is_reported(exported_dir):
    """A bad runtime value reaches the user as a message naming it, not a traceback."""
    proc = run_python([INFER, "--inference_model_dir", exported_dir, "--prompt", "hi",
                       "--topp", "1.5", "--seed", "0"])
    assert proc.returncode != 0
    assert "top_p must be in (0, 1]" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
