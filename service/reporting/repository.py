"""Reads for evaluation: logged decisions with their reward so far, and what each snapshot
served."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func
from sqlalchemy import select as select_columns
from sqlmodel import Session, col, select

from service.core.vocabulary import OVERALL
from service.models import Decision, FirstEvent, PolicySnapshot, as_utc

VERSION_CHUNK = 500


def first_success_by(metric: str, now: datetime) -> ColumnElement[bool]:
    """The outer-join condition that pairs a decision with its first ``metric`` event, if one
    occurred by ``now`` (a later one is not known yet at ``now``)."""
    return and_(
        col(FirstEvent.decision_id) == col(Decision.id),
        col(FirstEvent.metric) == metric,
        col(FirstEvent.occurred_at) <= now,
    )


@dataclass(frozen=True)
class LoggedDecisions:
    """Logged decisions as columns (one entry per decision, newest first).

    ``age_hours``: time from the decision to the evaluation's ``now``. ``delay_hours``: from the
    decision to its first success of the metric, NaN where none has arrived by ``now``.
    """

    arm_id: list[int]
    segment: list[str]
    propensity: list[float]
    policy_version: list[int]
    success: list[bool]
    age_hours: list[float]
    delay_hours: list[float]

    def __len__(self) -> int:
        return len(self.arm_id)


# The name before young decisions were evaluated too.
MaturedDecisions = LoggedDecisions


@dataclass(frozen=True, slots=True)
class ServedVersion:
    """What one snapshot version could serve: its arms, which were eligible, the allocation."""

    arm_ids: tuple[int, ...]
    eligible: tuple[bool, ...]
    allocation: tuple[float, ...]


def logged_decisions(
    session: Session,
    *,
    experiment_id: int,
    epoch: int,
    metric: str,
    now: datetime,
    limit: int,
) -> LoggedDecisions:
    """The newest ``limit`` decisions made before ``now``, each with its success so far.

    Success: a first event of ``metric`` that occurred by ``now``. Ingestion only claims first
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
            col(Decision.created_at),
            col(FirstEvent.occurred_at),
        )
        .join(FirstEvent, first_success_by(metric, now), isouter=True)
        .where(
            col(Decision.experiment_id) == experiment_id,
            col(Decision.epoch) == epoch,
            col(Decision.created_at) < now,
            # Holdout decisions (propensity 1 on the control arm) are no part of the policy's
            # log: service.reporting.value compares them with the served ones instead.
            col(Decision.holdout).is_(False),
        )
        .order_by(col(Decision.created_at).desc())
        .limit(limit)
    )
    rows = session.connection().execute(stmt).all()
    if not rows:
        return LoggedDecisions([], [], [], [], [], [], [])
    arm_id, segment, propensity, version, created, occurred = (
        list(c) for c in zip(*rows, strict=True)
    )
    now = as_utc(now)
    age, delay, success = [], [], []
    for made, event in zip(created, occurred, strict=True):
        made = as_utc(made)
        age.append(max(0.0, (now - made).total_seconds() / 3600.0))
        if event is None:
            delay.append(float("nan"))
            success.append(False)
        else:
            delay.append(max(0.0, (as_utc(event) - made).total_seconds() / 3600.0))
            success.append(True)
    return LoggedDecisions(arm_id, segment, propensity, version, success, age, delay)


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
