"""Reads for evaluation: matured decisions with their reward, and what each snapshot served."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from service.models import Decision, FirstEvent, PolicySnapshot
from service.vocabulary import OVERALL

VERSION_CHUNK = 500


@dataclass(frozen=True)
class MaturedDecisions:
    """Matured decisions as columns (one entry per decision, newest first)."""

    arm_id: list[int]
    segment: list[str]
    propensity: list[float]
    policy_version: list[int]
    success: list[bool]

    def __len__(self) -> int:
        return len(self.arm_id)


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """What one snapshot version could serve: its arms, which were eligible, the allocation."""

    arm_ids: tuple[int, ...]
    eligible: tuple[bool, ...]
    allocation: tuple[float, ...]


def matured_decisions(
    session: Session,
    *,
    experiment_id: int,
    epoch: int,
    metric: str,
    matured_before: datetime,
    limit: int,
) -> MaturedDecisions:
    """The newest ``limit`` decisions made before ``matured_before``, each with its reward.

    Reward: a first event of ``metric`` exists for the decision. Ingestion only claims first
    events inside the attribution window (later ones are ``late``), so existence is enough.
    Read through Core and returned as columns: the report may read 200k rows per request,
    and ORM row objects would cost more than all of the statistics.
    """
    # sqlalchemy's select: sqlmodel's overloads stop at four columns.
    stmt = (
        select_columns(
            col(Decision.arm_id),
            col(Decision.segment),
            col(Decision.propensity),
            col(Decision.policy_version),
            col(FirstEvent.decision_id).is_not(None),
        )
        .join(
            FirstEvent,
            and_(col(FirstEvent.decision_id) == col(Decision.id), col(FirstEvent.metric) == metric),
            isouter=True,
        )
        .where(
            col(Decision.experiment_id) == experiment_id,
            col(Decision.epoch) == epoch,
            col(Decision.created_at) < matured_before,
        )
        .order_by(col(Decision.created_at).desc())
        .limit(limit)
    )
    rows = session.connection().execute(stmt).all()
    if not rows:
        return MaturedDecisions([], [], [], [], [])
    arm_id, segment, propensity, version, success = (list(c) for c in zip(*rows, strict=True))
    return MaturedDecisions(arm_id, segment, propensity, version, success)


def count_decisions(
    session: Session,
    *,
    experiment_id: int,
    epoch: int,
    before: datetime | None = None,
    since: datetime | None = None,
) -> int:
    stmt = select(func.count()).where(
        Decision.experiment_id == experiment_id, Decision.epoch == epoch
    )
    if before is not None:
        stmt = stmt.where(col(Decision.created_at) < before)
    if since is not None:
        stmt = stmt.where(col(Decision.created_at) >= since)
    return int(session.exec(stmt).one())


def served_versions(
    session: Session, *, experiment_id: int, versions: Sequence[int]
) -> dict[int, ServedVersion]:
    """Arms, eligibility and overall allocation of the given snapshot versions.

    Only those three small JSON values are read, not whole payloads: a busy experiment has a
    new version every refresh, and a log of 200k decisions can span thousands of them.
    """
    payload: Any = PolicySnapshot.payload
    found: dict[int, ServedVersion] = {}
    wanted = sorted(set(versions))
    for start in range(0, len(wanted), VERSION_CHUNK):
        stmt = select(
            PolicySnapshot.version,
            payload["arm_ids"],
            payload["segments"][OVERALL]["eligible"],
            payload["segments"][OVERALL]["allocation"],
        ).where(
            PolicySnapshot.experiment_id == experiment_id,
            col(PolicySnapshot.version).in_(wanted[start : start + VERSION_CHUNK]),
        )
        for version, arm_ids, eligible, allocation in session.exec(stmt):
            if not arm_ids or eligible is None or allocation is None:
                continue  # a snapshot nothing was served from (paused, no live arm)
            found[int(version)] = ServedVersion(
                tuple(int(a) for a in arm_ids),
                tuple(bool(e) for e in eligible),
                tuple(float(x) for x in allocation),
            )
    return found
