"""Learnings libraries, their experiments and their learnings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from service.models import Arm, Experiment, LearningRow, Library, StatBucket

DEFAULT_LIBRARY = "default"


def get_by_name(session: Session, *, name: str) -> Library | None:
    return session.exec(select(Library).where(Library.name == name)).first()


def get(session: Session, *, library_id: int) -> Library | None:
    return session.get(Library, library_id)


def add(session: Session, *, library: Library) -> Library:
    session.add(library)
    session.flush()
    return library


def list_all(session: Session) -> list[Library]:
    return list(session.exec(select(Library).order_by(col(Library.name))))


def experiments(session: Session, *, library_id: int, default: bool) -> list[Experiment]:
    """The library's experiments, oldest first (`default`: also those that name none)."""
    condition = col(Experiment.library_id) == library_id
    if default:
        condition = condition | col(Experiment.library_id).is_(None)
    stmt = select(Experiment).where(condition).order_by(col(Experiment.id))
    return list(session.exec(stmt))


def learnings(session: Session, *, library_id: int) -> list[LearningRow]:
    stmt = (
        select(LearningRow)
        .where(LearningRow.library_id == library_id)
        .order_by(col(LearningRow.id))
    )
    return list(session.exec(stmt))


def arms_of(session: Session, *, experiment_ids: Sequence[int]) -> list[Arm]:
    """The arms of many experiments, in one statement."""
    if not experiment_ids:
        return []
    stmt = select(Arm).where(col(Arm.experiment_id).in_(sorted(set(experiment_ids))))
    return list(session.exec(stmt.order_by(col(Arm.id))))


# (experiment id, arm id, metric) -> count
ArmTotals = dict[tuple[int, int, str], int]


def arm_totals(
    session: Session,
    *,
    epochs: Mapping[int, int],
    metrics: Sequence[str],
    segment: str | None = None,
) -> ArmTotals:
    """Each arm's counts of `metrics` in its experiment's current epoch (`epochs`:
    experiment id -> epoch), summed over hours and segments (or in one `segment`) by the
    database: one row per arm and metric comes back, however long the campaigns ran."""
    if not epochs or not metrics:
        return {}
    stmt = (
        sa_select(
            col(StatBucket.experiment_id),
            col(StatBucket.epoch),
            col(StatBucket.arm_id),
            col(StatBucket.metric),
            func.sum(col(StatBucket.count)),
        )
        .where(
            col(StatBucket.experiment_id).in_(sorted(epochs)),
            col(StatBucket.metric).in_(sorted(set(metrics))),
        )
        .group_by(
            col(StatBucket.experiment_id),
            col(StatBucket.epoch),
            col(StatBucket.arm_id),
            col(StatBucket.metric),
        )
    )
    if segment is not None:
        stmt = stmt.where(col(StatBucket.segment) == segment)
    return {
        (int(experiment_id), int(arm_id), str(metric)): int(total or 0)
        for experiment_id, epoch, arm_id, metric, total in session.execute(stmt)
        if epochs.get(int(experiment_id)) == int(epoch)
    }
