"""What multiplying in bfloat16 (AVX-512 BF16's vdpbf16ps) would cost in accuracy.

vdpbf16ps multiplies pairs of bfloat16 values and accumulates in float32. For fastergpt's
float16 weights that means rounding the weights (11 significant bits) and the activations
(float32) to bfloat16 (8 bits) before every product. This script measures that on the
default model's held-out text, in transformers on torch (float32 CPU): every linear layer
(the LM head included) computes y = bf16(x) @ bf16(W16) + b in float32, against float32
with the float16 weights (what fastergpt's float16 format computes) and against plain
float32. The text is scored in windows of 256 tokens that do not overlap, the documents
joined by blank lines (so its perplexities are not `fastergpt perplexity`'s, which
gives every target more context). It reports
perplexity, the share of positions whose most likely next token is float32's, and the
logit differences. It simulates every linear layer of every pass (an upper bound for a
change that would apply to prompt passes only).

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


def score(mode: str, ids):
    """(NLL per scored token, argmax per position, a sample of the logits) of the default
    model with its linear layers computed as `mode`: float32, float16 or bfloat16."""
    import torch
    from transformers import GPT2LMHeadModel
    from transformers.pytorch_utils import Conv1D

    from fastergpt.pretrained import DEFAULT_MODEL_DIR

    model = GPT2LMHeadModel.from_pretrained(str(DEFAULT_MODEL_DIR), dtype=torch.float32).eval()
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, Conv1D) or mode == "float32":
                continue
            module.weight.copy_(module.weight.half().float())  # fastergpt's float16 weights
            if mode == "bfloat16":
                module.weight.copy_(module.weight.to(torch.bfloat16).float())

                def forward(x, m=module):
                    xb = x.to(torch.bfloat16).float()
                    y = torch.addmm(m.bias, xb.reshape(-1, xb.shape[-1]), m.weight)
                    return y.view(*x.shape[:-1], -1)
                module.forward = forward
        if mode == "bfloat16":  # the LM head too (its weight is the token table's: a copy)
            head = model.lm_head
            w = head.weight.detach().half().float().to(torch.bfloat16).float().clone()

            def head_forward(x, w=w):
                return x.to(torch.bfloat16).float() @ w.T
            head.forward = head_forward
        nll, top, sample = [], [], []
        for b in range(0, ids.shape[0], 16):
            x = ids[b:b + 16]
            logits = model(x).logits[:, :-1].float()
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
    ref_nll, ref_top, ref_logits = score("float32", ids)
    print(f"default model, held-out split: {ref_nll.numel()} tokens scored in windows of 256; "
          f"CPU {cpu_model()}")
    print("| linear layers | perplexity | vs float32 | next token as float32 | max / mean abs logit difference |")
    print("|---|---:|---:|---:|---:|")
    for mode in ("float32", "float16", "bfloat16"):
        nll, top, logits = (ref_nll, ref_top, ref_logits) if mode == "float32" else score(mode, ids)
        diff = (logits - ref_logits).abs()
        print(f"| {mode} | {nll.mean().exp():.3f} | {(nll.mean() - ref_nll.mean()).exp():.4f}x | "
              f"{(top == ref_top).float().mean():.4f} | {diff.max():.4f} / {diff.mean():.5f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
