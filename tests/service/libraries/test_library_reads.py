"""What a loop run reads of its library's other campaigns: per-arm sums of the current
epoch, of its channel, in a fixed number of statements however many campaigns there are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from service.core.runtime import Runtime
from service.core.sessions import unit_of_work
from service.libraries import service as library_domain
from service.measuring import stats_repository as stats_repo
from tests.service.factories import create_random_experiment

START = datetime(2026, 1, 5, tzinfo=UTC)


def _fill(runtime: Runtime, experiment: dict[str, Any], *, hours: int, epoch: int = 1) -> None:
    """Each arm: 40 exposures and 2 clicks an hour in each of two segments."""
    deltas: dict[Any, Any] = {}
    for arm in experiment["arms"]:
        for hour in range(hours):
            at = START + timedelta(hours=hour)
            for segment in ("", "lapsed"):
                key = (experiment["id"], epoch, segment, arm["id"], at, "exposure")
                deltas[key] = (40, 0.0, 0.0)
                deltas[(*key[:5], "click")] = (2, 0.0)
    with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
        stats_repo.add_deltas(session, deltas=deltas)


def _read(runtime: Runtime, name: str, exclude: int | None) -> tuple[list[Any], int]:
    statements = {"count": 0}

    def count(*_args: object) -> None:
        statements["count"] += 1

    with unit_of_work(runtime.engine, runtime.after_commit_handlers()) as session:
        library = library_domain.get_library(session, name)
        event.listen(runtime.engine, "after_cursor_execute", count)
        try:
            found = library_domain.library_arms(
                session,
                library,
                exclude_experiment_id=exclude,
                min_exposures=100,
                min_successes=3,
                channel="email",
            )
        finally:
            event.remove(runtime.engine, "after_cursor_execute", count)
    return found, statements["count"]


def test_library_arms_are_summed_by_the_database_in_a_fixed_number_of_statements(
    client: TestClient, admin, runtime: Runtime
) -> None:
    current = create_random_experiment(client, admin, library="reads")
    first = create_random_experiment(client, admin, library="reads")
    _fill(runtime, first, hours=30)
    _fill(runtime, first, hours=5, epoch=7)  # another epoch: not read
    found, one_campaign = _read(runtime, "reads", current["id"])
    assert sorted(item.evidence.arm_id for item in found) == sorted(a["id"] for a in first["arms"])
    for item in found:
        # 30 hours x 2 segments x 40 exposures, 2 clicks an hour and segment
        assert (item.evidence.exposures, item.evidence.successes) == (2400, 120)
        assert item.evidence.experiment_key == first["key"]

    more = [create_random_experiment(client, admin, library="reads") for _ in range(3)]
    for experiment in more:
        _fill(runtime, experiment, hours=50)
    push = create_random_experiment(client, admin, library="reads", channel="push")
    _fill(runtime, push, hours=50)
    found, four_campaigns = _read(runtime, "reads", current["id"])
    assert four_campaigns == one_campaign  # not one statement per campaign or hour
    assert {item.evidence.experiment_key for item in found} == {
        first["key"],
        *(experiment["key"] for experiment in more),
    }  # the push campaign is another channel's evidence
    assert all(item.evidence.arm_id not in {a["id"] for a in current["arms"]} for item in found)
