"""API keys in use are re-read ahead of their expiry, off the request path (issue 15).

Before, every request that found its key's entry past the cache time read the key itself,
waiting for the database: a pause every ``cache_seconds`` that set /choose's p99."""

from __future__ import annotations

import threading
import time

import pytest

from service.core.auth import ApiKeys, Principal
from service.core.errors import Unauthorized
from service.core.runtime import Runtime

TTL = 1.0


def _wait_for(condition: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def _bearer(raw: str) -> str:
    return f"Bearer {raw}"


def test_a_key_in_use_never_leaves_the_cache(runtime: Runtime) -> None:
    _row, raw = runtime.api_keys.create(name="sender", scopes=["decide"])
    keys = ApiKeys(runtime.engine, cache_seconds=TTL)
    first_read = time.monotonic()
    keys.require(_bearer(raw), "decide")

    time.sleep(TTL * 0.6)  # past half the cache time: this use starts a re-read
    assert keys.cached(_bearer(raw), "decide") is not None
    assert _wait_for(lambda: not keys._refreshing)

    time.sleep(max(0.0, first_read + TTL * 1.2 - time.monotonic()))
    # Past the first read's expiry, still answered from the cache: no request reads it.
    assert keys.cached(_bearer(raw), "decide") is not None


def test_a_key_revoked_elsewhere_is_refused_within_the_cache_time(runtime: Runtime) -> None:
    row, raw = runtime.api_keys.create(name="sender", scopes=["decide"])
    keys = ApiKeys(runtime.engine, cache_seconds=TTL)  # another replica's cache
    first_read = time.monotonic()
    keys.require(_bearer(raw), "decide")
    assert row.id is not None
    runtime.api_keys.revoke(row.id)

    time.sleep(TTL * 0.6)
    keys.cached(_bearer(raw), "decide")  # starts the re-read, which finds it revoked
    assert _wait_for(lambda: keys.cached(_bearer(raw), "decide") is None)
    assert time.monotonic() - first_read < TTL * 1.5
    with pytest.raises(Unauthorized):
        keys.require(_bearer(raw), "decide")


def test_a_reread_begun_before_forget_does_not_bring_the_key_back(runtime: Runtime) -> None:
    _row, raw = runtime.api_keys.create(name="sender", scopes=["decide"])
    keys = ApiKeys(runtime.engine, cache_seconds=TTL)
    keys.require(_bearer(raw), "decide")
    release = threading.Event()
    principal = Principal(1, "sender", frozenset({"decide"}))

    def slow_lookup(_digest: str) -> Principal:
        release.wait(5)
        return principal

    keys._lookup = slow_lookup  # type: ignore[method-assign]
    time.sleep(TTL * 0.6)
    keys.cached(_bearer(raw), "decide")
    keys.forget()
    release.set()
    assert _wait_for(lambda: not keys._refreshing)
    assert keys.cached(_bearer(raw), "decide") is None


def test_a_failed_reread_lets_the_entry_expire_as_before(runtime: Runtime) -> None:
    _row, raw = runtime.api_keys.create(name="sender", scopes=["decide"])
    keys = ApiKeys(runtime.engine, cache_seconds=TTL)
    first_read = time.monotonic()
    keys.require(_bearer(raw), "decide")

    def failing_lookup(_digest: str) -> Principal:
        raise RuntimeError("database away")

    keys._lookup = failing_lookup  # type: ignore[method-assign]
    time.sleep(TTL * 0.6)
    assert keys.cached(_bearer(raw), "decide") is not None
    assert _wait_for(lambda: not keys._refreshing)
    time.sleep(max(0.0, first_read + TTL * 1.05 - time.monotonic()))
    assert keys.cached(_bearer(raw), "decide") is None
