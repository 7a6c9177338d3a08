"""FasterGPT converts with paddle.jit.to_static, saves (PIR and legacy formats)
and runs from paddle.inference in a fresh process with the same output, with
the generation settings still adjustable at run time."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from fastergpt import FasterGPT, GPTConfig
from fastergpt.reference import GPTLMHeadModel, randomize_

ROOT = Path(__file__).resolve().parents[1]

PREDICT = r"""
import json, sys, numpy as np, paddle
from fastergpt.ops import load_ops
from fastergpt.settings import resolve_settings, settings_vector
from fastergpt.stops import end_ids_array, stop_strings_array
load_ops()
prefix, feeds = sys.argv[1], json.loads(sys.argv[2])
model = prefix + (".json" if __import__("os").path.exists(prefix + ".json") else ".pdmodel")
config = paddle.inference.Config(model, prefix + ".pdiparams")
config.disable_glog_info()
predictor = paddle.inference.create_predictor(config)
results = []
for feed in feeds:
    arrays = {"input_ids": np.array(feed["input_ids"], "int64"),
              "attention_mask": np.array(feed["attention_mask"], "int64")}
    arrays["settings"] = settings_vector(resolve_settings(**feed["settings"]))
    arrays["end_token_ids"] = end_ids_array(feed.get("end_token_ids"))
    arrays["stop_strings"] = stop_strings_array(feed.get("stop"))
    for name in predictor.get_input_names():
        h = predictor.get_input_handle(name)
        h.reshape(arrays[name].shape)
        h.copy_from_cpu(arrays[name])
    predictor.run()
    results.append(predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu().tolist())
print(json.dumps(results))
"""

DEFAULTS = dict(max_new_tokens=8, min_length=0, top_k=0, top_p=1.0, temperature=1.0,
                repetition_penalty=1.0, eos_token_id=-1, pad_token_id=-1, seed=0,
                decode_strategy="greedy_search", num_return_sequences=1, num_threads=0)


@pytest.mark.parametrize("fmt", ["pir", "legacy"])
def test_export_and_predict_in_fresh_process(tmp_path, fmt):
    cfg = GPTConfig(vocab_size=61, n_positions=48, n_embd=32, n_layer=2, n_head=2)
    paddle.seed(3)
    model_state = randomize_(GPTLMHeadModel(cfg), 3, std=0.1).state_dict_numpy()
    model = FasterGPT(cfg, model_state)
    model.eval()
    prefix = str(tmp_path / "model")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # Export in a subprocess so the legacy format's global flag stays out of this process.
    if fmt == "legacy":
        env["FLAGS_enable_pir_api"] = "0"
    np.savez(tmp_path / "state.npz", **model_state)
    export = (
        "import numpy as np, paddle\n"
        "from paddle.static import InputSpec\n"
        "from fastergpt import FasterGPT, GPTConfig\n"

        f"cfg = GPTConfig(**{cfg.to_dict()!r})\n"
        f"state = dict(np.load({str(tmp_path / 'state.npz')!r}))\n"
        "m = FasterGPT(cfg, state); m.eval()\n"
        f"paddle.jit.save(paddle.jit.to_static(m, input_spec=FasterGPT.input_spec(), full_graph=True), {prefix!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", export], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    suffix = ".json" if fmt == "pir" else ".pdmodel"
    assert os.path.exists(prefix + suffix)

    ids = [[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]]
    mask = [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    runs = [dict(DEFAULTS), dict(DEFAULTS, max_new_tokens=3),
            dict(DEFAULTS, decode_strategy="sampling", top_k=5, seed=11),
            dict(DEFAULTS, decode_strategy="sampling", top_k=5, seed=12)]
    feeds = [dict(settings=r, input_ids=ids, attention_mask=mask) for r in runs]
    env.pop("FLAGS_enable_pir_api", None)
    proc = subprocess.run([sys.executable, "-c", PREDICT, prefix, json.dumps(feeds)], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])

    for r, out in zip(runs, got):
        want = model.generate(np.array(ids), np.array(mask), max_new_tokens=r["max_new_tokens"],
                              decode_strategy=r["decode_strategy"], top_k=r["top_k"], seed=r["seed"]).ids
        assert out == want.numpy().tolist()
    assert len(got[1][0]) == 3  # max_new_tokens changed without re-export
    assert got[2] != got[3]     # so did the seed
