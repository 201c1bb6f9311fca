"""The small aggregate reads behind the scrape-time state metrics (state_metrics.py beside it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from service.core.vocabulary import ExperimentStatus
from service.models import Arm, Experiment, LoopRun, PolicySnapshot, Proposal

# Enough for a legend; the label is truncated further where it is exported.
ARM_TEXT_CHARS = 80


def arms(session: Session) -> list[tuple[str, int, str, str]]:
    """(experiment key, arm id, arm status, start of the arm's text) for every experiment
    that is not archived."""
    stmt = (
        select(
            Experiment.key,
            Arm.id,
            Arm.status,
            func.substr(Arm.content, 1, ARM_TEXT_CHARS),
        )
        .join(Experiment, col(Arm.experiment_id) == col(Experiment.id))
        .where(Experiment.status != ExperimentStatus.ARCHIVED)
        .order_by(col(Experiment.key), col(Arm.id))
    )
    return [(k, int(a or 0), s, t or "") for k, a, s, t in session.exec(stmt)]


def pending_proposals(session: Session) -> dict[str, int]:
    stmt = (
        select(Experiment.key, func.count())
        .select_from(Proposal)
        .join(Experiment, col(Proposal.experiment_id) == col(Experiment.id))
        .where(Proposal.status == "pending")
        .group_by(col(Experiment.key))
    )
    return {key: int(n) for key, n in session.exec(stmt)}


def loop_runs(session: Session) -> dict[tuple[str, str], int]:
    """Loop runs by (experiment key, status), every process's runs included."""
    stmt = (
        select(Experiment.key, LoopRun.status, func.count())
        .select_from(LoopRun)
        .join(Experiment, col(LoopRun.experiment_id) == col(Experiment.id))
        .group_by(col(Experiment.key), col(LoopRun.status))
    )
    return {(key, status): int(n) for key, status, n in session.exec(stmt)}


def latest_snapshot_times(session: Session) -> dict[str, datetime]:
    """When each running experiment's newest policy snapshot was written."""
    stmt = (
        select(Experiment.key, func.max(PolicySnapshot.created_at))
        .select_from(PolicySnapshot)
        .join(Experiment, col(PolicySnapshot.experiment_id) == col(Experiment.id))
        .where(Experiment.status == ExperimentStatus.RUNNING)
        .group_by(col(Experiment.key))
    )
    return {key: created for key, created in session.exec(stmt) if created is not None}
