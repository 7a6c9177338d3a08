"""`Engine`: the fused generation from NumPy through the pybind11 module, no Paddle graph.

Same engine, same packed weights and same results as `FasterGPT`; useful
where a Paddle program is unwanted (and for measuring the engine alone).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from fastergpt.config import GPTConfig
from fastergpt.ops import engine_module
from fastergpt.packing import pack_weights
from fastergpt.quantize import normalize_dtype
from fastergpt.settings import check_int_array, resolve_settings, settings_numbers


DEVICES = ("cpu", "gpu")
PACKED_FILE = "engine.safetensors"
PACKED_CONFIG = "engine_config.json"


def check_device(device) -> str:
    """"cpu" or "gpu" ("cuda" accepted); a ValueError naming the value otherwise."""
    name = device.lower() if isinstance(device, str) else device
    name = "gpu" if name == "cuda" else name
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return name


def cuda_available() -> tuple[bool, str]:
    """(True, "") where the engine can run on a GPU here, else (False, why not)."""
    module = engine_module()
    if not module.cuda_built():
        return False, ("fastergpt was built without its CUDA backend (nvcc or cuBLAS "
                       "missing at build time; see FASTERGPT_CUDA)")
    if module.cuda_device_count() == 0:
        return False, "no CUDA GPU is visible to this process"
    return True, ""


class Engine:
    """Build from a config and a state dict with the family's HF names (arrays), in a
    weight format ("float32", "float16", "int8" or "int4"; the token table and LM head
    take `config.vocab_dtype`, by default the format's own), or with `from_pretrained`.

    `device`: "cpu" (the default) or "gpu" (the CUDA backend, float32 and float16
    weights; the weights are copied to the GPU once, here). A build without the CUDA
    backend, a machine without a GPU or a format the GPU lacks is a ValueError saying
    which: nothing falls back to the CPU."""

    def __init__(self, config: GPTConfig, state_dict: Optional[dict] = None,
                 dtype: str = "float32", *, packed: Optional[list] = None, tokenizer=None,
                 all_reduce=None, rank: int = 0, size: int = 1, device: str = "cpu",
                 vocab_dtype: Optional[str] = None):
        """`all_reduce`, `rank`, `size`: this engine is shard `rank` of `size` of a
        tensor-parallel model (its config and weights the shard's; build it with
        fastergpt.tensor_parallel.shard_engine). `vocab_dtype` overrides
        `config.vocab_dtype`."""
        config = config.with_vocab_dtype(vocab_dtype)
        self.config = config.validate()
        self.weight_format = normalize_dtype(dtype)
        self.device = check_device(device)
        if packed is None:
            packed = pack_weights(config, state_dict, self.weight_format)
        self._packed = packed  # the engine reads these arrays in place (on the CPU)
        self._engine = engine_module().Engine(
            config.architecture_string(), self.weight_format, [a for _, a in packed],
            all_reduce=all_reduce, rank=rank, size=size, device=self.device)
        self.set_tokenizer(tokenizer)

    def set_tokenizer(self, tokenizer) -> None:
        """The tokenizer whose vocabulary `stop` strings are matched on. None, or one it
        cannot use (larger than the model, an unknown decoder), leaves no vocabulary, and
        stop strings then say why."""
        from fastergpt.stops import vocabulary_of

        data, offsets, self.no_vocabulary_reason = vocabulary_of(tokenizer, self.config.vocab_size)
        self._vocabulary = (data, offsets)

    @classmethod
    def from_model(cls, model, dtype: str = "float32", device: str = "cpu",
                   vocab_dtype: Optional[str] = None) -> "Engine":
        return cls(model.config, model.state_dict_numpy(), dtype, device=device,
                   vocab_dtype=vocab_dtype)

    @classmethod
    def from_pretrained(cls, model_name_or_path=None, dtype: Optional[str] = None,
                        device: str = "cpu", vocab_dtype: Optional[str] = None) -> "Engine":
        """Same sources and arguments as FasterGPT.from_pretrained, and `device`."""
        from fastergpt.pretrained import load_packed, tokenizer_or_none

        device = check_device(device)  # before a checkpoint is read
        config, packed, dtype = load_packed(model_name_or_path, dtype, vocab_dtype)
        return cls(config, dtype=dtype, packed=packed,
                   tokenizer=tokenizer_or_none(model_name_or_path), device=device)

    def save(self, directory) -> Path:
        """Writes the packed weights (engine.safetensors) and their description, so
        `Engine.load` starts without a checkpoint, a conversion or Paddle."""
        from safetensors.numpy import save_file

        d = Path(os.fspath(directory))
        d.mkdir(parents=True, exist_ok=True)
        save_file({name: array for name, array in self._packed}, str(d / PACKED_FILE))
        info = {"model": self.config.to_dict(), "dtype": self.weight_format,
                "order": [name for name, _ in self._packed]}
        (d / PACKED_CONFIG).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory, device: str = "cpu") -> "Engine":
        """An Engine from a directory written by `save`."""
        from safetensors import safe_open

        d = Path(os.fspath(directory))
        try:
            info = json.loads((d / PACKED_CONFIG).read_text(encoding="utf-8"))
            if not isinstance(info, dict) or not isinstance(info.get("model"), dict):
                raise ValueError(f"{d / PACKED_CONFIG}: not a saved engine's description "
                                 "(an object whose 'model' is an object)")
            config = GPTConfig.from_dict(info["model"])
            # One tensor at a time: peak memory stays at the packed size (load_file
            # would hold the whole file and its arrays at once).
            with safe_open(str(d / PACKED_FILE), framework="np") as f:
                missing = [n for n in info["order"] if n not in f.keys()]
                if missing:
                    raise ValueError(f"{d / PACKED_FILE}: missing tensor(s) {missing[:5]}")
                packed = [(name, f.get_tensor(name)) for name in info["order"]]
            bad = [n for n, a in packed if a.dtype.kind == "f" and not np.isfinite(a).all()]
            if bad:
                raise ValueError(f"{d / PACKED_FILE}: tensor(s) {bad[:5]} hold NaN or Inf values")
        except FileNotFoundError as e:
            raise ValueError(f"{d} holds no saved engine ({e.filename} is missing)") from None
        except ValueError:
            raise
        except Exception as e:
            raise ValueError(f"{d}: the saved engine is unreadable: {e}") from None
        return cls(config, dtype=info["dtype"], packed=packed, device=device)

    def generate(self, input_ids, attention_mask=None, return_logprobs: bool = False,
                 stop=None, end_token_ids=None, **settings) -> dict:
        """Settings, `stop` and `end_token_ids` as `FasterGPT.generate`; returns {'ids',
        'lengths', 'scores'[, 'logprobs']} arrays."""
        from fastergpt.stops import need_vocabulary, normalize_end_ids, normalize_stops

        ids = check_int_array(input_ids, "input_ids")
        mask = None if attention_mask is None else check_int_array(attention_mask, "attention_mask")
        values = settings_numbers(resolve_settings(config=self.config, **settings))
        need_vocabulary(stop, self.no_vocabulary_reason)
        return self._engine.generate(ids, mask, values, return_logprobs=return_logprobs,
                                     end_token_ids=normalize_end_ids(end_token_ids),
                                     stop=normalize_stops(stop), vocabulary=self._vocabulary)

    def generate_stream(self, input_ids, attention_mask=None, tokenizer=None, stop=(),
                        end_token_ids=(), **settings):
        """`generate` a step at a time: yields a `fastergpt.streaming.StreamStep` per step
        (each row's new token, its log-probability and, with a tokenizer, its text
        delta). `stop`: strings that end a row (not returned; needs the tokenizer);
        `end_token_ids`: more ids that end a row besides eos_token_id. Beam search
        cannot stream (it ranks whole sequences at the end)."""
        from fastergpt.stops import normalize_end_ids, normalize_stops
        from fastergpt.streaming import stream_steps

        ids = check_int_array(input_ids, "input_ids")
        mask = None if attention_mask is None else check_int_array(attention_mask, "attention_mask")
        values = resolve_settings(config=self.config, **settings)
        stop = normalize_stops(stop)
        if stop and tokenizer is None:
            raise ValueError("stop strings need a tokenizer to match the text")
        extra = normalize_end_ids(end_token_ids)
        ends = [int(values["eos_token_id"])] + extra
        # checks (end ids included), then the prompt pass
        stream = self._engine.stream(ids, mask, settings_numbers(values), end_token_ids=extra)
        rows = ids.shape[0] * int(values["num_return_sequences"])
        return stream_steps(stream, rows, ends, tokenizer, list(stop), int(values["max_new_tokens"]))

    def batch(self, capacity: int, max_positions: Optional[int] = None, num_threads: int = 0,
              max_memory_mb: int = 0, kv_cache_dtype: str = "float32",
              matmul_precision: str = "float32"):
        """An empty continuous batch (`fastergpt.continuous.ContinuousBatch`) of `capacity`
        rows: sequences join and leave it between steps. Its KV cache is reserved once, in
        `kv_cache_dtype` ("float32" or "float16"); its passes multiply float weights in
        `matmul_precision` ("float32" or "bfloat16")."""
        from fastergpt.continuous import ContinuousBatch

        return ContinuousBatch(self, capacity, max_positions, num_threads, max_memory_mb,
                               kv_cache_dtype, matmul_precision)

    def logits(self, input_ids, attention_mask=None, num_threads: int = 0,
               matmul_precision: str = "float32"):
        """Next-token logits at every position, float32 [B, L, V] (zeros under padding):
        for scoring text and for comparing weight formats (and matmul precisions)."""
        ids = check_int_array(input_ids, "input_ids")
        mask = None if attention_mask is None else check_int_array(attention_mask, "attention_mask")
        settings = {"num_threads": num_threads, "matmul_precision": matmul_precision}
        return self._engine.logits(ids, mask, settings_numbers(settings))
