"""Raw payloads, outcome events, first events, dead letters and dispatches."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, delete, exists, func, insert, update
from sqlalchemy.dialects import postgresql
from sqlmodel import Session, col, select

from service.core.sessions import now as now_of
from service.core.statements import in_json, insert_ignore, table_of
from service.models import (
    DeadLetter,
    Decision,
    Dispatch,
    FirstEvent,
    OutcomeEvent,
    RawPayload,
)

IN_CHUNK = 500


def add_raw(session: Session, *, source: str, headers: dict[str, Any], body: bytes) -> int:
    """Store a payload as received; its id. A core insert (an ORM object and its flush
    cost a tenth of a small batch), dated by the unit of work's clock as a flush would."""
    table = table_of(RawPayload)
    stmt = (
        insert(table)
        .values(source=source, headers=headers, body=body, received_at=now_of(session))
        .returning(table.c.id)
    )
    return int(session.execute(stmt).scalar_one())


def raw_payloads(
    session: Session,
    *,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    ids: Sequence[int] | None = None,
    after_id: int = 0,
    limit: int = 500,
) -> list[RawPayload]:
    stmt = select(RawPayload).where(col(RawPayload.id) > after_id).order_by(col(RawPayload.id))
    if source:
        stmt = stmt.where(RawPayload.source == source)
    if since:
        stmt = stmt.where(col(RawPayload.received_at) >= since)
    if until:
        stmt = stmt.where(col(RawPayload.received_at) < until)
    if ids:
        stmt = stmt.where(col(RawPayload.id).in_(ids))
    return list(session.exec(stmt.limit(limit)))


def purge_raw_before(session: Session, *, before: datetime) -> int:
    result = session.execute(delete(RawPayload).where(col(RawPayload.received_at) < before))
    return int(result.rowcount)  # type: ignore[attr-defined]


def insert_events(
    session: Session, *, rows: Sequence[dict[str, Any]]
) -> dict[tuple[str, str, str], int]:
    """Insert-or-ignore on (provider, event_key, decision_id); return the new rows' ids."""
    ordered = sorted(rows, key=lambda r: (r["provider"], r["event_key"], r["decision_id"]))
    inserted = insert_ignore(
        session,
        table_of(OutcomeEvent),
        ordered,
        conflict=["provider", "event_key", "decision_id"],
        returning=["id", "provider", "event_key", "decision_id"],
    )
    return {(p, k, d): int(i) for i, p, k, d in inserted}


def insert_first_events(
    session: Session, *, rows: Sequence[dict[str, Any]]
) -> set[tuple[str, str]]:
    """Insert-or-ignore on (decision_id, metric); return the keys that were new."""
    ordered = sorted(rows, key=lambda r: (r["decision_id"], r["metric"]))
    inserted = insert_ignore(
        session,
        table_of(FirstEvent),
        ordered,
        conflict=["decision_id", "metric"],
        returning=["decision_id", "metric"],
    )
    return {(d, m) for d, m in inserted}


def first_events(
    session: Session, *, decision_ids: Iterable[str], metric: str
) -> dict[str, FirstEvent]:
    unique = sorted(set(decision_ids))
    found: dict[str, FirstEvent] = {}
    for start in range(0, len(unique), IN_CHUNK):
        stmt = select(FirstEvent).where(
            col(FirstEvent.decision_id).in_(unique[start : start + IN_CHUNK]),
            FirstEvent.metric == metric,
        )
        found.update({f.decision_id: f for f in session.exec(stmt)})
    return found


def wipe_first_events(session: Session, *, decision_ids: Sequence[str] | None = None) -> None:
    stmt = delete(FirstEvent)
    if decision_ids is not None:
        stmt = stmt.where(col(FirstEvent.decision_id).in_(decision_ids))
    session.execute(stmt)


def events_after(
    session: Session, *, after_id: int, limit: int, experiment_id: int | None = None
) -> list[OutcomeEvent]:
    stmt = select(OutcomeEvent).where(col(OutcomeEvent.id) > after_id)
    if experiment_id is not None:
        stmt = stmt.where(OutcomeEvent.experiment_id == experiment_id)
    return list(session.exec(stmt.order_by(col(OutcomeEvent.id)).limit(limit)))


ORPHAN = "orphan"


def orphans_of(session: Session, *, decision_ids: Iterable[str]) -> list[OutcomeEvent]:
    """Stored orphan events of these decisions, in id order.

    Every flush asks this for thousands of ids and nearly always finds none: on PostgreSQL
    one statement with the ids as one array parameter instead of an IN list per 500 ids; on
    SQLite one statement with the ids as one JSON text (``in_json``): the IN lists were
    expanded into a placeholder each by SQLAlchemy on every flush, about 2 us of the
    serving process's CPU per decision, of which this leaves a quarter."""
    unique = sorted(set(decision_ids))
    if not unique:
        return []
    if session.get_bind().dialect.name == "postgresql":
        wanted = bindparam("ids", unique, type_=postgresql.ARRAY(String))
        condition = col(OutcomeEvent.decision_id) == func.any(wanted)
    else:
        condition = in_json(session, col(OutcomeEvent.decision_id), unique)
    stmt = select(OutcomeEvent).where(condition, OutcomeEvent.outcome == ORPHAN)
    return sorted(session.exec(stmt), key=lambda e: e.id or 0)


def landed_orphans(
    session: Session, *, after_id: int, limit: int, experiment_id: int | None = None
) -> list[OutcomeEvent]:
    """Orphan events whose decision is stored now, in id order (for `stats rebuild`)."""
    landed = exists().where(col(Decision.id) == col(OutcomeEvent.decision_id))
    stmt = select(OutcomeEvent).where(
        OutcomeEvent.outcome == ORPHAN, col(OutcomeEvent.id) > after_id, landed
    )
    if experiment_id is not None:
        stmt = stmt.where(OutcomeEvent.experiment_id == experiment_id)
    return list(session.exec(stmt.order_by(col(OutcomeEvent.id)).limit(limit)))


def claim_orphans(session: Session, *, ids: Sequence[int], values: dict[str, Any]) -> set[int]:
    """Give orphans their decision's attribution and outcome; return the ids this call
    changed. The condition on the outcome makes the claim exclusive: of two writers that
    both found an orphan (a flush and a concurrent ingest), only one changes it and counts."""
    claimed: set[int] = set()
    ordered = sorted(ids)
    for start in range(0, len(ordered), IN_CHUNK):
        stmt = (
            update(OutcomeEvent)
            .where(
                col(OutcomeEvent.id).in_(ordered[start : start + IN_CHUNK]),
                col(OutcomeEvent.outcome) == ORPHAN,
            )
            .values(**values)
            .returning(col(OutcomeEvent.id))
        )
        claimed.update(int(row[0]) for row in session.execute(stmt))
    return claimed


def add_dead_letters(session: Session, *, rows: Sequence[DeadLetter]) -> None:
    for row in rows:
        session.add(row)
    session.flush()


def dead_letter_keys(session: Session, *, raw_payload_id: int) -> set[tuple[str, str]]:
    """(reason, event) of the dead letters already kept for one raw payload."""
    stmt = select(DeadLetter.reason, DeadLetter.event).where(
        DeadLetter.raw_payload_id == raw_payload_id
    )
    return {(reason, event) for reason, event in session.exec(stmt)}


def dead_letters(
    session: Session, *, source: str | None = None, after_id: int = 0, limit: int = 100
) -> list[DeadLetter]:
    stmt = select(DeadLetter).where(col(DeadLetter.id) > after_id).order_by(col(DeadLetter.id))
    if source:
        stmt = stmt.where(DeadLetter.source == source)
    return list(session.exec(stmt.limit(limit)))


def remember_dispatches(session: Session, *, rows: Sequence[dict[str, Any]]) -> None:
    insert_ignore(
        session,
        table_of(Dispatch),
        sorted(rows, key=lambda r: (r["provider"], r["dispatch_id"])),
        conflict=["provider", "dispatch_id"],
    )


def dispatches(
    session: Session, *, provider: str, dispatch_ids: Iterable[str]
) -> dict[str, list[str]]:
    unique = sorted(set(dispatch_ids))
    found: dict[str, list[str]] = {}
    for start in range(0, len(unique), IN_CHUNK):
        stmt = select(Dispatch).where(
            Dispatch.provider == provider,
            col(Dispatch.dispatch_id).in_(unique[start : start + IN_CHUNK]),
        )
        found.update({d.dispatch_id: list(d.decision_ids) for d in session.exec(stmt)})
    return found
