"""Storing a batch of events and claiming their first events, in as few statements and as
little Python per row as each database allows. What is stored and claimed is decided by
the pipeline and ``counting``; this module only writes it and says what was new.

PostgreSQL: one statement. The events go in through ``json_populate_recordset`` (one JSON
document, encoded by orjson and parsed in C by the server: the multi-row VALUES form costs
a query rewrite in Python per call), and a data-modifying CTE claims the first events of
the rows that were new, so the insert and the claim are one round trip instead of two.

SQLite: ``executemany`` (the sqlite3 module's C loop, the same path a plain insert takes)
with ON CONFLICT DO NOTHING. A transaction holds SQLite's only write lock from its start
(BEGIN IMMEDIATE, ``service.core.db``), so the rows are given the rowids after the largest
one read just before; when the statement's count of changes says every row was new (the
usual case), their ids are known without reading anything back, and otherwise the rowids
that exist past the largest one are exactly the new rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, DateTime, Table, text
from sqlmodel import Session

from service.core.statements import table_of
from service.models import FirstEvent, OutcomeEvent

EventKey = tuple[str, str, str]  # (provider, event_key, decision_id): unique per event
FirstKey = tuple[str, str]  # (decision_id, metric): unique per first event

EVENT_COLUMNS = (
    "provider",
    "event_key",
    "decision_id",
    "experiment_id",
    "arm_id",
    "epoch",
    "segment",
    "type",
    "provider_type",
    "name",
    "value",
    "machine",
    "occurred_at",
    "received_at",
    "raw_payload_id",
    "outcome",
)
FIRST_COLUMNS = ("decision_id", "metric", "event_id", "occurred_at")
_event_key = itemgetter("provider", "event_key", "decision_id")
# SQLite picks rowids at random once the largest one is taken: keep far from it.
_ROWID_ROOM = 2**62


# (event key, metric): the first event that the event claims for the metric if it is new.
# A plain tuple: a batch makes one or more per event.
Claim = tuple[EventKey, str]


@dataclass
class Stored:
    """What a batch added: the new events' ids, and the first events they claimed (each
    with the id of the event that claimed it: the lowest id among the batch's new events)."""

    event_ids: dict[EventKey, int] = field(default_factory=dict)
    firsts: dict[FirstKey, int] = field(default_factory=dict)


def store_events(
    session: Session, *, rows: Sequence[Mapping[str, Any]], claims: Sequence[Claim]
) -> Stored:
    """Insert-or-ignore ``rows`` (``EVENT_COLUMNS``, unique on ``EventKey``), then
    insert-or-ignore the first events that the new ones claim; return what was new.

    Rows go in sorted by key and first events by (decision, metric), on both databases:
    two transactions touching the same rows lock them in the same order and queue instead
    of deadlocking (the orphan path's ``insert_first_events`` sorts the same way). The
    claims themselves are sorted for PostgreSQL's statement only: SQLite's path sorts the
    first events once it has chosen them."""
    if not rows:
        return Stored()
    ordered = sorted(rows, key=_event_key)
    if session.get_bind().dialect.name == "postgresql":
        wanted = sorted(claims, key=lambda c: (c[0][2], c[1], c[0][0], c[0][1]))
        return _store_postgresql(session, ordered, wanted)
    return _store_sqlite(session.connection(), ordered, claims)


# --- PostgreSQL ----------------------------------------------------------------------

# COLLATE "C" orders by code point, as Python's sort does: the claims are locked in the
# same order as everywhere else (see store_events). The claims are jsonb: a json value is
# parsed again by each ->> (a fifth of the statement for 1,000 claims).
_POSTGRES_SQL = """
WITH new_event AS (
    INSERT INTO outcome_event ({columns})
    SELECT {columns} FROM json_populate_recordset(NULL::outcome_event, CAST(:rows AS json))
    ON CONFLICT (provider, event_key, decision_id) DO NOTHING
    RETURNING id, provider, event_key, decision_id, occurred_at
), claim AS (
    SELECT c ->> 0 AS provider, c ->> 1 AS event_key, c ->> 2 AS decision_id,
           c ->> 3 AS metric
    FROM jsonb_array_elements(CAST(:claims AS jsonb)) AS c
), wanted AS (
    SELECT DISTINCT ON (claim.decision_id COLLATE "C", claim.metric COLLATE "C")
           claim.decision_id, claim.metric, new_event.id AS event_id, new_event.occurred_at
    FROM claim
    JOIN new_event USING (provider, event_key, decision_id)
    ORDER BY claim.decision_id COLLATE "C", claim.metric COLLATE "C", new_event.id
), new_first AS (
    INSERT INTO first_event (decision_id, metric, event_id, occurred_at)
    SELECT decision_id, metric, event_id, occurred_at FROM wanted
    ORDER BY decision_id COLLATE "C", metric COLLATE "C"
    ON CONFLICT (decision_id, metric) DO NOTHING
    RETURNING decision_id, metric, event_id
)
SELECT id, provider, event_key, decision_id, NULL AS metric FROM new_event
UNION ALL
SELECT event_id, NULL, NULL, decision_id, metric FROM new_first
"""


def _store_postgresql(
    session: Session, rows: Sequence[Mapping[str, Any]], claims: Sequence[Claim]
) -> Stored:
    sql = _POSTGRES_SQL.format(columns=", ".join(EVENT_COLUMNS))
    document = _json_rows(rows)
    wanted = orjson.dumps([(*key, metric) for key, metric in claims]).decode()
    stored = Stored()
    for event_id, provider, event_key, decision_id, metric in session.execute(
        text(sql), {"rows": document, "claims": wanted}
    ):
        if metric is None:
            stored.event_ids[(provider, event_key, decision_id)] = int(event_id)
        else:
            stored.firsts[(decision_id, metric)] = int(event_id)
    return stored


def _json_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows as one JSON array. Times are aware (the pipeline stores UTC) and written
    with their offset; orjson writes a non-finite float as null, so a row with one takes
    the standard encoder, whose NaN token the server refuses as it always did."""
    if all(row["value"] is None or math.isfinite(row["value"]) for row in rows):
        return orjson.dumps(list(rows), option=orjson.OPT_NAIVE_UTC).decode()
    return json.dumps(list(rows), default=_iso, separators=(",", ":"))


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


# --- SQLite --------------------------------------------------------------------------


def _store_sqlite(
    connection: Connection, rows: Sequence[Mapping[str, Any]], claims: Sequence[Claim]
) -> Stored:
    keys = list(map(_event_key, rows))
    event_ids = _insert_new(
        connection,
        table_of(OutcomeEvent),
        EVENT_COLUMNS,
        list(map(itemgetter(*EVENT_COLUMNS), rows)),
        conflict="provider, event_key, decision_id",
    )
    stored = Stored(event_ids={k: i for k, i in zip(keys, event_ids, strict=True) if i})
    occurred = dict(zip(keys, (r["occurred_at"] for r in rows), strict=True))
    wanted: dict[FirstKey, tuple[int, datetime]] = {}
    for key, metric in claims:
        event_id = stored.event_ids.get(key)
        first = (key[2], metric)
        if event_id is not None and (first not in wanted or event_id < wanted[first][0]):
            wanted[first] = (event_id, occurred[key])
    firsts = sorted(wanted.items())
    claimed = _insert_new(
        connection,
        table_of(FirstEvent),
        FIRST_COLUMNS,
        [(d, m, event_id, at) for (d, m), (event_id, at) in firsts],
        conflict="decision_id, metric",
    )
    stored.firsts = {
        first: event_id for (first, (event_id, _)), new in zip(firsts, claimed, strict=True) if new
    }
    return stored


def _insert_new(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    values: list[tuple[Any, ...]],
    *,
    conflict: str,
) -> list[int | None]:
    """executemany an insert-or-ignore of ``values`` (in ``columns`` order, sorted by the
    caller); return each row's rowid if it was new, else None.

    The rows get rowids past the largest one (what SQLite would give them), so when the
    statement's count of changes says that every row was new, nothing needs reading back
    (the usual case); otherwise the rowids that exist past the largest one are read."""
    if not values:
        return []
    before = connection.exec_driver_sql(f"SELECT max(rowid) FROM {table.name}").scalar() or 0
    if before > _ROWID_ROOM:
        raise RuntimeError(f"{table.name}: rowids past 2**62, new rows cannot be told apart")
    rowids = range(before + 1, before + 1 + len(values))
    bound = list(zip(rowids, *_bound(connection, table, columns, values), strict=True))
    marks = ", ".join("?" for _ in range(len(columns) + 1))
    added = connection.exec_driver_sql(
        f"INSERT INTO {table.name} (rowid, {', '.join(columns)}) VALUES ({marks}) "
        f"ON CONFLICT ({conflict}) DO NOTHING",
        bound,
    ).rowcount
    if added == len(values):
        return list(rowids)
    stored = {
        rowid
        for (rowid,) in connection.exec_driver_sql(
            f"SELECT rowid FROM {table.name} WHERE rowid > ?", (before,)
        )
    }
    if len(stored) != added:
        raise RuntimeError(f"{table.name}: {added} rows added, {len(stored)} found past the last")
    return [rowid if rowid in stored else None for rowid in rowids]


def _bound(
    connection: Connection,
    table: Table,
    columns: Sequence[str],
    values: list[tuple[Any, ...]],
) -> list[Sequence[Any]]:
    """The values' columns as the driver takes them: each column's bind processor (times
    become SQLAlchemy's stored text, exactly as an ORM insert writes them), applied column
    by column, and once per distinct value for the time columns (a batch mostly shares its
    times). Columns, not rows: the caller zips them with the rowids in one pass."""
    dialect = connection.dialect
    by_column: list[Sequence[Any]] = []
    for name, column in zip(columns, zip(*values, strict=True), strict=True):
        column_type = table.c[name].type
        process = column_type._cached_bind_processor(dialect)
        if process is None:
            by_column.append(column)
        elif isinstance(getattr(column_type, "impl_instance", column_type), DateTime):
            done = {value: process(value) for value in set(column)}
            by_column.append(list(map(done.__getitem__, column)))
        else:
            by_column.append(list(map(process, column)))
    return by_column
