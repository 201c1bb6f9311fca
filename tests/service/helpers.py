"""Test helpers for measuring: decisions through the API, events, stats snapshots."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from service.core.runtime import Runtime
from service.models import StatBucket, utcnow


def decide_many(
    client: TestClient, decide: dict[str, str], runtime: Runtime, key: str, n: int
) -> list[dict[str, Any]]:
    response = client.post(
        "/v1/choose/batch",
        json={"experiment": key, "units": [{"unit_id": f"u{i}"} for i in range(n)]},
        headers=decide,
    )
    assert response.status_code == 200, response.text
    runtime.decision_log.flush()
    return response.json()["decisions"]


def later(minutes: float = 15.0) -> datetime:
    """A refresher clock some minutes ahead: events posted at once have aged, and their
    delays (all near zero) have had time to show that nothing more is coming."""
    return utcnow() + timedelta(minutes=minutes)


def stats_counter(runtime: Runtime) -> Counter[tuple[Any, ...]]:
    """Every statistics row as a comparable multiset of (key..., count, value_sum, offset
    sums)."""
    with Session(runtime.engine) as session:
        rows = session.exec(select(StatBucket)).all()
        return Counter(
            (
                r.experiment_id,
                r.epoch,
                r.segment,
                r.arm_id,
                r.hour.replace(tzinfo=None),
                r.metric,
                r.count,
                round(r.value_sum, 6),
                None if r.offset_seconds_sum is None else round(r.offset_seconds_sum, 3),
                # Nine significant digits: sums taken in another order differ in the last bits.
                None
                if r.offset_seconds_sq_sum is None
                else float(f"{r.offset_seconds_sq_sum:.9g}"),
            )
            for r in rows
            if r.count or r.value_sum
        )


def metric_total(runtime: Runtime, metric: str) -> int:
    with Session(runtime.engine) as session:
        rows = session.exec(select(StatBucket).where(StatBucket.metric == metric)).all()
        return sum(r.count for r in rows)


def value_total(runtime: Runtime, metric: str) -> float:
    with Session(runtime.engine) as session:
        rows = session.exec(select(StatBucket).where(StatBucket.metric == metric)).all()
        return sum(r.value_sum for r in rows)
