"""Experiments, epochs, arms and arm status history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, func, select

from service.core.vocabulary import ArmStatus
from service.models import Arm, ArmStatusChange, Experiment, ExperimentChange, ExperimentEpoch


def get_by_key(session: Session, *, key: str) -> Experiment | None:
    return session.exec(select(Experiment).where(Experiment.key == key)).first()


def get(session: Session, *, experiment_id: int) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def get_many(session: Session, *, experiment_ids: set[int]) -> dict[int, Experiment]:
    """The experiments that exist among ``experiment_ids``, by id."""
    found = {}
    for experiment_id in experiment_ids:
        experiment = session.get(Experiment, experiment_id)
        if experiment is not None:
            found[experiment_id] = experiment
    return found


def list_all(session: Session, *, status: str | None = None) -> list[Experiment]:
    stmt = select(Experiment).order_by(col(Experiment.id))
    if status:
        stmt = stmt.where(Experiment.status == status)
    return list(session.exec(stmt))


def add(session: Session, *, experiment: Experiment) -> Experiment:
    session.add(experiment)
    session.flush()
    return experiment


def add_epoch(session: Session, *, epoch: ExperimentEpoch) -> None:
    session.add(epoch)
    session.flush()


def epochs(session: Session, *, experiment_id: int) -> list[ExperimentEpoch]:
    stmt = (
        select(ExperimentEpoch)
        .where(ExperimentEpoch.experiment_id == experiment_id)
        .order_by(col(ExperimentEpoch.epoch))
    )
    return list(session.exec(stmt))


def arms(
    session: Session, *, experiment_id: int, statuses: Sequence[str] | None = None
) -> list[Arm]:
    stmt = select(Arm).where(Arm.experiment_id == experiment_id).order_by(col(Arm.id))
    if statuses:
        stmt = stmt.where(col(Arm.status).in_(statuses))
    return list(session.exec(stmt))


def arms_for(session: Session, *, experiment_ids: Sequence[int]) -> dict[int, list[Arm]]:
    found: dict[int, list[Arm]] = {eid: [] for eid in experiment_ids}
    if not experiment_ids:
        return found
    stmt = select(Arm).where(col(Arm.experiment_id).in_(experiment_ids)).order_by(col(Arm.id))
    for arm in session.exec(stmt):
        found[arm.experiment_id].append(arm)
    return found


def arm_states(
    session: Session, *, experiment_ids: Sequence[int]
) -> dict[int, list[tuple[int, str, bool]]]:
    """Each experiment's arms as (id, status, is_control), in id order: three columns, no ORM
    objects (an arm's JSON columns cost most of building one, and the refresher reads this for
    every running experiment on every pass)."""
    found: dict[int, list[tuple[int, str, bool]]] = {eid: [] for eid in experiment_ids}
    if not experiment_ids:
        return found
    stmt = (
        select(Arm.experiment_id, Arm.id, Arm.status, Arm.is_control)
        .where(col(Arm.experiment_id).in_(experiment_ids))
        .order_by(col(Arm.id))
    )
    for experiment_id, arm_id, status, is_control in session.exec(stmt):
        assert arm_id is not None
        found[experiment_id].append((arm_id, status, bool(is_control)))
    return found


def get_arm(session: Session, *, experiment_id: int, arm_id: int) -> Arm | None:
    arm = session.get(Arm, arm_id)
    if arm is None or arm.experiment_id != experiment_id:
        return None
    return arm


def add_arm(session: Session, *, arm: Arm) -> Arm:
    session.add(arm)
    session.flush()
    return arm


def record_status_change(session: Session, *, change: ArmStatusChange) -> None:
    session.add(change)
    session.flush()


def status_history(session: Session, *, arm_id: int) -> list[ArmStatusChange]:
    stmt = (
        select(ArmStatusChange)
        .where(ArmStatusChange.arm_id == arm_id)
        .order_by(col(ArmStatusChange.id))
    )
    return list(session.exec(stmt))


def last_restores(session: Session, *, arm_ids: Sequence[int]) -> dict[int, datetime]:
    """When each arm was last restored from suspension by a human."""
    if not arm_ids:
        return {}
    stmt = (
        select(ArmStatusChange.arm_id, func.max(ArmStatusChange.created_at))
        .where(
            col(ArmStatusChange.arm_id).in_(arm_ids),
            ArmStatusChange.from_status == ArmStatus.SUSPENDED,
            ArmStatusChange.to_status == ArmStatus.LIVE,
        )
        .group_by(col(ArmStatusChange.arm_id))
    )
    return {int(arm_id): at for arm_id, at in session.exec(stmt)}


def record_change(session: Session, *, change: ExperimentChange) -> None:
    session.add(change)
    session.flush()


def changes(session: Session, *, experiment_id: int) -> list[ExperimentChange]:
    stmt = (
        select(ExperimentChange)
        .where(ExperimentChange.experiment_id == experiment_id)
        .order_by(col(ExperimentChange.id))
    )
    return list(session.exec(stmt))
