"""The keyed-decision cache is shared by /choose's thread-pool threads."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from service.deciding.decider import KeyedCache


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Switch threads every microsecond, so an unlocked read-then-move is interrupted."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


@pytest.mark.usefixtures("frequent_switches")
def test_concurrent_reads_and_evictions_never_fail():
    cache = KeyedCache(2)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            for i in range(20_000):
                cache.put((1, "k", str((i * 7 + seed) % 5)), object())  # type: ignore[arg-type]
                cache.get((1, "k", str((i * 3 + seed) % 5)))
        except BaseException as error:  # noqa: BLE001 - any failure is the finding
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache._items) == 2


def test_the_least_recently_used_key_is_evicted():
    cache = KeyedCache(2)
    a, b, c = object(), object(), object()
    cache.put((1, "k", "a"), a)  # type: ignore[arg-type]
    cache.put((1, "k", "b"), b)  # type: ignore[arg-type]
    assert cache.get((1, "k", "a")) is a
    cache.put((1, "k", "c"), c)  # type: ignore[arg-type]
    assert cache.get((1, "k", "b")) is None
    assert cache.get((1, "k", "a")) is a
