"""Greedy output of the quantized formats against float32's, on the default model.

Prompts: the first --prompt tokens of each of the first --prompts documents of the default
model's held-out split (tools/build_corpus.py), after an end-of-text token. float32
greedy-decodes --new-tokens tokens from each (no early stop). Every other format is then
measured on those outputs two ways:

- agreement: the share of float32's generated tokens that the format's own greedy choice
  equals at the same position, given float32's prefix (teacher-forced on float32's output,
  so one early difference does not count against every later token);
- free-running: the format's own greedy output, the mean number of leading tokens equal to
  float32's, and the share of prompts whose whole output is float32's.

The formats are `perplexity --compare`'s entries (fastergpt/format_entries.py): int4-rtn
and int4-gptq quantize the checkpoint first, with `fastergpt quantize`'s defaults (groups of
128, GPTQ on the default calibration text); FORMAT@VOCAB stores the token table and LM head
in VOCAB. Prints the table and the CPU model.

    python benchmarks/bench_quant_agreement.py
    python benchmarks/bench_quant_agreement.py --formats int8,int4-gptq --prompts 32
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def heldout_prompts(tokenizer, count: int, length: int) -> list:
    from fastergpt.gptq import default_corpus_documents

    docs = default_corpus_documents("heldout")
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    prompts = []
    for doc in docs:
        ids = eos + tokenizer.encode(doc)
        if len(ids) >= length:
            prompts.append(np.asarray([ids[:length]], dtype=np.int64))
        if len(prompts) == count:
            break
    return prompts


def main() -> int:
    from fastergpt import Engine
    from fastergpt.format_entries import load_entry
    from fastergpt.machine import cpu_model
    from fastergpt.pretrained import resolve_model_path
    from fastergpt.tokenizer import Tokenizer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--formats", default="float16,int8,int4-rtn,int4-gptq,int4-gptq@int4")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=32, help="tokens per prompt")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_quant_agreement.json"))
    a = ap.parse_args()

    path = resolve_model_path(a.model)
    prompts = heldout_prompts(Tokenizer.from_dir(path), a.prompts, a.prompt)
    settings = dict(max_new_tokens=a.new_tokens, eos_token_id=-1, num_threads=a.threads,
                    decode_strategy="greedy_search")

    def greedy(engine):
        return [engine.generate(p, **settings)["ids"][0, -a.new_tokens:] for p in prompts]

    want = greedy(Engine.from_pretrained(path, dtype="float32"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastergpt-agreement-") as tmp:
        for name in [n.strip() for n in a.formats.split(",") if n.strip()]:
            engine = load_entry(name, path, tmp, progress=lambda line: None)
            forced = []
            for p, w in zip(prompts, want):
                logits = engine.logits(np.concatenate([p, w[None, :-1]], axis=1), num_threads=a.threads)
                forced.append(logits[0, -a.new_tokens:].argmax(-1) == w)
            own = greedy(engine)
            prefix = [int(np.argmin(np.append(o == w, False))) for o, w in zip(own, want)]
            rows.append({"format": name, "agreement": float(np.mean(forced)),
                         "mean_identical_prefix": float(np.mean(prefix)),
                         "identical_outputs": float(np.mean([n == a.new_tokens for n in prefix]))})
            print(f"  {name}: {rows[-1]['agreement']:.3f}", file=sys.stderr, flush=True)

    print(f"\n{a.model}: {len(prompts)} held-out prompts of {a.prompt} tokens, {a.new_tokens} greedy "
          f"tokens each against float32's; CPU {cpu_model()}")
    print("| format | agreement (teacher-forced) | mean identical prefix | identical outputs |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['format']} | {r['agreement']:.3f} | {r['mean_identical_prefix']:.1f} / "
              f"{a.new_tokens} | {r['identical_outputs']:.2f} |")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"cpu": cpu_model(), "model": a.model, "prompts": len(prompts),
                   "prompt_tokens": a.prompt, "new_tokens": a.new_tokens, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
