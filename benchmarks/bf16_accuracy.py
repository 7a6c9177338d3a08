"""What multiplying in bfloat16 (`matmul_precision="bfloat16"`, AVX-512 BF16's vdpbf16ps)
costs in accuracy, measured on fastergpt's own engine.

vdpbf16ps multiplies pairs of bfloat16 values and accumulates in float32: the weights
(float32: 24 significant bits, float16: 11) and the activations are rounded to bfloat16 (8
bits) before every product, in every linear layer, the LM head included. This script
scores the default model's held-out text with transformers on torch (float32 CPU, the
reference) and with fastergpt's float32 and float16 weights under both precisions. The
text is scored in windows of 256 tokens that do not overlap, the documents joined by
blank lines (so its perplexities are not `fastergpt perplexity`'s, which gives every
target more context). It reports perplexity, the share of positions whose most likely
next token is the reference's, and the logit differences.

    python benchmarks/bf16_accuracy.py
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def heldout_ids(tokenizer, window: int):
    import torch

    from fastergpt.gptq import default_corpus_documents

    text = "\n\n".join(default_corpus_documents("heldout"))
    ids = [tokenizer.eos_token_id] + tokenizer.encode(text)
    ids = ids[: len(ids) // window * window]
    return torch.tensor(ids).view(-1, window)


def reference_scores(ids):
    """(NLL per scored token, argmax per position, a sample of the logits) of the default
    model in transformers, float32."""
    import torch
    from transformers import GPT2LMHeadModel

    from fastergpt.pretrained import DEFAULT_MODEL_DIR

    model = GPT2LMHeadModel.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32).eval()
    with torch.no_grad():
        return summarize([model(ids[b:b + 16]).logits for b in range(0, ids.shape[0], 16)], ids)


def engine_scores(ids, dtype: str, precision: str):
    """The same for fastergpt's engine with `dtype` weights multiplying in `precision`."""
    import torch

    from fastergpt import Engine

    engine = Engine.from_pretrained("default", dtype=dtype)
    return summarize([torch.from_numpy(engine.logits(ids[b:b + 16].numpy(), matmul_precision=precision))
                      for b in range(0, ids.shape[0], 16)], ids)


def summarize(batches, ids):
    import torch

    nll, top, sample = [], [], []
    for b, logits in zip(range(0, ids.shape[0], 16), batches):
        x = ids[b:b + 16]
        logits = logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1)
        nll.append(-logp.gather(-1, x[:, 1:, None])[..., 0].flatten())
        top.append(logits.argmax(-1).flatten())
        sample.append(logits.reshape(-1, logits.shape[-1])[::7])
    return torch.cat(nll).double(), torch.cat(top), torch.cat(sample)


def main() -> int:
    from fastergpt.machine import cpu_model
    from fastergpt.pretrained import DEFAULT_MODEL_DIR
    from fastergpt.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_dir(DEFAULT_MODEL_DIR)
    ids = heldout_ids(tokenizer, 256)
    ref_nll, ref_top, ref_logits = reference_scores(ids)
    print(f"default model, held-out split: {ref_nll.numel()} tokens scored in windows of 256; "
          f"CPU {cpu_model()}")
    print("| weights | matmul_precision | perplexity | vs transformers | next token as transformers' "
          "| max / mean abs logit difference |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| transformers float32 | - | {ref_nll.mean().exp():.3f} | 1.0000x | 1.0000 | 0 / 0 |")
    for dtype in ("float32", "float16"):
        for precision in ("float32", "bfloat16"):
            nll, top, logits = engine_scores(ids, dtype, precision)
            diff = (logits - ref_logits).abs()
            print(f"| fastergpt {dtype} | {precision} | {nll.mean().exp():.3f} | "
                  f"{(nll.mean() - ref_nll.mean()).exp():.4f}x | {(top == ref_top).float().mean():.4f} "
                  f"| {diff.max():.4f} / {diff.mean():.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
