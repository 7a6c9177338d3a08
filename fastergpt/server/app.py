"""The HTTP side of `fastergpt serve`: OpenAI's completions and chat completions API
(JSON, or server-sent events ending with `data: [DONE]`), models, health, Prometheus
metrics and a small page at `/`. Bad requests answer 400 in OpenAI's error JSON, a
full queue 429; the server keeps serving."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Optional

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from fastergpt.server.scheduler import QueueFull, Request, Scheduler
from fastergpt.stops import normalize_stops
from fastergpt.tokenizer import check_unicode

MAX_STOP = 4
COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stop",
                     "seed", "logprobs", "stream", "user", "presence_penalty", "frequency_penalty",
                     "repetition_penalty", "stream_options"}
CHAT_FIELDS = (COMPLETION_FIELDS - {"prompt", "logprobs"}) | {"messages", "logprobs", "top_logprobs",
                                                               "max_completion_tokens"}


class BadRequest(Exception):
    def __init__(self, message: str, param: Optional[str] = None, status: int = 400):
        super().__init__(message)
        self.param, self.status = param, status


def _number(body, name, default, kind, lo=None, hi=None):
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not float(v).is_integer()):
        raise BadRequest(f"{name} must be {'an integer' if kind is int else 'a number'}, got {v!r}", name)
    v = kind(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise BadRequest(f"{name} must be in [{lo}, {hi}], got {v}", name)
    return v


def _settings(body, scheduler: Scheduler, prompt_len: int) -> tuple:
    """(engine settings, n, stop) from an OpenAI request body."""
    room = scheduler.max_positions - prompt_len
    if room < 1:
        raise BadRequest(f"the prompt has {prompt_len} tokens; this server's context is "
                         f"{scheduler.max_positions} tokens", "prompt")
    max_tokens = _number(body, "max_tokens", body.get("max_completion_tokens", 16), int, 1, 1 << 30)
    if max_tokens > room:
        raise BadRequest(f"max_tokens={max_tokens} with a prompt of {prompt_len} tokens exceeds this "
                         f"server's context of {scheduler.max_positions} tokens", "max_tokens")
    temperature = _number(body, "temperature", 1.0, float, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, float, 0.0, 1.0)
    top_k = _number(body, "top_k", 0, int, 0, 1 << 31)
    n = _number(body, "n", 1, int, 1, scheduler.max_batch)
    seed = _number(body, "seed", None, int, 0, 2**53 - 1)
    penalty = _number(body, "repetition_penalty", 1.0, float, 0.01, 100.0)
    for name in ("presence_penalty", "frequency_penalty"):
        if _number(body, name, 0.0, float, -2.0, 2.0) != 0.0:
            raise BadRequest(f"{name} is not supported (use repetition_penalty)", name)
    if top_p == 0.0:
        raise BadRequest("top_p must be > 0", "top_p")
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop) or len(stop) > MAX_STOP:
        raise BadRequest(f"stop must be a non-empty string or a list of at most {MAX_STOP} of them", "stop")
    try:
        normalize_stops(stop)  # (what else a stop string must be: valid Unicode)
    except ValueError as e:
        raise BadRequest(str(e), "stop")
    tok = scheduler.tokenizer
    settings = dict(max_new_tokens=max_tokens, repetition_penalty=penalty,
                    eos_token_id=-1 if tok.eos_token_id is None else tok.eos_token_id)
    if temperature == 0.0:
        settings["decode_strategy"] = "greedy_search"
    else:
        settings.update(decode_strategy="sampling", temperature=temperature, top_p=top_p, top_k=top_k,
                        seed=int(seed) if seed is not None else int(time.time_ns() % (2**53)))
    return settings, n, stop


class ReplicaHeader:
    """Pure ASGI middleware (it leaves streaming and disconnects alone): every response
    says which replica made it, in `x-fastergpt-replica`, so a client behind a load
    balancer, and the replica tests, can tell the replicas apart."""

    def __init__(self, app, replica: str):
        self.app, self.header = app, (b"x-fastergpt-replica", replica.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_tagged(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), self.header])
            await send(message)

        await self.app(scope, receive, send_tagged)


def create_app(scheduler: Scheduler, model_name: str, chat_template: Optional[str] = None,
               replica: str = "0"):
    app = FastAPI(title="fastergpt")
    app.add_middleware(ReplicaHeader, replica=replica)
    tok = scheduler.tokenizer

    def error(message, param=None, status=400, kind="invalid_request_error"):
        return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}},
                            status_code=status)

    async def body_of(http: HTTPRequest, fields: set) -> dict:
        try:
            body = json.loads(await http.body())
        except RecursionError:
            raise BadRequest("the request body is not valid JSON: nested too deeply")
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"the request body is not valid JSON: {e}")
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        unknown = sorted(set(body) - fields)
        if unknown:
            raise BadRequest(f"unknown field(s) {unknown}", unknown[0])
        if not isinstance(body.get("stream", False), bool):
            raise BadRequest("stream must be true or false", "stream")
        return body

    def encode(text: str, field: str) -> list:
        try:
            check_unicode(text, field)  # (a lone surrogate the JSON escaped)
        except ValueError as e:
            raise BadRequest(str(e), field)
        ids, mask = tok.encode_batch([text])
        return [int(i) for i, m in zip(ids[0], mask[0]) if m]

    def attach(request: Request) -> Request:
        """The loop thread hands this request's events to an asyncio queue of this event
        loop (no thread waits per request)."""
        loop, inbox = asyncio.get_running_loop(), asyncio.Queue()
        request.inbox = inbox
        request.sink = lambda event: loop.call_soon_threadsafe(inbox.put_nowait, event)
        return request

    async def events(request: Request):
        """The request's events, as the loop thread makes them."""
        while True:
            event = await request.inbox.get()
            if event[0] == "end":
                return
            yield event

    async def run(http: HTTPRequest, body: dict, prompts: list, chat: bool):
        requests = []
        for text in prompts:
            ids = encode(text, "messages" if chat else "prompt")
            if not ids:
                raise BadRequest("the prompt encodes to no tokens", "prompt")
            settings, n, stop = _settings(body, scheduler, len(ids))
            requests.append((attach(Request(ids, settings, n, stop)), len(ids)))
        try:
            for req, _ in requests:
                scheduler.submit(req)
        except QueueFull as e:
            for req, _ in requests:
                req.cancel()
            raise BadRequest(str(e), status=429)
        created, rid = int(time.time()), f"{'chatcmpl' if chat else 'cmpl'}-{requests[0][0].id}"
        obj = "chat.completion" if chat else "text_completion"
        n = requests[0][0].n

        def choice_index(p, c):
            return p * n + c

        if body.get("stream"):
            async def sse():
                try:
                    for p, (req, _) in enumerate(requests):
                        async for ev in events(req):
                            if ev[0] == "error":
                                yield f"data: {json.dumps({'error': {'message': ev[1], 'type': 'server_error'}})}\n\n"
                                continue
                            if ev[0] == "token":
                                # One chunk per token, as OpenAI streams (its text may be
                                # "" while a character is incomplete).
                                _, c, token, logprob, delta = ev
                                choice = {"index": choice_index(p, c), "finish_reason": None}
                                if chat:
                                    choice["delta"] = {"content": delta}
                                else:
                                    choice["text"] = delta
                                    if body.get("logprobs") is not None:
                                        choice["logprobs"] = {"tokens": [tok.decode([token])],
                                                              "token_logprobs": [logprob]}
                            else:
                                _, c, reason = ev
                                choice = {"index": choice_index(p, c), "finish_reason": reason}
                                if chat:
                                    choice["delta"] = {}
                                else:
                                    choice["text"] = ""
                            chunk = {"id": rid, "object": obj + (".chunk" if chat else ""),
                                     "created": created, "model": model_name, "choices": [choice]}
                            yield f"data: {json.dumps(chunk)}\n\n"
                    yield "data: [DONE]\n\n"
                finally:  # the client went away (or finished): free its rows now
                    for req, _ in requests:
                        req.cancel()
            return StreamingResponse(sse(), media_type="text/event-stream")

        choices, usage_out, usage_in = {}, 0, 0
        try:
            for p, (req, prompt_len) in enumerate(requests):
                usage_in += prompt_len
                texts, tokens, logprobs, reasons = {}, {}, {}, {}
                async for ev in events(req):
                    if await http.is_disconnected():
                        req.cancel()
                    if ev[0] == "error":
                        raise BadRequest(ev[1])
                    if ev[0] == "token":
                        _, c, token, logprob, delta = ev
                        texts[c] = texts.get(c, "") + delta
                        tokens.setdefault(c, []).append(token)
                        logprobs.setdefault(c, []).append(logprob)
                        usage_out += 1
                    else:
                        reasons[ev[1]] = ev[2]
                for c in range(n):
                    choice = {"index": choice_index(p, c), "finish_reason": reasons.get(c)}
                    if chat:
                        choice["message"] = {"role": "assistant", "content": texts.get(c, "")}
                    else:
                        choice["text"] = texts.get(c, "")
                        choice["logprobs"] = None if body.get("logprobs") is None else {
                            "tokens": [tok.decode([t]) for t in tokens.get(c, [])],
                            "token_logprobs": logprobs.get(c, [])}
                    choices[choice["index"]] = choice
        finally:
            for req, _ in requests:
                req.cancel()
        return JSONResponse({"id": rid, "object": obj, "created": created, "model": model_name,
                             "choices": [choices[i] for i in sorted(choices)],
                             "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                                       "total_tokens": usage_in + usage_out}})

    @app.exception_handler(BadRequest)
    async def bad_request(_, e: BadRequest):
        return error(str(e), e.param, e.status,
                     "rate_limit_error" if e.status == 429 else "invalid_request_error")

    @app.post("/v1/completions")
    async def completions(http: HTTPRequest):
        body = await body_of(http, COMPLETION_FIELDS)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise BadRequest("prompt must be a string or a non-empty list of strings", "prompt")
        if any(not p for p in prompts):
            raise BadRequest("prompt must not be empty", "prompt")
        return await run(http, body, prompts, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(http: HTTPRequest):
        body = await body_of(http, CHAT_FIELDS)
        if chat_template is None:
            raise BadRequest("this model's tokenizer has no chat template; use /v1/completions", "messages")
        messages = body.get("messages")
        if (not isinstance(messages, list) or not messages or
                not all(isinstance(m, dict) and isinstance(m.get("role"), str) and
                        isinstance(m.get("content"), str) for m in messages)):
            raise BadRequest("messages must be a non-empty list of {role, content} strings", "messages")
        prompt = render_chat(chat_template, messages, tok)
        return await run(http, body, [prompt], chat=True)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "fastergpt"}]}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(scheduler.metrics.text(scheduler.queue_depth(), scheduler.running()))

    @app.get("/")
    async def page():
        return HTMLResponse((Path(__file__).parent / "page.html").read_text(encoding="utf-8"))

    return app


def render_chat(template: str, messages: list, tok) -> str:
    """A chat template rendered as transformers renders it (jinja2, sandboxed)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise BadRequest(f"the chat template refused the messages: {message}", "messages")

    env.globals["raise_exception"] = raise_exception
    def token(i):
        return tok.decode([i], skip_special_tokens=False) if i is not None else ""

    special = {"bos_token": token(tok.bos_token_id), "eos_token": token(tok.eos_token_id)}
    return env.from_string(template).render(messages=messages, add_generation_prompt=True, **special)
