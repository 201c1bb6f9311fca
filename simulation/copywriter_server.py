"""An OpenAI-compatible server on loopback that answers as the scripted copywriter.

`POST /v1/chat/completions` reads the JSON block between <data> and </data> in the prompt
and answers with `simulation.copywriter.write_reply`; scenarios make it misbehave the way
real servers do (429, 500, a rejected JSON-schema format, slowness, refusals, truncated or
malformed replies, a reply that breaks every rule). `POST /v1/embeddings` returns a
deterministic bag-of-words embedding.

    with running_copywriter() as (base_url, control):
        client = openai.OpenAI(base_url=base_url, api_key="test", timeout=2, max_retries=1)
        control.script("rate_limit")            # next request gets a 429, then clean replies
        control.set_mode("reject_json_schema")  # standing behaviour
        control.last_request                    # the last chat request body (JSON)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from simulation.copywriter import read_data_block, write_mischief, write_reply

SCENARIO_HEADER = "x-copywriter-scenario"

CLEAN = "clean"
REJECT_JSON_SCHEMA = "reject_json_schema"  # 400 on json_schema, answers json_object
RATE_LIMIT = "rate_limit"  # 429 (with retry-after-ms so the SDK retries at once)
SERVER_ERROR = "server_error"  # 500
SLOW = "slow"  # answers after `slow_seconds`
REFUSAL = "refusal"
TRUNCATED = "truncated"  # half a JSON document, finish_reason "length"
MALFORMED = "malformed"  # prose instead of JSON
WRONG_SHAPE = "wrong_shape"  # JSON that does not match the reply model
MISCHIEF = "mischief"  # retires an ineligible arm, cites no evidence, banned phrase, dup
REPEAT = "repeat"  # proposes again, word for word, the variants of its previous reply
SCENARIOS = frozenset(
    {
        CLEAN,
        REPEAT,
        REJECT_JSON_SCHEMA,
        RATE_LIMIT,
        SERVER_ERROR,
        SLOW,
        REFUSAL,
        TRUNCATED,
        MALFORMED,
        WRONG_SHAPE,
        MISCHIEF,
    }
)

EMBEDDING_DIMENSIONS = 256


@dataclass
class CopywriterControl:
    """Scenario control and request log, shared with the server thread.

    Each chat request takes the scenario from the `X-Copywriter-Scenario` header if sent,
    else the next queued one (`script(...)`), else the standing `mode`.
    """

    mode: str = CLEAN
    slow_seconds: float = 2.0
    embeddings_enabled: bool = True
    queue: deque[str] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    scenarios_served: list[str] = field(default_factory=list)
    embedding_requests: list[dict[str, Any]] = field(default_factory=list)
    last_variants: list[dict[str, Any]] = field(default_factory=list)
    # Seeds the order in which the copywriter explores tags with no evidence.
    exploration_seed: int = 0
    # simulation.copywriter.write_reply's options (tentative claims, combining two tags).
    tentative: bool = True
    combine: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_mode(self, mode: str) -> None:
        _check(mode)
        with self._lock:
            self.mode = mode

    def script(self, *scenarios: str) -> None:
        for scenario in scenarios:
            _check(scenario)
        with self._lock:
            self.queue.extend(scenarios)

    def reset(self) -> None:
        with self._lock:
            self.mode = CLEAN
            self.slow_seconds = 2.0
            self.embeddings_enabled = True
            self.queue.clear()
            self.requests.clear()
            self.scenarios_served.clear()
            self.embedding_requests.clear()
            self.last_variants = []
            self.exploration_seed = 0
            self.tentative = True
            self.combine = True

    @property
    def last_request(self) -> dict[str, Any]:
        with self._lock:
            if not self.requests:
                raise LookupError("the copywriter has received no chat request")
            return self.requests[-1]

    def take(self, body: dict[str, Any], header: str | None) -> str:
        with self._lock:
            self.requests.append(body)
            if header:
                scenario = header
            elif self.queue:
                scenario = self.queue.popleft()
            else:
                scenario = self.mode
            self.scenarios_served.append(scenario)
            return scenario


def _check(scenario: str) -> None:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {sorted(SCENARIOS)}")


def _error(status: int, message: str, kind: str, **headers: str) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


def _embedding(text: str) -> list[float]:
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for token in re.findall(r"\w+", text.casefold()):
        digest = hashlib.sha256(token.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % EMBEDDING_DIMENSIONS
        vector[index] += 1.0 if digest[4] % 2 else -1.0
    norm = sum(value * value for value in vector) ** 0.5 or 1.0
    return [value / norm for value in vector]


def build_app(control: CopywriterControl) -> Starlette:
    counter = itertools.count(1)

    def completion(
        body: dict[str, Any],
        content: str | None,
        *,
        finish: str = "stop",
        refusal: str | None = None,
    ) -> JSONResponse:
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_words = len((content or refusal or "").split())
        return JSONResponse(
            {
                "id": f"chatcmpl-copywriter-{next(counter)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "copywriter"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_words,
                    "completion_tokens": completion_words,
                    "total_tokens": prompt_words + completion_words,
                },
            }
        )

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        scenario = control.take(body, request.headers.get(SCENARIO_HEADER))
        response_format = (body.get("response_format") or {}).get("type")
        if scenario == RATE_LIMIT:
            return _error(
                429,
                "Rate limit reached, retry shortly",
                "rate_limit_error",
                **{"retry-after-ms": "20"},
            )
        if scenario == SERVER_ERROR:
            return _error(
                500, "The server had an error while processing your request", "server_error"
            )
        if scenario == REJECT_JSON_SCHEMA and response_format == "json_schema":
            return _error(
                400,
                "response_format of type 'json_schema' is not supported by this "
                "model; use 'json_object'",
                "invalid_request_error",
            )
        if scenario == SLOW:
            await asyncio.sleep(control.slow_seconds)
        if scenario == REFUSAL:
            return completion(body, None, refusal="I'm sorry, I can't help with that request.")
        if scenario == MALFORMED:
            return completion(body, "Here are a few ideas: 1. Spring is here 2. Shop now")
        try:
            data = read_data_block(body)
        except ValueError as error:
            return _error(400, str(error), "invalid_request_error")
        if scenario == WRONG_SHAPE:
            wrong = {"learning_ops": "none", "new_variants": [{"text": "Spring is here"}]}
            return completion(body, json.dumps(wrong))
        reply = (
            write_mischief(data)
            if scenario == MISCHIEF
            else write_reply(
                data,
                exploration_seed=control.exploration_seed,
                tentative=control.tentative,
                combine=control.combine,
            )
        )
        with control._lock:
            if scenario == REPEAT:
                # An LLM that forgets what it was told: the same texts as last time.
                reply["new_variants"] = list(control.last_variants)
            control.last_variants = list(reply["new_variants"])
        content = json.dumps(reply, ensure_ascii=False)
        if scenario == TRUNCATED:
            return completion(body, content[: len(content) // 2], finish="length")
        return completion(body, content)

    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        with control._lock:
            control.embedding_requests.append(body)
            enabled = control.embeddings_enabled
        if not enabled:
            return _error(404, "embeddings are not offered by this server", "not_found_error")
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(texts):
            vector = _embedding(str(text))
            if body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                encoded: Any = base64.b64encode(packed).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(str(text).split()) for text in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "bag-of-words"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


@contextmanager
def running_copywriter(
    control: CopywriterControl | None = None,
) -> Iterator[tuple[str, CopywriterControl]]:
    control = control or CopywriterControl()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        build_app(control),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="copywriter", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the copywriter server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1", control
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
