"""The shared input checks: the byte-level depth test agrees with a parse on any JSON
(strings full of brackets, quotes and escapes included), and unstorable text is found
wherever it hides, keys included, with the path that names it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.storable import find_unstorable, json_too_deep, safe_text, unstorable_reason

TRICKY = st.text(alphabet='[]{}"\\,:ab\n\x00', max_size=8)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TRICKY, children, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def nest(value: Any, levels: int) -> Any:
    for i in range(levels):
        value = [value] if i % 2 else {"k[": value, '"]': "}{"}
    return value


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, extra=st.integers(0, 40), limit=st.integers(1, 12))
def test_depth_check_agrees_with_a_parse(value: Any, extra: int, limit: int) -> None:
    nested = nest(value, extra)
    for text in (json.dumps(nested), json.dumps(nested, ensure_ascii=False, indent=1)):
        assert json_too_deep(text.encode(), limit) is (depth(nested) > limit), text


def test_depth_check_on_the_bodies_that_broke_the_service() -> None:
    assert json_too_deep(("[" * 10_000 + "]" * 10_000).encode())
    assert json_too_deep(b'{"arms": [{"payload": ' + b"[" * 900 + b"]" * 900 + b"}]}")
    assert not json_too_deep(b'{"a": "' + b"[" * 10_000 + b'"}')  # brackets in a string
    assert not json_too_deep(b"[" * 10_000)  # not JSON: the parser says so


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ({"a": ["ok", {"b": "x\x00"}]}, ("a.1.b", "NUL")),
        ({"a": {"k\x00": 1}}, ("a.k\ufffd", "field name")),
        (["fine", "lone \udc00"], ("1", "surrogate")),
        ("\ud800", ("body", "surrogate")),
    ],
)
def test_find_unstorable_names_the_path(value: Any, found: tuple[str, str]) -> None:
    result = find_unstorable(value)
    assert result is not None
    assert result[0] == found[0]
    assert found[1] in result[1]


def test_storable_text_passes_and_safe_text_replaces() -> None:
    assert find_unstorable({"emoji": "\U0001f600", "ctl": "\x01\t\x1f", "n": [1, None]}) is None
    assert unstorable_reason("ok\x7f") is None
    assert safe_text("a\x00b\ud800") == "a\ufffdb\ufffd"
    deep: Any = "x\x00"
    for _ in range(5000):  # iterative: no recursion limit
        deep = [deep]
    assert find_unstorable(deep) is not None
