"""Reads for the loop's value and for fatigue: keyed decisions with their group (holdout or
served) or their arm, and whether they earned a success."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select as select_columns
from sqlmodel import Session, col

from service.models import Decision, FirstEvent, as_utc
from service.reporting.repository import first_success_by


@dataclass(frozen=True, slots=True)
class KeyedOutcome:
    unit_hash: str
    holdout: bool
    created_at: datetime
    success: bool


def keyed_outcomes(
    session: Session,
    *,
    experiment_id: int,
    epoch: int,
    metric: str,
    made_before: datetime,
    now: datetime,
) -> list[KeyedOutcome]:
    """Keyed decisions of an epoch made before `made_before`, each with whether a first
    `metric` event occurred by `now`. Unkeyed decisions are in neither group."""
    stmt = (
        select_columns(
            col(Decision.unit_hash),
            col(Decision.holdout),
            col(Decision.created_at),
            col(FirstEvent.occurred_at),
        )
        .join(FirstEvent, first_success_by(metric, now), isouter=True)
        .where(
            col(Decision.experiment_id) == experiment_id,
            col(Decision.epoch) == epoch,
            col(Decision.unit_hash).is_not(None),
            col(Decision.send_id).is_not(None),
            col(Decision.created_at) < made_before,
        )
    )
    return [
        KeyedOutcome(str(unit), bool(holdout), as_utc(made), occurred is not None)
        for unit, holdout, made, occurred in session.connection().execute(stmt)
    ]


@dataclass(frozen=True, slots=True)
class ArmExposure:
    unit_hash: str
    arm_id: int
    created_at: datetime
    success: bool


def keyed_exposures(
    session: Session,
    *,
    experiment_id: int,
    epoch: int,
    metric: str,
    made_before: datetime,
    now: datetime,
    limit: int,
) -> list[ArmExposure]:
    """The newest `limit` keyed decisions made before `made_before` and served by the
    policy (not the holdout), each with whether a first `metric` event occurred by `now`;
    oldest first."""
    stmt = (
        select_columns(
            col(Decision.unit_hash),
            col(Decision.arm_id),
            col(Decision.created_at),
            col(FirstEvent.occurred_at),
        )
        .join(FirstEvent, first_success_by(metric, now), isouter=True)
        .where(
            col(Decision.experiment_id) == experiment_id,
            col(Decision.epoch) == epoch,
            col(Decision.unit_hash).is_not(None),
            col(Decision.holdout).is_(False),
            col(Decision.created_at) < made_before,
        )
        .order_by(col(Decision.created_at).desc())
        .limit(limit)
    )
    rows = [
        ArmExposure(str(unit), int(arm), as_utc(made), occurred is not None)
        for unit, arm, made, occurred in session.connection().execute(stmt)
    ]
    rows.reverse()
    return rows
