"""Versioned policy snapshots."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from service.models import PolicySnapshot


def latest(session: Session, *, experiment_id: int) -> PolicySnapshot | None:
    stmt = (
        select(PolicySnapshot)
        .where(PolicySnapshot.experiment_id == experiment_id)
        .order_by(col(PolicySnapshot.version).desc())
        .limit(1)
    )
    return session.exec(stmt).first()


def latest_versions(session: Session) -> dict[int, int]:
    stmt = select(PolicySnapshot.experiment_id, func.max(PolicySnapshot.version)).group_by(
        col(PolicySnapshot.experiment_id)
    )
    return {int(eid): int(version) for eid, version in session.exec(stmt)}


def get_versions(session: Session, *, wanted: dict[int, int]) -> list[PolicySnapshot]:
    if not wanted:
        return []
    found = []
    for experiment_id, version in wanted.items():
        stmt = select(PolicySnapshot).where(
            PolicySnapshot.experiment_id == experiment_id, PolicySnapshot.version == version
        )
        row = session.exec(stmt).first()
        if row is not None:
            found.append(row)
    return found


def insert_next(
    session: Session, *, experiment_id: int, epoch: int, payload: dict[str, Any]
) -> PolicySnapshot:
    """Write the next version; the unique (experiment, version) settles races."""
    current = session.exec(
        select(func.max(PolicySnapshot.version)).where(
            PolicySnapshot.experiment_id == experiment_id
        )
    ).one()
    snapshot = PolicySnapshot(
        experiment_id=experiment_id,
        version=int(current or 0) + 1,
        epoch=epoch,
        payload=payload,
    )
    session.add(snapshot)
    session.flush()
    return snapshot


def history(session: Session, *, experiment_id: int, limit: int = 500) -> list[PolicySnapshot]:
    stmt = (
        select(PolicySnapshot)
        .where(PolicySnapshot.experiment_id == experiment_id)
        .order_by(col(PolicySnapshot.version).desc())
        .limit(limit)
    )
    return list(reversed(list(session.exec(stmt))))
