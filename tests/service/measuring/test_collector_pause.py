"""A batch is parsed and stored with the cyclic collector paused; it resumes after the last
concurrent batch, and only if it was on."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.measuring import service as measuring_service
from service.measuring.service import collector_paused
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_overlapping_pauses_resume_once_the_last_ends(collector_on: None) -> None:
    first_in, second_out, first_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with collector_paused():
            first_in.set()
            second_out.wait(5)
            seen.append(gc.isenabled())  # the second batch ended, this one goes on
        first_done.set()

    worker = threading.Thread(target=first)
    worker.start()
    first_in.wait(5)
    with collector_paused():
        assert not gc.isenabled()
    second_out.set()
    first_done.wait(5)
    worker.join(5)
    assert seen == [False]
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off(collector_on: None) -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the batch failed")
    assert gc.isenabled()


def test_events_are_stored_with_the_collector_paused(
    client: TestClient, admin, decide, ingest, runtime, monkeypatch, collector_on: None
) -> None:
    exp = create_random_experiment(client, admin, arms=2)
    decisions = decide_many(client, decide, runtime, exp["key"], 3)
    seen: list[bool] = []
    real = measuring_service.ingest

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(measuring_service, "ingest", spy)
    events = [
        {"event_id": f"e{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions)
    ]
    body = client.post("/v1/events", json=events, headers=ingest).json()
    assert body["accepted"] == 3
    assert seen == [False]
    assert gc.isenabled()


def test_batches_that_keep_overlapping_cannot_keep_the_collector_off(
    collector_on: None, monkeypatch
) -> None:
    """Ingestion that never idles would otherwise starve the collector for good."""
    now = [100.0]
    monkeypatch.setattr(measuring_service.time, "monotonic", lambda: now[0])
    long_in, long_out = threading.Event(), threading.Event()

    def long_batch() -> None:
        with collector_paused():
            long_in.set()
            long_out.wait(5)

    worker = threading.Thread(target=long_batch)
    worker.start()
    long_in.wait(5)
    with collector_paused():  # overlaps, ends before the pause is overdue
        assert not gc.isenabled()
    assert not gc.isenabled()
    now[0] += measuring_service.MAX_PAUSE_SECONDS + 0.1
    with collector_paused():  # overlaps, ends after: the collector runs again
        pass
    assert gc.isenabled()
    with collector_paused():  # a batch inside still: later ones leave the collector on
        assert gc.isenabled()
    long_out.set()
    worker.join(5)
    assert gc.isenabled()
    with collector_paused():  # idle again: the next batch pauses it afresh
        assert not gc.isenabled()
    assert gc.isenabled()
