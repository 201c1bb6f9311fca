"""The decision log's SQLite rows are built as the column types' bind processors build them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from service.deciding import bulk
from service.deciding.records import DecisionRecord


def _record(rng: random.Random, created_at: datetime) -> DecisionRecord:
    return DecisionRecord(
        id=f"d{rng.getrandbits(64):x}",
        experiment_id=rng.randint(1, 9),
        epoch=rng.randint(0, 3),
        arm_id=rng.randint(1, 50),
        segment=rng.choice(["", "mobile", "web"]),
        unit_hash=rng.choice([None, f"{rng.getrandbits(128):032x}"]),
        send_id=rng.choice([None, "s-1"]),
        propensity=rng.choice([rng.random(), 1, 0.0]),
        explored=rng.random() < 0.5,
        policy_version=rng.randint(1, 100),
        created_at=created_at,
        counts_exposure=True,
    )


def _times(rng: random.Random) -> list[datetime]:
    start = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)
    zones = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
    times = [start + timedelta(microseconds=rng.randint(0, 10**11)) for _ in range(300)]
    times += [t.replace(microsecond=0) for t in times[:20]]  # ISO text drops zero microseconds
    shifted = [t.astimezone(rng.choice(zones)) for t in times]
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, UTC)
    return [*shifted, datetime(1, 1, 1, tzinfo=UTC), last]


def test_sqlite_rows_match_the_bind_processors() -> None:
    dialect = sqlite.dialect()
    _statement, processors = bulk._prepared(dialect)
    assert bulk._plain_sqlite(dialect)
    rng = random.Random(15)
    records = [_record(rng, at) for at in _times(rng)]
    for record in records:
        assert bulk._sqlite_row(record) == bulk._processed(bulk._values(record), processors)


def test_a_batch_of_rows_shares_one_time_text_per_instant_and_zone() -> None:
    """A batch's rows reuse one time's text: equal instants in other zones, and keyed rows
    (with ``holdout``), still get what the processors give each."""
    dialect = sqlite.dialect()
    _statement, processors = bulk._prepared(dialect)
    _keyed_statement, keyed_processors = bulk._prepared(dialect, keyed=True)
    assert bulk._plain_sqlite_flag(dialect)
    rng = random.Random(16)
    at = datetime(2026, 11, 30, 18, 0, 0, 123456, UTC)
    same_instants = [at, at.astimezone(timezone(timedelta(hours=2))), at, at.replace(microsecond=0)]
    records = [_record(rng, rng.choice(same_instants)) for _ in range(200)]
    records = [r._replace(holdout=rng.random() < 0.5) for r in records]
    assert bulk._sqlite_rows(records) == [
        bulk._processed(bulk._values(r), processors) for r in records
    ]
    assert bulk._sqlite_rows(records, keyed=True) == [
        bulk._processed((*bulk._values(r), r.holdout), keyed_processors) for r in records
    ]


def test_a_naive_time_is_refused_as_the_column_type_refuses_it() -> None:
    _statement, processors = bulk._prepared(sqlite.dialect())
    record = _record(random.Random(1), datetime(2026, 11, 30, 18, 0))
    with pytest.raises(ValueError, match="timezone") as fast:
        bulk._sqlite_row(record)
    with pytest.raises(ValueError, match="timezone") as slow:
        bulk._processed(bulk._values(record), processors)
    assert str(fast.value) == str(slow.value)


def test_only_sqlite_takes_the_plain_rows() -> None:
    assert not bulk._plain_sqlite(postgresql.psycopg.dialect())
