"""The server's loop: requests wait in a bounded queue, join the continuous batch
(fastergpt.continuous) as rows free up, and get their tokens and text as each step
makes them; a request whose client went away leaves the batch at once.

One thread runs the loop; HTTP handlers submit requests and read their events from a
thread-safe queue per request.
"""
from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Optional

from fastergpt.streaming import TextDeltas


class QueueFull(Exception):
    """The waiting queue holds --max_queue requests already (HTTP 429)."""


@dataclass
class Request:
    prompt_ids: list
    settings: dict          # engine settings of one sequence (num_return_sequences = 1)
    n: int = 1              # sequences (choices); choice i samples as Philox row i
    stop: list = field(default_factory=list)
    id: int = 0
    events: "queue.Queue" = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.monotonic)
    first_token: Optional[float] = None
    # Where events go instead of `events` (an asyncio loop's queue, fed thread-safely).
    sink: Optional[object] = None
    # Events: ("token", choice, token_id, logprob, text_delta), ("done", choice,
    # finish_reason), ("error", message); all choices done -> ("end",).

    def emit(self, event) -> None:
        if self.sink is not None:
            self.sink(event)
        else:
            self.events.put(event)

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class _Row:
    request: Request
    choice: int
    deltas: TextDeltas
    made: int = 0


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.rejected = 0
        self.tokens = 0
        self.ttft_sum = 0.0
        self.ttft_count = 0

    def text(self, queue_depth: int, running: int) -> str:
        with self.lock:
            lines = [
                "# TYPE fastergpt_requests_total counter", f"fastergpt_requests_total {self.requests}",
                "# TYPE fastergpt_requests_rejected_total counter",
                f"fastergpt_requests_rejected_total {self.rejected}",
                "# TYPE fastergpt_generated_tokens_total counter",
                f"fastergpt_generated_tokens_total {self.tokens}",
                "# TYPE fastergpt_queue_depth gauge", f"fastergpt_queue_depth {queue_depth}",
                "# TYPE fastergpt_running_sequences gauge", f"fastergpt_running_sequences {running}",
                "# TYPE fastergpt_time_to_first_token_seconds summary",
                f"fastergpt_time_to_first_token_seconds_sum {self.ttft_sum:.6f}",
                f"fastergpt_time_to_first_token_seconds_count {self.ttft_count}",
            ]
        return "\n".join(lines) + "\n"


class Scheduler:
    def __init__(self, engine, tokenizer, max_batch: int = 8, max_queue: int = 64,
                 max_positions: Optional[int] = None, num_threads: int = 0,
                 kv_cache_dtype: str = "float32", matmul_precision: str = "float32"):
        self.engine = engine
        self.tokenizer = tokenizer
        self.max_batch = int(max_batch)
        self.max_queue = int(max_queue)
        self.batch = engine.batch(self.max_batch, max_positions, num_threads=num_threads,
                                  kv_cache_dtype=kv_cache_dtype,
                                  matmul_precision=matmul_precision)
        self.max_positions = self.batch.max_positions
        self.metrics = Metrics()
        self._waiting: "queue.Queue[Request]" = queue.Queue()
        self._rows: dict = {}          # batch row -> _Row
        self._left: dict = {}          # request id -> choices still running
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fastergpt-scheduler", daemon=True)
        self._thread.start()

    # ---- called from the HTTP handlers ----
    def submit(self, request: Request) -> Request:
        if request.n > self.max_batch:
            raise ValueError(f"n must be <= {self.max_batch} (the server's --max_batch), got {request.n}")
        if self._waiting.qsize() >= self.max_queue:
            with self.metrics.lock:
                self.metrics.rejected += 1
            raise QueueFull(f"the queue holds {self.max_queue} requests; try again later")
        request.id = next(self._ids)
        with self.metrics.lock:
            self.metrics.requests += 1
        self._waiting.put(request)
        self._wake.set()
        return request

    def queue_depth(self) -> int:
        return self._waiting.qsize()

    def running(self) -> int:
        return len(self._rows)

    def alive(self) -> bool:
        """Whether the loop thread runs (it catches every error of a step, so this turns
        False only if the thread itself was lost)."""
        return self._thread.is_alive() and not self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    # ---- the loop thread ----
    def _admit(self) -> None:
        """The waiting requests that fit join together, in one prompt pass; if one of
        them is bad, they join one by one so that only it fails."""
        admitted, free = [], self.batch.free_rows
        while not self._waiting.empty():
            request = self._waiting.queue[0]  # FIFO: the oldest waits for room, nothing jumps it
            if request.cancelled.is_set():
                self._waiting.get()
                request.emit(("end",))
                continue
            if free < request.n:
                break
            self._waiting.get()
            admitted.append(request)
            free -= request.n
        if not admitted:
            return
        try:
            self._join(admitted)
        except ValueError:  # one of them is bad: join them one by one, so only it fails
            for request in admitted:
                try:
                    self._join([request])
                except ValueError as e:
                    request.emit(("error", str(e)))
                    request.emit(("end",))

    def _join(self, requests: list) -> None:
        """Every choice of every request joins in one prompt pass (all or none)."""
        rows = iter(self.batch.join_many([(r.prompt_ids, choice, r.settings)
                                          for r in requests for choice in range(r.n)]))
        for request in requests:
            for choice in range(request.n):
                self._start(next(rows), request, choice)
            self._left[request.id] = request.n

    def _start(self, row: int, request: Request, choice: int) -> None:
        self._rows[row] = _Row(request, choice, TextDeltas(self.tokenizer, 1, request.stop))

    def _end_row(self, row: int, reason: str) -> None:
        state = self._rows.pop(row)
        self.batch.finish(row)
        self.batch.release(row)
        request = state.request
        request.emit(("done", state.choice, reason))
        self._left[request.id] -= 1
        if self._left[request.id] == 0:
            del self._left[request.id]
            request.emit(("end",))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._admit()
                for row, state in list(self._rows.items()):  # clients that went away
                    if state.request.cancelled.is_set():
                        self._end_row(row, "cancelled")
                if not self._rows:
                    self._wake.wait(timeout=0.5)
                    self._wake.clear()
                    continue
                out = self.batch.step()
                if out is None:
                    continue
                tokens, logprobs = out
                now = time.monotonic()
                for row, state in list(self._rows.items()):
                    token = int(tokens[row])
                    if token < 0:
                        continue
                    request = state.request
                    if request.first_token is None:
                        request.first_token = now
                        with self.metrics.lock:
                            self.metrics.ttft_sum += now - request.submitted
                            self.metrics.ttft_count += 1
                    state.made += 1
                    eos = request.settings.get("eos_token_id", -1)
                    ended_by_eos = eos is not None and eos >= 0 and token == eos
                    at_max = state.made >= request.settings["max_new_tokens"]
                    delta, stopped = state.deltas.push(0, token, final=ended_by_eos or at_max)
                    request.emit(("token", state.choice, token, float(logprobs[row]), delta))
                    with self.metrics.lock:
                        self.metrics.tokens += 1
                    if stopped or ended_by_eos:
                        self._end_row(row, "stop")
                    elif at_max:
                        self._end_row(row, "length")
            except Exception as e:  # never let the loop die: fail the running requests
                for row in list(self._rows):
                    state = self._rows[row]
                    state.request.emit(("error", f"internal error: {e}"))
                    self._end_row(row, "error")
