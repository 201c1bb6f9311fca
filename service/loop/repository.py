"""Loop runs, learnings and proposals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from service.core.vocabulary import LoopRunStatus
from service.models import ArmStatusChange, LoopRun, Proposal

# Run statuses that count as a completed loop run for the retirement rule ("held across two
# loop runs"). "completed" is accepted too, for rows written by other tools.
COMPLETED_STATUSES = (LoopRunStatus.SUCCEEDED, LoopRunStatus.COMPLETED)


def add_run(session: Session, *, run: LoopRun) -> LoopRun:
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, *, run_id: int) -> LoopRun | None:
    return session.get(LoopRun, run_id)


def runs(session: Session, *, experiment_id: int, limit: int = 50) -> list[LoopRun]:
    stmt = (
        select(LoopRun)
        .where(LoopRun.experiment_id == experiment_id)
        .order_by(col(LoopRun.id).desc())
        .limit(limit)
    )
    return list(session.exec(stmt))


def abandon_running(session: Session, *, experiment_id: int, finished_at: datetime) -> int:
    """Mark runs left `running` by a holder that died as abandoned (the caller holds the
    experiment's loop lease, so no such run is still going)."""
    result = session.execute(
        update(LoopRun)
        .where(col(LoopRun.experiment_id) == experiment_id)
        .where(col(LoopRun.status) == LoopRunStatus.RUNNING)
        .values(
            status="abandoned",
            finished_at=finished_at,
            error="the replica running it stopped before it finished",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def completed_runs_since(session: Session, *, experiment_id: int, since: datetime) -> int:
    stmt = select(func.count()).where(
        LoopRun.experiment_id == experiment_id,
        col(LoopRun.status).in_(COMPLETED_STATUSES),
        col(LoopRun.finished_at) > since,
    )
    return int(session.exec(stmt).one())


def last_started(session: Session, *, experiment_ids: Sequence[int]) -> dict[int, datetime]:
    """When each experiment's newest loop run started (experiments without runs are absent)."""
    if not experiment_ids:
        return {}
    stmt = (
        select(LoopRun.experiment_id, func.max(LoopRun.started_at))
        .where(col(LoopRun.experiment_id).in_(experiment_ids))
        .group_by(col(LoopRun.experiment_id))
    )
    return {int(eid): started for eid, started in session.exec(stmt) if started is not None}


def add_proposal(session: Session, *, proposal: Proposal) -> Proposal:
    session.add(proposal)
    session.flush()
    return proposal


def get_proposal(
    session: Session, *, proposal_id: int, for_update: bool = False
) -> Proposal | None:
    stmt = select(Proposal).where(Proposal.id == proposal_id)
    if for_update:
        # Two reviewers deciding the same proposal at once: the second waits, then sees it
        # decided (SQLite serialises writers anyway).
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def proposals(
    session: Session,
    *,
    status: str | None = None,
    experiment_id: int | None = None,
    limit: int = 200,
) -> list[Proposal]:
    stmt = select(Proposal).order_by(col(Proposal.id)).limit(limit)
    if status is not None:
        stmt = stmt.where(Proposal.status == status)
    if experiment_id is not None:
        stmt = stmt.where(Proposal.experiment_id == experiment_id)
    return list(session.exec(stmt))


def edited_proposals(session: Session, *, experiment_id: int) -> list[Proposal]:
    """Approved proposals whose text a reviewer edited, oldest first."""
    stmt = (
        select(Proposal)
        .where(Proposal.experiment_id == experiment_id, Proposal.status == "approved")
        .where(col(Proposal.edited_content).is_not(None))
        .order_by(col(Proposal.id))
    )
    return list(session.exec(stmt))


def pending_count(session: Session, *, experiment_id: int, run_id: int | None = None) -> int:
    """Pending proposals of an experiment (of one loop run, given its id)."""
    stmt = select(func.count()).where(
        Proposal.experiment_id == experiment_id, Proposal.status == "pending"
    )
    if run_id is not None:
        stmt = stmt.where(Proposal.loop_run_id == run_id)
    return int(session.exec(stmt).one())


def pending_retirement_arm_ids(session: Session, *, experiment_id: int) -> set[int]:
    stmt = select(Proposal.arm_id).where(
        Proposal.experiment_id == experiment_id,
        Proposal.status == "pending",
        Proposal.kind == "retire_arm",
    )
    return {int(arm_id) for arm_id in session.exec(stmt) if arm_id is not None}


def latest_status_reasons(session: Session, *, arm_ids: Sequence[int]) -> dict[int, str]:
    """The reason given with each arm's newest status change."""
    if not arm_ids:
        return {}
    newest = (
        select(func.max(ArmStatusChange.id))
        .where(col(ArmStatusChange.arm_id).in_(arm_ids))
        .group_by(col(ArmStatusChange.arm_id))
    )
    stmt = select(ArmStatusChange.arm_id, ArmStatusChange.reason).where(
        col(ArmStatusChange.id).in_(newest)
    )
    return {int(arm_id): reason for arm_id, reason in session.exec(stmt)}
