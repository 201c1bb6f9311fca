"""The decision log's exposure deltas are exactly those of the one summation every writer uses."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from service.core.vocabulary import EXPOSURE
from service.deciding.records import DecisionRecord, exposure_deltas
from service.measuring import stats_repository
from service.models import hour_of


def _records(rng: random.Random, zones: list[timezone]) -> list[DecisionRecord]:
    start = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)
    return [
        DecisionRecord(
            id=f"d{i}",
            experiment_id=rng.choice([1, 2]),
            epoch=rng.choice([1, 2]),
            arm_id=rng.randint(1, 4),
            segment=rng.choice(["", "web"]),
            unit_hash=None,
            send_id=None,
            propensity=0.25,
            explored=False,
            policy_version=1,
            # Across hours and a day's end, with repeated times and whole seconds.
            created_at=(
                start + timedelta(microseconds=rng.choice([0, rng.randint(0, 3 * 3600 * 10**6)]))
            ).astimezone(rng.choice(zones)),
            counts_exposure=rng.random() < 0.9,
        )
        for i in range(3000)
    ]


def _summed_per_decision(records: list[DecisionRecord]) -> dict:
    return stats_repository.exposure_deltas(
        (
            (r.experiment_id, r.epoch, r.segment, r.arm_id, hour_of(r.created_at), EXPOSURE),
            r.created_at,
        )
        for r in records
        if r.counts_exposure
    )


def test_grouped_sums_equal_the_per_decision_sums_bit_for_bit() -> None:
    records = _records(random.Random(6), [UTC])
    grouped = exposure_deltas(records)
    assert grouped == _summed_per_decision(records)
    assert len(grouped) > 20  # several rows, each with many decisions
    assert all(type(delta[0]) is int for delta in grouped.values())


def test_times_in_other_zones_give_the_same_rows() -> None:
    zones = [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-3, minutes=-30))]
    records = _records(random.Random(7), zones)
    assert exposure_deltas(records) == _summed_per_decision(records)
