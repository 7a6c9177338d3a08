"""Writes one random-weight checkpoint (GPT-2, or LLaMA with arch="llama") and every engine's converted copy of
it into a work directory, so all engines run the same weights:
hf/ (HF layout + a GPT-2-shaped byte-level tokenizer), fastergpt_<dtype>/
(packed for the NumPy module), ct2_<dtype>/, onnx_<dtype>/, gguf_<dtype>/ (llama.cpp)."""
from __future__ import annotations

import json
import os

import numpy as np

from fastergpt.tokenizer import byte_alphabet


def write_hf(work: str, layers: int, hidden: int, heads: int, vocab: int, seed: int = 0,
             arch: str = "gpt2") -> str:
    import torch
    import transformers

    hf_dir = os.path.join(work, "hf")
    if os.path.exists(os.path.join(hf_dir, "config.json")):
        return hf_dir
    torch.manual_seed(seed)
    if arch == "llama":  # about GPT-2-small's size: 4 KV heads, a gated MLP of 8/3 x hidden
        cfg = transformers.LlamaConfig(
            num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 3), intermediate_size=hidden * 8 // 3,
            vocab_size=vocab, max_position_embeddings=1024, tie_word_embeddings=False,
            bos_token_id=vocab - 1, eos_token_id=vocab - 1)
        model = transformers.LlamaForCausalLM(cfg).eval()
    else:
        cfg = transformers.GPT2Config(n_layer=layers, n_embd=hidden, n_head=heads, vocab_size=vocab,
                                      n_positions=1024, bos_token_id=vocab - 1, eos_token_id=vocab - 1)
        model = transformers.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(hf_dir)
    tokens = list(byte_alphabet()) + [f"Ġw{i}" for i in range(vocab - 257)] + ["<|endoftext|>"]
    with open(os.path.join(hf_dir, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f)
    with open(os.path.join(hf_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    if arch != "gpt2":  # converters load these families' tokenizers from tokenizer.json
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.save(os.path.join(hf_dir, "tokenizer.json"))
        with open(os.path.join(hf_dir, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tokens[-1],
                       "eos_token": tokens[-1]}, f)
    return hf_dir


def _engine_loads(Engine, out: str) -> bool:
    """Whether `out` holds a saved engine this fastergpt reads (a weight format's layout
    may have changed since it was packed)."""
    if not os.path.exists(os.path.join(out, "engine_config.json")):
        return False
    try:
        Engine.load(out)
    except ValueError:
        return False
    return True


# The benchmark's dtypes: (fastergpt weight format, its vocab_dtype). "int4-vocab4" is int4
# with the token table / LM head in 4 bits too (fastergpt's vocab_dtype="int4"; llama.cpp's
# q4_0 with a q4_0 output matrix), against "int4", whose vocabulary stays 8-bit.
BENCH_DTYPES = {"float32": ("float32", None), "float16": ("float16", None), "int8": ("int8", None),
                "int4": ("int4", None), "int4-vocab4": ("int4", "int4"), "bfloat16": ("bfloat16", None)}


def prepare(work: str, layers: int, hidden: int, heads: int, vocab: int, engines: set, log=print,
            arch: str = "gpt2") -> None:
    os.makedirs(work, exist_ok=True)
    hf_dir = write_hf(work, layers, hidden, heads, vocab, arch=arch)
    if "fastergpt-numpy" in engines:
        from fastergpt.engine import Engine

        for dtype, (fmt, vocab_dtype) in BENCH_DTYPES.items():
            out = os.path.join(work, f"fastergpt_{dtype}")
            if not _engine_loads(Engine, out):  # absent, or packed by another layout
                Engine.from_pretrained(hf_dir, fmt, vocab_dtype=vocab_dtype).save(out)
                log(f"packed fastergpt {dtype}")
    if "ctranslate2" in engines:
        import ctranslate2

        for dtype in ("float32", "int8"):
            out = os.path.join(work, f"ct2_{dtype}")
            if not os.path.exists(os.path.join(out, "model.bin")):
                ctranslate2.converters.TransformersConverter(hf_dir).convert(out, quantization=dtype, force=True)
                log(f"converted CTranslate2 {dtype}")
    if "llama-cpp" in engines:
        from engines.llama_cpp_gguf import write_gguf

        for dtype in BENCH_DTYPES:
            out = os.path.join(work, f"gguf_{dtype}", "model.gguf")
            if not os.path.exists(out):
                os.makedirs(os.path.dirname(out), exist_ok=True)
                write_gguf(hf_dir, out + ".partial", dtype)
                os.replace(out + ".partial", out)
                log(f"wrote GGUF {dtype} for llama.cpp")
    if "onnxruntime" in engines:
        import transformers

        from engines import onnx_gpt2

        fp32 = os.path.join(work, "onnx_float32", "model.onnx")
        if not os.path.exists(fp32):
            os.makedirs(os.path.dirname(fp32), exist_ok=True)
            onnx_gpt2.export(transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval(), fp32)
            log("exported ONNX float32")
        int8 = os.path.join(work, "onnx_int8", "model.onnx")
        if not os.path.exists(int8):
            os.makedirs(os.path.dirname(int8), exist_ok=True)
            onnx_gpt2.quantize_int8(fp32, int8)
            log("quantized ONNX int8")
