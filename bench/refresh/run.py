"""What a policy refresh costs as experiments age: idle, matured experiments against young ones.

N experiments, each with a send of 2,000 keyed decisions and email-like clicks (log-normal
delays, median an hour), on an embedded SQLite database and a ``ManualClock`` passed to the
runtime. The refresher's ``recompute_all`` is timed, per experiment:

- ``young``: 30 minutes after the sends (every experiment is recomputed: its corrections move);
- ``matured``: the first refresh after the window (each recomputed once, corrections final);
- ``idle``: later refreshes of the matured experiments with no new event (skipped after one
  aggregate query each).

Ratios are against ``young`` measured in the same run.

Run: .venv/bin/python bench/refresh/run.py [--experiments 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fastapi.testclient import TestClient  # noqa: E402

from service import migrations  # noqa: E402
from service.app import create_app  # noqa: E402
from service.clock import ManualClock  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.settings import Settings  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
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
            headers = {"Authorization": f"Bearer {raw}"}
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
