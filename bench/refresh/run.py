"""What a policy refresh costs as experiments age: idle, matured experiments against young ones.

N experiments, each with a send of 2,000 keyed decisions and email-like clicks (log-normal
delays, median an hour), on an embedded SQLite database and a ``ManualClock`` passed to the
runtime. The refresher's ``recompute_all`` is timed, per experiment:

- ``young``: 30 minutes after the sends (every experiment is recomputed: its corrections move);
- ``matured``: the first refresh after the window (each recomputed once, corrections final);
- ``idle``: later refreshes of the matured experiments with no new event (skipped after one
  aggregate query each).

Ratios are against ``young`` measured in the same run.

``--scale 10,100,1000`` measures how a refresh scales with the number of running
experiments (5 arms each, a little traffic, matured), each size in its own database:

- ``full``: a pass that recomputes every experiment (the scheduler's memory cleared), the
  cost every pass had when nothing was skipped;
- ``idle``: a pass with no new evidence anywhere (median of the repeats);
- ``evidence``: a pass after one experiment got a new decision and a click: the pass that
  carries the evidence into the policy. Evidence reaches the policy at worst one refresh
  interval (2 s) plus this pass after it is stored.

``--history HOURS`` gives every experiment of ``--scale`` that many hours of older hourly
buckets (5 arms, 3 metrics each), as a campaign that has run for a while has, and times how
the refresher finds which experiments changed: the ``stat_total`` rows it reads now against
the grouped aggregate over every bucket it read before (the baseline, in the same run).

Run: .venv/bin/python bench/refresh/run.py [--experiments 20] [--repeats 5]
     .venv/bin/python bench/refresh/run.py --scale 10,100,1000 [--repeats 5] [--history 168]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fastapi.testclient import TestClient  # noqa: E402

from service.core import migrations  # noqa: E402
from service.core.app import create_app  # noqa: E402
from service.core.clock import ManualClock  # noqa: E402
from service.core.runtime import Runtime  # noqa: E402
from service.core.settings import Settings  # noqa: E402
from service.measuring import stats_repository as stats_repo  # noqa: E402
from service.models import Arm, StatBucket  # noqa: E402
from service.policy.compute import compute_snapshot  # noqa: E402

SENT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _seed(client: TestClient, runtime: Runtime, headers: dict[str, str], key: str) -> None:
    body = {"key": key, "name": key, "arms": [{"content": f"{key} arm {i}"} for i in range(3)]}
    assert client.post("/v1/experiments", json=body, headers=headers).status_code == 201
    units = [{"unit_id": f"u{i}", "send_id": "s"} for i in range(2000)]
    decisions = client.post(
        "/v1/choose/batch", json={"experiment": key, "units": units}, headers=headers
    ).json()["decisions"]
    runtime.decision_log.flush()
    rng = np.random.default_rng(len(key))
    events = []
    for d in decisions:
        at = SENT + timedelta(hours=float(rng.lognormal(0.0, 1.2)))
        if rng.random() < 0.05 and at <= SENT + timedelta(minutes=30):
            events.append(
                {
                    "event_id": f"{key}-{len(events)}",
                    "decision_id": d["decision_id"],
                    "type": "click",
                    "occurred_at": at.isoformat(),
                }
            )
    assert client.post("/v1/events", json=events, headers=headers).status_code == 200


def _time(runtime: Runtime) -> float:
    start = time.perf_counter()
    runtime.refresher.recompute_all()
    elapsed = time.perf_counter() - start
    # As the refresher's tick does: load what was written (untimed), so the next refresh
    # knows each snapshot's age by the same clock.
    runtime.refresher.reload()
    return elapsed


def _seed_small(client: TestClient, runtime: Runtime, headers: dict[str, str], key: str) -> None:
    """Five arms, fifty unkeyed decisions and a few clicks."""
    body = {"key": key, "name": key, "arms": [{"content": f"{key} arm {i}"} for i in range(5)]}
    assert client.post("/v1/experiments", json=body, headers=headers).status_code == 201
    units = [{"unit_id": f"u{i}"} for i in range(50)]
    decisions = client.post(
        "/v1/choose/batch", json={"experiment": key, "units": units}, headers=headers
    ).json()["decisions"]
    runtime.decision_log.flush()
    events = [
        {"event_id": f"{key}-{i}", "decision_id": d["decision_id"], "type": "click"}
        for i, d in enumerate(decisions[::10])
    ]
    assert client.post("/v1/events", json=events, headers=headers).status_code == 200


class _Heartbeat:
    """A thread that wakes every millisecond, as the serving loop would, and records how
    late it woke: the longest stall the refresh caused the rest of the process."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            before = time.perf_counter()
            time.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - before - 0.001)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _timed(runtime: Runtime) -> tuple[float, float, int, float]:
    """Wall seconds, CPU seconds of this thread, snapshots written, longest stall."""
    with _Heartbeat() as heartbeat:
        wall, cpu = time.perf_counter(), time.thread_time()
        written = runtime.refresher.recompute_all()
        elapsed, used = time.perf_counter() - wall, time.thread_time() - cpu
    runtime.refresher.reload()  # as the tick does (untimed): snapshot ages by the same clock
    return elapsed, used, written, heartbeat.worst


@contextmanager
def _service() -> Iterator[tuple[TestClient, Runtime, dict[str, str], ManualClock]]:
    """The app on a fresh SQLite file, the service's clock at SENT, an admin key."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/bench.db",
            signing_keys=f"k1:{secrets.token_urlsafe(24)}",
            run_background=False,
        )
        migrations.upgrade(settings.database_url)
        clock = ManualClock(SENT)
        runtime = Runtime(settings, clock=clock)
        with TestClient(create_app(runtime=runtime)) as client:
            _row, raw = runtime.api_keys.create(name="bench", scopes=["admin"])
            yield client, runtime, {"Authorization": f"Bearer {raw}"}, clock


def _add_history(runtime: Runtime, hours: int) -> None:
    """``hours`` older hourly buckets per arm (exposures, opens and clicks), written as the
    service writes them, in one transaction per experiment."""
    with Session(runtime.engine) as session:
        arms = session.execute(sa_select(col(Arm.experiment_id), col(Arm.id))).all()
    by_experiment: dict[int, list[int]] = {}
    for experiment_id, arm_id in arms:
        by_experiment.setdefault(experiment_id, []).append(arm_id)
    start = SENT - timedelta(hours=hours)
    for experiment_id, arm_ids in by_experiment.items():
        deltas: dict[stats_repo.StatKey, stats_repo.Delta] = {}
        for arm_id in arm_ids:
            for h in range(hours):
                hour = start + timedelta(hours=h)
                deltas[(experiment_id, 1, "", arm_id, hour, "exposure")] = (20, 0.0, 36000.0)
                deltas[(experiment_id, 1, "", arm_id, hour, "open")] = (4, 0.0)
                deltas[(experiment_id, 1, "", arm_id, hour, "click")] = (1, 0.0)
        with Session(runtime.engine) as session, session.begin():
            stats_repo.add_deltas(session, deltas=deltas)


def _aggregate_fingerprints(session: Session, ids: list[int]) -> int:
    """The baseline: the grouped aggregate over every bucket the refresher ran until round 7."""
    stmt = (
        sa_select(
            col(StatBucket.experiment_id),
            col(StatBucket.epoch),
            func.count(),
            func.coalesce(func.sum(col(StatBucket.count)), 0),
            func.max(col(StatBucket.hour)),
        )
        .where(col(StatBucket.experiment_id).in_(ids))
        .group_by(col(StatBucket.experiment_id), col(StatBucket.epoch))
    )
    return len(session.execute(stmt).all())


def _fingerprint_times(runtime: Runtime, repeats: int) -> tuple[float, float]:
    """Median wall seconds of the baseline aggregate and of ``stats_repo.fingerprints``, over
    every experiment, alternating."""
    with Session(runtime.engine) as session:
        ids = [i for (i,) in session.execute(sa_select(col(Arm.experiment_id)).distinct())]
        old, new = [], []
        for _ in range(repeats):
            before = time.perf_counter()
            _aggregate_fingerprints(session, ids)
            old.append(time.perf_counter() - before)
            before = time.perf_counter()
            stats_repo.fingerprints(session, epochs=dict.fromkeys(ids, 1))
            new.append(time.perf_counter() - before)
    return statistics.median(old), statistics.median(new)


def _scale(size: int, repeats: int, history: int = 0) -> dict[str, tuple[float, float, int, float]]:
    with _service() as (client, runtime, headers, clock):
        for i in range(size):
            _seed_small(client, runtime, headers, f"exp-{i:04d}")
        if history:
            _add_history(runtime, history)
            old, new = _fingerprint_times(runtime, repeats)
            print(
                f"{size:>11}  which changed, {history} h of history: grouped aggregate "
                f"{old * 1e3:.1f} ms, stat_total rows {new * 1e3:.1f} ms (ratio {new / old:.3f})"
            )
        clock.advance(8 * 24)  # matured: no correction moves by ageing alone
        runtime.refresher.recompute_all()
        results: dict[str, list[tuple[float, float, int, float]]] = {"full": [], "idle": []}
        results["evidence"], results["full-child"], results["no refresh"] = [], [], []
        refresher = runtime.refresher
        for r in range(repeats):
            clock.advance(2 / 3600)
            refresher._checked.clear()  # the unscheduled baseline
            results["full"].append(_timed(runtime))
            # The same pass with the computations in the child process (as the
            # refresher's own thread runs them when BANDITLOOP_POLICY_COMPUTE_PROCESS).
            clock.advance(2 / 3600)
            refresher._checked.clear()
            refresher._compute = refresher._offload
            results["full-child"].append(_timed(runtime))
            refresher._compute = compute_snapshot
            clock.advance(2 / 3600)
            results["idle"].append(_timed(runtime))
            key = f"exp-{(r * 7919) % size:04d}"
            [decision] = client.post(
                "/v1/choose/batch",
                json={"experiment": key, "units": [{"unit_id": f"late-{r}"}]},
                headers=headers,
            ).json()["decisions"]
            runtime.decision_log.flush()
            event = {"event_id": f"late-{r}", "decision_id": decision["decision_id"]}
            event["type"] = "click"
            assert client.post("/v1/events", json=[event], headers=headers).status_code == 200
            clock.advance(2 / 3600)
            results["evidence"].append(_timed(runtime))
            # The baseline stall: the heartbeat alone, as long as the child pass took.
            with _Heartbeat() as heartbeat:
                time.sleep(results["full-child"][-1][0])
            results["no refresh"].append((0.0, 0.0, 0, heartbeat.worst))
        refresher._offload.stop()
    return {
        name: (
            statistics.median(v[0] for v in values),
            statistics.median(v[1] for v in values),
            int(statistics.median(v[2] for v in values)),
            statistics.median(v[3] for v in values),
        )
        for name, values in results.items()
    }


def scale(sizes: list[int], repeats: int, history: int = 0) -> None:
    print(f"refresh passes on SQLite, medians of {repeats}; CPU is the refreshing thread's;")
    print("stall: the longest a 1 ms heartbeat thread in the same process woke late")
    head = f"{'experiments':>11}  {'pass':10} {'wall ms':>9} {'CPU ms':>9} {'written':>8}"
    print(f"{head} {'CPU/full':>9} {'stall ms':>9}")
    for size in sizes:
        found = _scale(size, repeats, history)
        full_cpu = found["full"][1]
        for name in ("full", "full-child", "idle", "evidence", "no refresh"):
            wall, cpu, written, stall = found[name]
            ratio = f"{cpu / full_cpu:9.3f}" if full_cpu else f"{'-':>9}"
            row = f"{size:>11}  {name:10} {wall * 1e3:9.1f} {cpu * 1e3:9.1f} {written:>8}"
            print(f"{row} {ratio} {stall * 1e3:9.1f}")
        bound = 2.0 + found["evidence"][0]
        print(f"{size:>11}  evidence reaches the policy within {bound:.2f} s (2 s interval + pass)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", help="comma-separated experiment counts, e.g. 10,100,1000")
    parser.add_argument("--history", type=int, default=0, help="hours of older buckets (--scale)")
    args = parser.parse_args()
    if args.scale:
        scale([int(n) for n in args.scale.split(",")], args.repeats, args.history)
        return
    with _service() as (client, runtime, headers, clock):
        for i in range(args.experiments):
            _seed(client, runtime, headers, f"exp-{i:03d}")
        young, matured, idle = [], [], []
        for _ in range(args.repeats):
            clock.advance(0.5)  # every young experiment's corrections are due again
            young.append(_time(runtime))
        clock.advance(8 * 24)
        matured.append(_time(runtime))
        for _ in range(args.repeats):
            clock.advance(1 / 60)
            idle.append(_time(runtime))
    per = args.experiments
    base = statistics.median(young) / per
    print(f"{per} experiments, median of {args.repeats} refreshes, ms per experiment:")
    for name, values in (("young", young), ("matured", matured), ("idle", idle)):
        cost = statistics.median(values) / per
        print(f"  {name:8s} {cost * 1000:8.2f} ms   ratio to young {cost / base:6.3f}")


if __name__ == "__main__":
    main()
