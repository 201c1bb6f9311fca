"""What text and JSON the service can store: the one check that the HTTP guard, the events
parser and the webhook adapters share, so a class of bad input is refused in one way.

PostgreSQL cannot store NUL in text, and a lone UTF-16 surrogate (JSON lets a body spell
one as an escape) cannot be encoded as UTF-8 by either database or in a response. JSON
nested deeper than any real payload needs is refused before a recursive parser or
serializer can raise RecursionError on it.
"""

from __future__ import annotations

import re
from typing import Any

MAX_JSON_DEPTH = 32

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


def unstorable_reason(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain a NUL character"
    return "must not contain a lone surrogate (not valid Unicode)"


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """The first string (a key or a value) in parsed JSON that cannot be stored, as
    (dotted path, reason); None when everything can be. Iterative: no recursion limit."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            reason = unstorable_reason(item)
            if reason is not None:
                return ".".join(path) or "body", reason
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                child_path = (*path, safe_text(str(key)))
                reason = unstorable_reason(str(key))
                if reason is not None:
                    return ".".join(child_path), f"field name {reason}"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend(((*path, str(i)), child) for i, child in reversed(list(enumerate(item))))
    return None


def safe_text(text: str) -> str:
    """``text`` with what cannot be stored replaced by U+FFFD: for messages and reasons
    that quote the caller's input and are themselves stored or answered."""
    return _UNSTORABLE.sub("\ufffd", text)


def json_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text in ``body`` nests arrays and objects deeper than ``limit``.

    Works on the bytes, without parsing, in C-speed passes (a few ms for a 10,000-unit
    batch, well under the cost of parsing it): escapes are cut out (they only occur inside
    strings), everything but brackets and quotes is dropped, strings (now only quotes and
    the brackets they held) are cut out, then innermost bracket pairs are removed one level
    per round. Text that is not balanced JSON answers False: the parser reports it.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    if b"\\" in body:
        body = _ESCAPE.sub(b"", body)
    # Any adjacent pair of quotes is an empty string or the end of one string and the
    # start of the next with nothing structural between: dropping it is safe and cheap.
    brackets = body.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = _STRING.sub(b"", brackets)
    for _ in range(limit):
        # One level per round: a pair uncovered by this round waits for the next.
        shorter = brackets.replace(b"{}", b"-").replace(b"[]", b"-").replace(b"-", b"")
        if not shorter or shorter == brackets:
            return False
        brackets = shorter
    return True
