"""Continuous batching: sequences join a running batch (their prompt pass) and leave it
(finished, stopped or cancelled) between decoding steps, over a KV cache reserved once
for `capacity` rows. The loop's steps run in C++ (csrc/core/generation_stream.h) with
the GIL released; a sequence's tokens are what `Engine.generate` gives its prompt alone
(sampling: as row `rng_row` of that call), whatever else shares the batch.

    batch = engine.batch(capacity=8)
    row = batch.join(prompt_ids, max_new_tokens=32, decode_strategy="sampling", seed=1)
    while batch.running:
        tokens, logprobs = batch.step()   # tokens[row] is -1 for rows with nothing new
        ...                               # a finished row: batch.release(row)
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from fastergpt.settings import resolve_settings, settings_numbers


class ContinuousBatch:
    def __init__(self, engine, capacity: int, max_positions: Optional[int] = None,
                 num_threads: int = 0, max_memory_mb: int = 0, kv_cache_dtype: str = "float32",
                 matmul_precision: str = "float32"):
        self.engine = engine
        self.config = engine.config
        self.capacity = int(capacity)
        self.max_positions = int(max_positions or self.config.n_positions)
        sizing = settings_numbers(resolve_settings(config=self.config, num_threads=num_threads,
                                                   max_memory_mb=max_memory_mb, seed=0,
                                                   kv_cache_dtype=kv_cache_dtype,
                                                   matmul_precision=matmul_precision))
        self._batch = engine._engine.batch(self.capacity, self.max_positions, sizing)
        self.num_threads = num_threads
        # One pass serves every row: the cache is reserved once, in this type, and the
        # weights multiply in one precision. A joining sequence takes both (another value
        # is refused by name).
        self.kv_cache_dtype = kv_cache_dtype
        self.matmul_precision = matmul_precision

    def join(self, prompt_ids, rng_row: int = 0, **settings) -> int:
        """Adds a sequence (1-D token ids; settings as `Engine.generate`); returns its row.
        Raises ValueError naming the problem, or when every row is running."""
        return self.join_many([(prompt_ids, rng_row, settings)])[0]

    def join_many(self, joins) -> list:
        """Several sequences at once, `[(prompt_ids, rng_row, settings dict), ...]`, in one
        prompt pass (the weights read once); all join or, on a bad one, none."""
        prompts, values, rng_rows = [], [], []
        for prompt_ids, rng_row, settings in joins:
            prompt = np.asarray(prompt_ids)
            if prompt.dtype.kind not in "iu" or prompt.ndim != 1:
                raise ValueError(f"prompt_ids: must be 1-D integer token ids, got {prompt.dtype} "
                                 f"shape {list(prompt.shape)}")
            settings = dict(settings)
            settings.setdefault("num_threads", self.num_threads)
            settings.setdefault("kv_cache_dtype", self.kv_cache_dtype)
            settings.setdefault("matmul_precision", self.matmul_precision)
            prompts.append(prompt.astype(np.int64))
            values.append(settings_numbers(resolve_settings(config=self.config, **settings)))
            rng_rows.append(int(rng_row))
        return [int(r) for r in self._batch.join_many(prompts, values, rng_rows)]

    def step(self):
        """(tokens int64 [capacity], logprobs float32 [capacity]) of one step, -1 where a
        row made no token; None when no row is running."""
        return self._batch.next()

    def finish(self, row: int) -> None:
        """Ends a running row now (a stop string, a cancelled request)."""
        self._batch.finish(int(row))

    def release(self, row: int) -> None:
        """Frees a finished (or finished here) row's slot for the next join."""
        self._batch.release(int(row))

    @property
    def running(self) -> int:
        return self._batch.running

    @property
    def free_rows(self) -> int:
        return self._batch.free_rows
