"""The refresher recomputes only the experiments whose inputs changed or aged."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import Session

from service.core.runtime import Runtime
from service.measuring import stats_repository as stats_repo
from service.measuring.rebuild import rebuild_stats
from service.policy import repository as snapshots_repo
from service.policy import schedule
from tests.service.factories import create_random_experiment
from tests.service.helpers import decide_many, later


def versions(runtime: Runtime, ids: list[int]) -> list[int]:
    with Session(runtime.engine) as session:
        return [snapshots_repo.latest(session, experiment_id=i).version for i in ids]  # type: ignore[union-attr]


def test_only_the_experiment_with_new_evidence_is_recomputed(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    exps = [create_random_experiment(client, admin, arms=3) for _ in range(3)]
    ids = [e["id"] for e in exps]
    for exp in exps:
        decide_many(client, decide, runtime, exp["key"], 20)
    # The youngest cohort is 5 minutes old: its corrections are next due a minute on.
    first = later(5)
    runtime.refresher.recompute_all(now=first)
    before = versions(runtime, ids)
    computed = {i: runtime.refresher._checked[i].at for i in ids}

    busy = exps[1]
    decisions = decide_many(client, decide, runtime, busy["key"], 10)
    events = [{"event_id": "e1", "decision_id": decisions[0]["decision_id"], "type": "click"}]
    assert client.post("/v1/events", json=events, headers=ingest).status_code == 200
    second = first + timedelta(seconds=2)
    written = runtime.refresher.recompute_all(now=second)

    assert written == 1
    after = versions(runtime, ids)
    assert after[1] == before[1] + 1
    assert (after[0], after[2]) == (before[0], before[2])
    assert runtime.refresher._checked[ids[1]].at == second
    assert runtime.refresher._checked[ids[0]].at == computed[ids[0]]
    assert runtime.refresher._checked[ids[2]].at == computed[ids[2]]


def test_an_idle_experiment_is_recomputed_once_its_snapshot_is_old(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    exp = create_random_experiment(client, admin, arms=2)
    decide_many(client, decide, runtime, exp["key"], 20)
    first = later(5)
    runtime.refresher.recompute_all(now=first)

    runtime.refresher.recompute_all(now=first + timedelta(seconds=30))
    assert runtime.refresher._checked[exp["id"]].at == first
    old = first + schedule.MAX_SNAPSHOT_AGE + timedelta(minutes=1)
    runtime.refresher.recompute_all(now=old)
    assert runtime.refresher._checked[exp["id"]].at == old


def test_the_grouped_fingerprints_are_each_experiments_own(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    busy = create_random_experiment(client, admin, arms=3)
    quiet = create_random_experiment(client, admin, arms=2)
    decide_many(client, decide, runtime, busy["key"], 30)

    with Session(runtime.engine) as session:
        grouped = stats_repo.fingerprints(session, epochs={busy["id"]: 1, quiet["id"]: 1})
        alone = stats_repo.fingerprint(session, experiment_id=busy["id"], epoch=1)
        empty = stats_repo.fingerprint(session, experiment_id=quiet["id"], epoch=1)
        stale_epoch = stats_repo.fingerprints(session, epochs={busy["id"]: 2})
        running = schedule.running_fingerprints(session)

    assert grouped[busy["id"]] == alone
    assert alone[1] == 30  # thirty exposures
    assert quiet["id"] not in grouped
    assert empty == stats_repo.EMPTY_FINGERPRINT
    assert stale_epoch == {}
    assert set(running) == {busy["id"], quiet["id"]}
    assert running[busy["id"]] != running[quiet["id"]]


def test_a_changed_arm_makes_only_its_experiment_due(
    client: TestClient, admin, decide, runtime: Runtime
) -> None:
    """The fingerprint reads each arm's status and control flag: suspending an arm, marking a
    new control or adding an arm recomputes that experiment on the next pass, and only it."""
    exps = [create_random_experiment(client, admin, arms=3) for _ in range(2)]
    for exp in exps:
        decide_many(client, decide, runtime, exp["key"], 20)
    now = later(5)
    runtime.refresher.recompute_all(now=now)
    changed, quiet = exps
    arms = [a["id"] for a in changed["arms"]]
    base = f"/v1/experiments/{changed['key']}/arms"
    for change in (
        lambda: client.post(f"{base}/{arms[2]}/suspend", json={"reason": "t"}, headers=admin),
        lambda: client.post(f"{base}/{arms[1]}/control", headers=admin),
        lambda: client.post(base, json={"content": "a fourth"}, headers=admin),
    ):
        assert change().status_code in (200, 201)
        now += timedelta(seconds=2)
        assert runtime.refresher.recompute_all(now=now) == 1
        assert runtime.refresher._checked[changed["id"]].at == now
        assert runtime.refresher._checked[quiet["id"]].at != now
    now += timedelta(seconds=2)
    assert runtime.refresher.recompute_all(now=now) == 0


def test_the_fingerprints_read_one_row_per_experiment_not_its_history(
    client: TestClient, admin, decide, ingest, runtime: Runtime
) -> None:
    """A click changes the fingerprint, a rebuild with the same counts does too, and finding
    the fingerprints never reads the buckets (whose rows grow with every hour of history)."""
    exp = create_random_experiment(client, admin, arms=2)
    decisions = decide_many(client, decide, runtime, exp["key"], 10)
    epochs = {exp["id"]: 1}

    def fingerprint() -> tuple[object, ...]:
        with Session(runtime.engine) as session:
            return stats_repo.fingerprints(session, epochs=epochs)[exp["id"]]

    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        with Session(runtime.engine) as session:
            schedule.running_fingerprints(session)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
    assert statements
    assert not [s for s in statements if "stat_bucket" in s]

    before = fingerprint()
    old = {"event_id": "old", "decision_id": decisions[0]["decision_id"], "type": "click"}
    assert client.post("/v1/events", json=[old], headers=ingest).status_code == 200
    clicked = fingerprint()
    assert clicked != before
    assert clicked[1] == before[1] + 1

    with Session(runtime.engine) as session, session.begin():
        rebuild_stats(session, experiment_id=exp["id"])
    rebuilt = fingerprint()
    assert rebuilt != clicked
    assert rebuilt[1] == clicked[1]
