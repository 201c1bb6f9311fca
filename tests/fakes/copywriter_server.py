"""An OpenAI-compatible server for tests: a scripted copywriter on loopback.

It reads the JSON block between <data> and </data> in the prompt and answers with a valid
loop reply: it confirms or adds learnings citing real arm ids, recommends retiring the
eligible arms, and writes new variants that follow the top learning (a question variant
when a learning about questions is active). Scenarios make it misbehave the way real
servers do. `POST /v1/chat/completions` and `POST /v1/embeddings` (a deterministic
bag-of-words embedding).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import re
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from variants.similarity import find_near_duplicate

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
SCENARIOS = frozenset(
    {
        CLEAN,
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

KNOWN_TAGS = ("question", "personalized", "urgency", "emoji", "number")
BASES = (
    "the new season edit",
    "our spring collection",
    "the styles everyone is buying",
    "fresh picks in your size",
    "this week's best sellers",
    "everything under 30",
    "the pieces we restocked",
    "a wardrobe refresh",
    "the weekend essentials",
    "the looks our stylists love",
    "the comeback of a classic",
    "the colours of the season",
    "new shoes for long walks",
    "a gift they will keep",
    "the members-only preview",
    "the outdoor collection",
    "the travel-ready capsule",
    "denim that fits",
    "the limited colourways",
    "the cosy knit edit",
)
QUESTION_FORMS = (
    "Ready for {base}?",
    "Have you seen {base}?",
    "Looking for {base}?",
    "Want a first look at {base}?",
    "Is it time for {base}?",
)
STATEMENT_FORMS = ("Discover {base}", "Meet {base}", "Shop {base}", "Inside: {base}")


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


def read_data_block(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON document between <data> and </data> in the last user message."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            match = re.search(r"<data>\s*(.*?)\s*</data>", str(message.get("content")), re.DOTALL)
            if match:
                data: dict[str, Any] = json.loads(match.group(1))
                return data
    raise ValueError("no <data> block in the prompt")


def _tags_in(claim: str) -> list[str]:
    lowered = claim.casefold()
    return [tag for tag in KNOWN_TAGS if tag in lowered]


def _listed_contents(data: dict[str, Any]) -> list[tuple[int | str, str]]:
    corpus: list[tuple[int | str, str]] = []
    for arm in data.get("arms_ranked_worst_to_best", []) + data.get(
        "arms_without_enough_evidence", []
    ):
        corpus.append((arm["arm_id"], arm["content"]))
    corpus += [
        (f"rejected {i}", item["content"]) for i, item in enumerate(data["rejected_variants"])
    ]
    return corpus


def _compose(base: str, tags: list[str], form: int, allowed: list[str]) -> tuple[str, list[str]]:
    used: list[str] = []
    if "question" in tags:
        text = QUESTION_FORMS[form % len(QUESTION_FORMS)].format(base=base)
        used.append("question")
    else:
        text = STATEMENT_FORMS[form % len(STATEMENT_FORMS)].format(base=base)
    if "urgency" in tags:
        text = f"Last chance: {text[0].lower()}{text[1:]}"
        used.append("urgency")
    if "personalized" in tags and "first_name" in allowed:
        text = f"{{{{ first_name }}}}, {text[0].lower()}{text[1:]}"
        used.append("personalized")
    if "emoji" in tags:
        text = f"{text} ✨"
        used.append("emoji")
    return text, used


def write_variants(data: dict[str, Any], tags: list[str], count: int) -> list[dict[str, Any]]:
    """`count` new variants carrying `tags`, none a near-duplicate of a listed one."""
    corpus = _listed_contents(data)
    allowed = data["content_rules"]["allowed_placeholders"]
    max_length = data["content_rules"]["max_length"]
    start = len(corpus)  # a different starting point each generation
    variants: list[dict[str, Any]] = []
    for step in range(len(BASES) * len(QUESTION_FORMS)):
        if len(variants) >= count:
            break
        base = BASES[(start + step) % len(BASES)]
        text, used = _compose(base, tags, start + step // len(BASES), allowed)
        if len(text) > max_length or find_near_duplicate(text, corpus) is not None:
            continue
        corpus.append((f"new {len(variants)}", text))
        variants.append({"content": text, "tags": used, "rationale": "", "tests_learning": None})
    return variants


def write_reply(data: dict[str, Any]) -> dict[str, Any]:
    """What a diligent copywriter answers to the data block."""
    ranked = data["arms_ranked_worst_to_best"]
    effects = {item["tag"]: item for item in data.get("tag_effects_log_odds", [])}
    positive = sorted(
        (item for item in effects.values() if item["interval_95"][0] > 0),
        key=lambda item: -item["effect"],
    )

    def arms_with(tag: str) -> list[int]:
        return [arm["arm_id"] for arm in ranked if tag in arm["tags"]]

    ops: list[dict[str, Any]] = []
    claimed: set[str] = set()
    top_learning: dict[str, Any] | None = None
    for learning in data["learnings"]:  # sorted by support, highest first
        tags = _tags_in(learning["claim"])
        claimed.update(tags)
        cited = [arm_id for tag in tags for arm_id in arms_with(tag)] or [
            arm["arm_id"] for arm in ranked[-1:]
        ]
        effect = effects.get(tags[0]) if tags else None
        if effect is not None and effect["interval_95"][1] < 0:
            ops.append(
                {
                    "op": "prune",
                    "learning_id": learning["id"],
                    "claim": None,
                    "evidence_arm_ids": cited,
                }
            )
            continue
        if top_learning is None:
            top_learning = learning
        if cited:
            ops.append(
                {
                    "op": "confirm",
                    "learning_id": learning["id"],
                    "claim": None,
                    "evidence_arm_ids": cited,
                }
            )
    for effect in positive:
        if effect["tag"] in claimed or not arms_with(effect["tag"]):
            continue
        claim = f"Variants tagged '{effect['tag']}' earn more successes than those without"
        ops.append(
            {
                "op": "add",
                "learning_id": None,
                "claim": claim,
                "evidence_arm_ids": arms_with(effect["tag"]),
            }
        )
        claimed.add(effect["tag"])

    if top_learning is not None and _tags_in(top_learning["claim"]):
        follow = _tags_in(top_learning["claim"])
        tests: str | None = top_learning["id"]
    elif positive:
        follow = [positive[0]["tag"]]
        tests = f"Variants tagged '{follow[0]}' earn more successes than those without"
    else:
        follow = [KNOWN_TAGS[len(ranked) % len(KNOWN_TAGS)]]
        tests = f"Variants tagged '{follow[0]}' might do better"
    # Exploit what is known, and explore one more tag on top of it.
    extra = [tag for tag in KNOWN_TAGS if tag not in follow]
    variants = write_variants(data, follow, max(1, data["max_new_variants"] - 1))
    variants += write_variants(
        data
        | {
            "rejected_variants": data["rejected_variants"]
            + [{"content": v["content"], "reason": ""} for v in variants]
        },
        follow + extra[: 1 + len(ranked) % 2][-1:],
        1,
    )
    for variant in variants:
        variant["tests_learning"] = tests
        variant["rationale"] = f"follows {', '.join(follow)}"
    return {
        "learning_ops": ops,
        "retire_arm_ids": [
            {"arm_id": arm_id, "reason": "clearly behind the leader"}
            for arm_id in data["retirement_eligible_arm_ids"]
        ],
        "new_variants": variants[: data["max_new_variants"]],
    }


def write_mischief(data: dict[str, Any]) -> dict[str, Any]:
    """A reply that breaks every rule the loop enforces, plus one good variant."""
    reply = write_reply(data)
    eligible = set(data["retirement_eligible_arm_ids"])
    every_arm = data["arms_ranked_worst_to_best"] + data["arms_without_enough_evidence"]
    ineligible = [
        arm["arm_id"]
        for arm in every_arm
        if arm["arm_id"] not in eligible and arm["status"] == "live"
    ]
    retired = [arm["content"] for arm in every_arm if arm["status"] == "retired"]
    banned = data["content_rules"]["banned_phrases"]
    reply["retire_arm_ids"] = [
        {"arm_id": arm_id, "reason": "I do not like it"} for arm_id in ineligible[:1]
    ]
    reply["learning_ops"] = [
        {"op": "add", "learning_id": None, "claim": "Emoji always win", "evidence_arm_ids": []},
        {
            "op": "add",
            "learning_id": None,
            "claim": "Arm 999999 proves everything",
            "evidence_arm_ids": [999999],
        },
    ]
    bad: list[dict[str, Any]] = []
    if banned:
        bad.append(
            {
                "content": f"{banned[0].upper()} on every order this week",
                "tags": [],
                "rationale": "",
                "tests_learning": None,
            }
        )
    if retired:
        bad.append(
            {
                "content": retired[0].upper() + "!",
                "tags": [],
                "rationale": "",
                "tests_learning": None,
            }
        )
    reply["new_variants"] = bad + reply["new_variants"][:1]
    return reply


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
        reply = write_mischief(data) if scenario == MISCHIEF else write_reply(data)
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
