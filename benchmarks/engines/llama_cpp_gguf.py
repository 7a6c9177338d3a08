"""The benchmark's GPT-2 checkpoint as a GGUF file for llama.cpp (llama-cpp-python), in
float32, float16, bfloat16, q8_0 or q4_0, written with the `gguf` package from the same safetensors the
other engines convert.

GGUF names a GPT-2 as llama.cpp's `gpt2` architecture reads it: token_embd,
position_embd, blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm, ffn_up, ffn_down},
output_norm (the head is tied to token_embd). Matrices are [out, in] (GPT-2's Conv1D
stores [in, out], so they are transposed); norms and biases stay float32, as llama.cpp's
own converter keeps them. The tokenizer is the checkpoint's byte-level vocabulary; the
benchmark feeds token ids, so its one merge only satisfies the loader.
"""
from __future__ import annotations

import json
import os

import numpy as np

# llama.cpp's dtype names for the benchmark's: int8 is q8_0 and int4 q4_0 (blocks of 32,
# one float16 scale each), the formats llama.cpp users run for 8 and 4 bits. With q4_0 the
# token table (GPT-2's tied head) stays q8_0, as fastergpt's int4 keeps it int8 (and
# llama.cpp's quantizer keeps the output matrix above 4 bits).
GGUF_TYPES = {"float32": "F32", "float16": "F16", "int8": "Q8_0", "int4": "Q4_0",
              "int4-vocab4": "Q4_0",  # int4-vocab4: the token table in q4_0 too
              "bfloat16": "BF16"}


def _matrix_names(layer: int) -> dict:
    h = f"transformer.h.{layer}."
    b = f"blk.{layer}."
    return {h + "attn.c_attn": b + "attn_qkv", h + "attn.c_proj": b + "attn_output",
            h + "mlp.c_fc": b + "ffn_up", h + "mlp.c_proj": b + "ffn_down"}


def write_gguf(hf_dir: str, out_path: str, dtype: str) -> None:
    import gguf
    from safetensors.numpy import load_file

    qtype = getattr(gguf.GGMLQuantizationType, GGUF_TYPES[dtype])
    vocab_qtype = gguf.GGMLQuantizationType.Q8_0 if dtype == "int4" else qtype
    with open(os.path.join(hf_dir, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(hf_dir, "vocab.json")) as f:
        vocab = json.load(f)
    state = load_file(os.path.join(hf_dir, "model.safetensors"))
    L, D = cfg["n_layer"], cfg["n_embd"]

    w = gguf.GGUFWriter(out_path, "gpt2")
    w.add_block_count(L)
    w.add_context_length(cfg["n_positions"])
    w.add_embedding_length(D)
    w.add_feed_forward_length(cfg.get("n_inner") or 4 * D)
    w.add_head_count(cfg["n_head"])
    w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
    # llama_ftype ALL_F32 / MOSTLY_F16 / MOSTLY_Q8_0 / MOSTLY_Q4_0
    w.add_file_type({"float32": 0, "float16": 1, "int8": 7, "int4": 2, "int4-vocab4": 2,
                     "bfloat16": 32}[dtype])
    tokens = sorted(vocab, key=vocab.get)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    types[cfg["eos_token_id"]] = gguf.TokenType.CONTROL
    w.add_token_types(types)
    w.add_token_merges(["\u0120 w"])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])

    def matrix(name, a, qt=qtype):  # [out, in] float32 -> the file's type
        a = np.ascontiguousarray(a, dtype=np.float32)
        if dtype == "float32":
            w.add_tensor(name, a)
        elif dtype == "float16":
            w.add_tensor(name, a.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(a, qt), raw_dtype=qt)  # shape from its bytes

    def vector(name, a):
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))

    matrix("token_embd.weight", state["transformer.wte.weight"], vocab_qtype)
    vector("position_embd.weight", state["transformer.wpe.weight"])  # a table, kept float32
    for layer in range(L):
        h, b = f"transformer.h.{layer}.", f"blk.{layer}."
        for src, dst in (("ln_1", "attn_norm"), ("ln_2", "ffn_norm")):
            vector(b + dst + ".weight", state[h + src + ".weight"])
            vector(b + dst + ".bias", state[h + src + ".bias"])
        for src, dst in _matrix_names(layer).items():
            matrix(dst + ".weight", state[src + ".weight"].T)  # Conv1D [in, out] -> [out, in]
            vector(dst + ".bias", state[src + ".bias"])
    vector("output_norm.weight", state["transformer.ln_f.weight"])
    vector("output_norm.bias", state["transformer.ln_f.bias"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
