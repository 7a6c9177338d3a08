"""One adapter per engine: the same greedy / top-k / beam search work, end token disabled.

`ids` is an int64 array [B, prompt]; every engine must return exactly
`new_tokens` generated tokens per row (the best beam's, with beams > 1).
"""
from __future__ import annotations

import os

import numpy as np


def _fastergpt_strategy(top_k, beams):
    if beams > 1:
        return dict(decode_strategy="beam_search", num_beams=beams)
    return dict(decode_strategy="sampling", top_k=top_k, seed=1) if top_k else {}


def _no_beams(beams, name):
    if beams > 1:
        raise SystemExit(f"{name}: no beam search here")


class FasterGPTPaddle:
    name = "fastergpt (Paddle op)"

    def __init__(self, work_dir, dtype, threads):
        from engines.prepare import BENCH_DTYPES
        from fastergpt import FasterGPT

        fmt, vocab_dtype = BENCH_DTYPES[dtype]
        self.model = FasterGPT.from_pretrained(os.path.join(work_dir, "hf"), dtype=fmt,
                                               vocab_dtype=vocab_dtype)
        self.threads = threads
        self.settings = {}  # more fastergpt settings for every call (kv_cache_dtype, ...)

    def generate(self, ids, new_tokens, top_k, beams=1):
        kw = _fastergpt_strategy(top_k, beams)
        return self.model.generate(ids, max_new_tokens=new_tokens, eos_token_id=-1,
                                   num_threads=self.threads, **self.settings, **kw).ids.numpy()


class FasterGPTNumPy:
    name = "fastergpt (NumPy module)"

    def __init__(self, work_dir, dtype, threads):
        from fastergpt.engine import Engine  # no Paddle in this process

        self.engine = Engine.load(os.path.join(work_dir, f"fastergpt_{dtype}"))
        self.threads = threads
        self.settings = {}  # more fastergpt settings for every call (kv_cache_dtype, ...)

    def generate(self, ids, new_tokens, top_k, beams=1):
        kw = _fastergpt_strategy(top_k, beams)
        return self.engine.generate(ids, max_new_tokens=new_tokens, eos_token_id=-1,
                                    num_threads=self.threads, **self.settings, **kw)["ids"]


class ReferencePaddle:
    name = "reference Paddle generate()"

    def __init__(self, work_dir, dtype, threads):
        import paddle

        from fastergpt.pretrained import load_state_dict
        from fastergpt.reference import GPTLMHeadModel

        assert dtype == "float32", "the reference runs in float32"
        if hasattr(paddle, "set_num_threads"):
            paddle.set_num_threads(threads)
        config, state = load_state_dict(os.path.join(work_dir, "hf"))
        self.model = GPTLMHeadModel(config)
        self.model.load_numpy_state_dict(state)
        self.model.eval()

    def generate(self, ids, new_tokens, top_k, beams=1):
        from fastergpt.reference import generate

        _no_beams(beams, self.name)
        kw = dict(decode_strategy="sampling", top_k=top_k, seed=1) if top_k else {}
        return generate(self.model, ids, max_new_tokens=new_tokens, **kw).ids


class HFTorch:
    name = "HF transformers (torch)"

    def __init__(self, work_dir, dtype, threads):
        import torch
        import transformers

        assert dtype == "float32"
        torch.set_num_threads(threads)
        self.torch = torch
        self.model = transformers.AutoModelForCausalLM.from_pretrained(os.path.join(work_dir, "hf")).eval()

    def generate(self, ids, new_tokens, top_k, beams=1):
        t = self.torch.from_numpy(ids)
        kw = dict(do_sample=True, top_k=top_k) if top_k else dict(do_sample=False)
        if beams > 1:
            kw = dict(do_sample=False, num_beams=beams)
        with self.torch.no_grad():
            out = self.model.generate(t, attention_mask=self.torch.ones_like(t), max_new_tokens=new_tokens,
                                      min_new_tokens=new_tokens, pad_token_id=0, **kw)
        return out[:, ids.shape[1]:].numpy()


class CTranslate2:
    name = "CTranslate2"

    def __init__(self, work_dir, dtype, threads):
        import ctranslate2

        assert dtype in ("float32", "int8"), "CTranslate2 has no fp16 compute on CPU"
        self.gen = ctranslate2.Generator(os.path.join(work_dir, f"ct2_{dtype}"), device="cpu",
                                         compute_type=dtype, inter_threads=1, intra_threads=threads)
        import json

        with open(os.path.join(work_dir, "hf", "vocab.json")) as f:
            vocab = json.load(f)
        self.id_to_token = {i: t for t, i in vocab.items()}

    def generate(self, ids, new_tokens, top_k, beams=1):
        tokens = [[self.id_to_token[int(i)] for i in row] for row in ids]
        res = self.gen.generate_batch(tokens, max_length=new_tokens, min_length=new_tokens,
                                      include_prompt_in_result=False, end_token=[],
                                      sampling_topk=top_k or 1, beam_size=beams)
        return np.array([r.sequences_ids[0] for r in res], dtype=np.int64)


class OnnxRuntime:
    name = "ONNX Runtime"

    def __init__(self, work_dir, dtype, threads):
        from engines.onnx_gpt2 import OrtGPT2

        assert dtype in ("float32", "int8")
        self.model = OrtGPT2(os.path.join(work_dir, f"onnx_{dtype}", "model.onnx"), threads)

    def generate(self, ids, new_tokens, top_k, beams=1):
        _no_beams(beams, self.name)
        return self.model.generate(ids, new_tokens, top_k)


class LlamaCpp:
    """llama.cpp through llama-cpp-python, on a GGUF of the same weights (float32, float16,
    q8_0 for int8, q4_0 for int4; engines/llama_cpp_gguf.py). One sequence at a time (its API has no
    batch); greedy is its temperature-0 sampler, top-k its own top-k sampler."""
    name = "llama.cpp (llama-cpp-python)"

    def __init__(self, work_dir, dtype, threads):
        from llama_cpp import Llama

        self.llm = Llama(model_path=os.path.join(work_dir, f"gguf_{dtype}", "model.gguf"),
                         n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads,
                         verbose=False)

    def generate(self, ids, new_tokens, top_k, beams=1):
        _no_beams(beams, self.name)
        rows = []
        for row in ids:
            # generate() keeps the KV cache of the longest prefix shared with the last call;
            # reset() first, so every call runs its prompt pass as the other engines do.
            self.llm.reset()
            tokens = []
            sampling = dict(top_k=top_k, temp=1.0, seed=1) if top_k else dict(top_k=1, temp=0.0)
            for t in self.llm.generate(row.tolist(), reset=True, **sampling):
                tokens.append(t)
                if len(tokens) == new_tokens:
                    break
            rows.append(tokens)
        return np.array(rows, dtype=np.int64)


ENGINES = {
    "fastergpt-paddle": FasterGPTPaddle,
    "fastergpt-numpy": FasterGPTNumPy,
    "reference": ReferencePaddle,
    "hf-torch": HFTorch,
    "ctranslate2": CTranslate2,
    "onnxruntime": OnnxRuntime,
    "llama-cpp": LlamaCpp,
}
