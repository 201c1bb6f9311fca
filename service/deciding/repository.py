"""Decisions: keyed insert-or-ignore with read-back, lookups for attribution."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlmodel import Session, col

from service.core.statements import in_json, insert_ignore, table_of
from service.models import Decision

IN_CHUNK = 500
KeyedKey = tuple[int, str, str]


def insert_keyed(session: Session, *, rows: Sequence[dict[str, object]]) -> set[str]:
    """Insert keyed decisions unless (experiment, unit, send) exists; return the new ids.

    Any conflict is skipped, the id's too: after a unit is forgotten, the same keyed request
    in the same second mints the same id as the unlinked row.
    """
    inserted = insert_ignore(
        session,
        table_of(Decision),
        rows,
        conflict=None,
        returning=["id"],
    )
    return {row[0] for row in inserted}


@dataclass(frozen=True, slots=True)
class KeyedDecision:
    """What a keyed read-back answers with (plain rows: no ORM objects to build)."""

    id: str
    arm_id: int
    propensity: float
    explored: bool
    policy_version: int
    holdout: bool


def find_keyed(
    session: Session, *, experiment_id: int, keys: Iterable[tuple[str, str]]
) -> dict[KeyedKey, KeyedDecision]:
    """The stored decisions of these (unit hash, send id) keys.

    Filtered on the send ids too: a unit's earlier sends are not read back (a batch nearly
    always has one send id, and a long-lived unit has many sends)."""
    wanted = set(keys)
    hashes = sorted({unit_hash for unit_hash, _ in wanted})
    sends = sorted({send_id for _, send_id in wanted})
    columns = (
        col(Decision.unit_hash),
        col(Decision.send_id),
        col(Decision.id),
        col(Decision.arm_id),
        col(Decision.propensity),
        col(Decision.explored),
        col(Decision.policy_version),
        col(Decision.holdout),
    )
    found: dict[KeyedKey, KeyedDecision] = {}
    for start in range(0, len(hashes), IN_CHUNK):
        stmt = sa_select(*columns).where(
            col(Decision.experiment_id) == experiment_id,
            col(Decision.unit_hash).in_(hashes[start : start + IN_CHUNK]),
        )
        if len(sends) <= IN_CHUNK:
            stmt = stmt.where(col(Decision.send_id).in_(sends))
        for unit_hash, send_id, *rest in session.execute(stmt):
            if (unit_hash, send_id) in wanted:
                found[(experiment_id, unit_hash, send_id)] = KeyedDecision(*rest)
    return found


class DecisionRef(NamedTuple):
    """What attribution needs of a stored decision (plain rows: no ORM objects to build;
    a named tuple, built in a third of a frozen dataclass's time: a batch makes 1,000)."""

    id: str
    experiment_id: int
    epoch: int
    segment: str
    arm_id: int
    created_at: datetime


def get_many(session: Session, *, ids: Iterable[str]) -> dict[str, DecisionRef]:
    """The stored decisions of these ids (unknown ids are left out)."""
    unique = sorted(set(ids))
    if not unique:
        return {}
    stmt = sa_select(
        col(Decision.id),
        col(Decision.experiment_id),
        col(Decision.epoch),
        col(Decision.segment),
        col(Decision.arm_id),
        col(Decision.created_at),
    ).where(in_json(session, col(Decision.id), unique))
    return {row[0]: DecisionRef._make(row) for row in session.execute(stmt)}


def forget_unit(session: Session, *, unit_hash: str) -> int:
    """Drop the unit from its decisions; the decisions (and their counts) stay."""
    result = session.execute(
        update(Decision).where(col(Decision.unit_hash) == unit_hash).values(unit_hash=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
