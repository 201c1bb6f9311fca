"""The decision log's writer process: what the serving process hands over is written, with
its exposures, on a flush, on a clean shutdown, and when the serving process is gone; a dead
writer is replaced; its counters reach the serving process's metrics."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlmodel import Session, col, select

from service.core.runtime import Runtime
from service.core.settings import Settings
from service.core.vocabulary import EXPOSURE
from service.deciding.decider import Unit
from service.deciding.log import DecisionLog
from service.deciding.records import DecisionRecord
from service.deciding.writer_process import WriterProcess
from service.models import DeadLetter, Decision
from tests.service.factories import create_random_experiment
from tests.service.helpers import metric_total


@pytest.fixture
def served(settings: Settings, engine_for: Any, runtime: Runtime) -> Iterator[Runtime]:
    """A second replica on the same database, as served: background workers on."""
    live = settings.model_copy(update={"run_background": True, "decision_writer_process": True})
    replica = Runtime(live, engine=engine_for)
    replica.start()
    assert isinstance(replica.decision_log, WriterProcess)
    yield replica
    replica.stop()


def experiment_and_writer(
    client: TestClient, admin: dict[str, str], served: Runtime
) -> tuple[dict[str, Any], WriterProcess]:
    log = served.decision_log
    assert isinstance(log, WriterProcess)
    return create_random_experiment(client, admin, arms=3), log


def stored_ids(runtime: Runtime) -> set[str]:
    with Session(runtime.engine) as session:
        return set(session.exec(select(Decision.id)).all())


def flushed_metric() -> float:
    return REGISTRY.get_sample_value("banditloop_decisions_flushed_total") or 0.0


def test_handed_over_decisions_are_written_with_their_exposures(
    client: TestClient, admin, runtime: Runtime, served: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=3)
    before = flushed_metric()

    choices = served.decider.choose(exp["key"], [Unit(f"u{i}") for i in range(300)])
    assert served.decision_log.flush() == 300

    assert stored_ids(runtime) == {c.decision_id for c in choices}
    assert metric_total(runtime, EXPOSURE) == 300
    assert served.decision_log.pending == 0
    if runtime.engine.dialect.name == "postgresql":  # counted where orphans can race
        assert flushed_metric() - before == 300

    # A clean shutdown writes what was never flushed.
    more = served.decider.choose(exp["key"], [Unit(f"v{i}") for i in range(50)])
    served.stop()
    assert stored_ids(runtime) == {c.decision_id for c in [*choices, *more]}


def test_the_writer_writes_what_it_was_sent_when_the_serving_process_is_gone(
    client: TestClient, admin, runtime: Runtime, served: Runtime
) -> None:
    exp, log = experiment_and_writer(client, admin, served)
    choices = served.decider.choose(exp["key"], [Unit(f"u{i}") for i in range(40)])
    log.worker.stop()  # no more hand-overs from here
    assert log.hand_over() == 40
    child = log._child  # noqa: SLF001
    assert child is not None
    assert child.stdin is not None

    child.stdin.close()  # what the child sees when the serving process dies
    assert child.wait(timeout=30) == 0

    assert stored_ids(runtime) == {c.decision_id for c in choices}


def test_a_dead_writer_is_replaced_on_the_next_hand_over(
    client: TestClient, admin, runtime: Runtime, served: Runtime
) -> None:
    exp, log = experiment_and_writer(client, admin, served)
    first = log._child  # noqa: SLF001
    assert first is not None
    first.kill()
    first.wait()

    choices = served.decider.choose(exp["key"], [Unit(f"u{i}") for i in range(20)])
    assert log.flush() == 20

    assert log._child is not first  # noqa: SLF001
    assert stored_ids(runtime) == {c.decision_id for c in choices}


# ---------------------------------------------------------------------------------------------
# Backpressure: at most one unconfirmed batch; a dead writer's batches written here, once


def in_process_metric(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("banditloop_decision_writer_in_process_total", {"reason": reason})
        or 0.0
    )


def dead_letters(runtime: Runtime) -> int:
    with Session(runtime.engine) as session:
        return len(session.exec(select(DeadLetter)).all())


def test_a_writer_that_is_behind_never_holds_more_than_one_batch(
    client: TestClient, admin, runtime: Runtime, served: Runtime
) -> None:
    exp, log = experiment_and_writer(client, admin, served)
    log.worker.stop()  # hand-overs driven by the test
    child = log._child  # noqa: SLF001
    assert child is not None
    before = in_process_metric("behind")

    os.kill(child.pid, signal.SIGSTOP)  # a writer that cannot keep up: it writes nothing
    try:
        chosen = []
        for i in range(5):
            chosen += served.decider.choose(exp["key"], [Unit(f"u{i}-{j}") for j in range(30)])
            assert log.hand_over() == 30
            assert log.unconfirmed_batches == 1  # the first batch; later ones written here
        # Four of the five intervals were written by the serving process, at once.
        assert in_process_metric("behind") - before == 120
        assert len(stored_ids(runtime)) == 120
    finally:
        os.kill(child.pid, signal.SIGCONT)

    assert log.flush() == 150  # stored since the last call: 120 here, 30 by the writer
    assert log.unconfirmed_batches == 0
    assert log._child is child  # noqa: SLF001  (not replaced: it was slow, not dead)
    assert stored_ids(runtime) == {c.decision_id for c in chosen}
    assert metric_total(runtime, EXPOSURE) == 150


def test_a_dead_writers_unconfirmed_batch_is_written_once(
    client: TestClient, admin, runtime: Runtime, served: Runtime
) -> None:
    """The writer stored a batch and died before its confirmation arrived: the serving
    process writes the batch again, skips what is stored, and counts every exposure once."""
    exp, log = experiment_and_writer(client, admin, served)
    log.worker.stop()
    first = served.decider.choose(exp["key"], [Unit(f"u{i}") for i in range(40)])
    assert log.flush() == 40
    stored_first = {c.decision_id for c in first}
    assert stored_ids(runtime) == stored_first
    more = served.decider.choose(exp["key"], [Unit(f"v{i}") for i in range(25)])
    # The writer's confirmation of the first batch "lost": it is unconfirmed again.
    log._unconfirmed[0] = _records_of(runtime, stored_first)  # noqa: SLF001
    child = log._child  # noqa: SLF001
    assert child is not None
    before = in_process_metric("writer_gone")
    child.kill()
    child.wait()

    assert log.flush() == 25  # the 25 new ones stored (by a new writer); the 40 skipped
    assert in_process_metric("writer_gone") - before == 40
    assert stored_ids(runtime) == stored_first | {c.decision_id for c in more}
    assert metric_total(runtime, EXPOSURE) == 65  # not 105
    assert dead_letters(runtime) == 0  # the stored ones were skipped, not refused


def _records_of(runtime: Runtime, ids: set[str]) -> list[DecisionRecord]:
    with Session(runtime.engine) as session:
        rows = session.exec(select(Decision).where(col(Decision.id).in_(ids))).all()
    return [
        DecisionRecord(
            r.id, r.experiment_id, r.epoch, r.arm_id, r.segment, r.unit_hash, r.send_id,
            r.propensity, r.explored, r.policy_version, r.created_at, True, r.holdout,
        )
        for r in rows
    ]  # fmt: skip


def test_killing_the_writer_under_load_loses_and_doubles_nothing(
    client: TestClient, admin, runtime: Runtime, served: Runtime
) -> None:
    """Decisions flow from a thread while the writer is killed twice: every decision is
    stored exactly once with one exposure, and at no hand-over were more than one batch out."""
    exp, log = experiment_and_writer(client, admin, served)
    chosen: list[str] = []
    most_out = [0]
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            batch = served.decider.choose(exp["key"], [Unit(f"u{i}-{j}") for j in range(20)])
            chosen.extend(c.decision_id for c in batch)
            most_out[0] = max(most_out[0], log.unconfirmed_batches)
            i += 1
            time.sleep(0.005)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        for _ in range(2):
            deadline = time.monotonic() + 30
            while log.unconfirmed_batches == 0 and time.monotonic() < deadline:
                time.sleep(0.001)  # kill it with a batch out, as a crash would find it
            child = log._child  # noqa: SLF001
            assert child is not None
            child.kill()
            time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    served.stop()

    ids = stored_ids(runtime)
    assert len(chosen) == len(set(chosen)) > 0
    assert ids == set(chosen)
    assert metric_total(runtime, EXPOSURE) == len(chosen)
    assert dead_letters(runtime) == 0
    assert most_out[0] <= 1


def test_maybe_stored_decisions_are_looked_up_and_skipped(
    client: TestClient, admin, runtime: Runtime
) -> None:
    """The in-process log, given a batch that may be stored already, writes only the rest."""
    exp = create_random_experiment(client, admin, arms=3)
    decisions = runtime.decision_log
    assert isinstance(decisions, DecisionLog)
    first = runtime.decider.choose(exp["key"], [Unit(f"u{i}") for i in range(30)])
    ids = {c.decision_id for c in first}
    assert decisions.flush() == 30
    second = runtime.decider.choose(exp["key"], [Unit(f"v{i}") for i in range(10)])
    decisions.append(_records_of(runtime, ids), maybe_stored=True)

    assert decisions.flush() == 10
    assert stored_ids(runtime) == ids | {c.decision_id for c in second}
    assert metric_total(runtime, EXPOSURE) == 40
    assert dead_letters(runtime) == 0
    assert decisions._maybe_stored == set()  # noqa: SLF001


def test_requests_wait_for_a_late_hand_over_at_most_one_interval(
    client: TestClient, admin, runtime: Runtime, served: Runtime
) -> None:
    """While the hand-over thread is stuck (writing an earlier batch itself), decisions
    pending for more than two intervals make the next request wait, and no longer than an
    interval; then everything is written."""
    exp, log = experiment_and_writer(client, admin, served)
    interval = served.settings.decision_flush_ms / 1000
    waited = REGISTRY.get_sample_value("banditloop_decision_writer_wait_seconds_total") or 0.0

    with log._pipe_lock:  # noqa: SLF001  (the hand-over thread cannot hand over)
        chosen = served.decider.choose(exp["key"], [Unit("first")])
        time.sleep(2.5 * interval)
        started = time.monotonic()
        chosen += served.decider.choose(exp["key"], [Unit("late")])
        blocked = time.monotonic() - started

    grown = REGISTRY.get_sample_value("banditloop_decision_writer_wait_seconds_total") or 0.0
    assert 0.9 * interval <= grown - waited <= min(blocked, interval + 0.1)
    log.flush()
    assert stored_ids(runtime) == {c.decision_id for c in chosen}
