"""Fuzzing of the C++ parsers that read outside input (gpt_infer's JSON reader, its
byte-level BPE, tokenizer.json loading) with libFuzzer under ASan + UBSan: each
target runs from the kept corpus (tests/fuzz/corpus/<target>) for a bounded time
(60 s in CI, a few seconds locally; FASTERGPT_FUZZ_SECONDS overrides) and must
end without a finding. Skipped, saying so, where clang is not installed (.ci/run
installs it). A crash found becomes a file in tests/fuzz/regressions/<target>,
which every run replays."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "fuzz"
TARGETS = ["fuzz_json", "fuzz_bpe", "fuzz_tokenizer_json"]
SECONDS = int(os.environ.get("FASTERGPT_FUZZ_SECONDS", 60 if os.environ.get("CI") else 5))

pytestmark = pytest.mark.skipif(shutil.which("clang++") is None or shutil.which("cmake") is None,
                                reason="clang++ (libFuzzer) is not installed")


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory):
    build = tmp_path_factory.mktemp("fuzz_build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    for cmd in (["cmake", "-S", str(ROOT / "infer/cpp"), "-B", str(build), *gen,
                 "-DCMAKE_CXX_COMPILER=clang++", "-DFASTERGPT_FUZZ=ON"],
                ["cmake", "--build", str(build), "-j", "2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 and "libclang_rt" in proc.stdout + proc.stderr:
            pytest.skip("clang's sanitizer runtimes (libclang-rt) are not installed")
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return build


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_finds_nothing(fuzz_build, tmp_path, target):
    corpus = tmp_path / "corpus"  # new inputs go here; the kept corpus is only read
    corpus.mkdir()
    seeds = FUZZ / "corpus" / target.removeprefix("fuzz_")
    regressions = FUZZ / "regressions" / target
    inputs = [str(corpus), str(seeds)] + ([str(regressions)] if regressions.is_dir() else [])
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run([str(fuzz_build / target), f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
                           "-max_len=4096", f"-artifact_prefix={tmp_path}/", *inputs],
                          capture_output=True, text=True, env=env, timeout=SECONDS + 120)
    crashes = [p.name for p in tmp_path.glob("crash-*")] + [p.name for p in tmp_path.glob("leak-*")]
    assert proc.returncode == 0 and not crashes, (crashes, proc.stderr[-4000:])
    assert "Done" in proc.stderr or "DONE" in proc.stderr, proc.stderr[-2000:]
