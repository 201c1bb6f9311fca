"""The decision log's writer process: what the serving process hands over is written, with
its exposures, on a flush, on a clean shutdown, and when the serving process is gone; a dead
writer is replaced; its counters reach the serving process's metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.core.settings import Settings
from service.core.vocabulary import EXPOSURE
from service.deciding.decider import Unit
from service.deciding.writer_process import WriterProcess
from service.models import Decision
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
    exp = create_random_experiment(client, admin, arms=3)
    log = served.decision_log
    assert isinstance(log, WriterProcess)
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
    exp = create_random_experiment(client, admin, arms=3)
    log = served.decision_log
    assert isinstance(log, WriterProcess)
    first = log._child  # noqa: SLF001
    assert first is not None
    first.kill()
    first.wait()

    choices = served.decider.choose(exp["key"], [Unit(f"u{i}") for i in range(20)])
    assert log.flush() == 20

    assert log._child is not first  # noqa: SLF001
    assert stored_ids(runtime) == {c.decision_id for c in choices}
