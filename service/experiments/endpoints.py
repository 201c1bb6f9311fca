"""Managing experiments and arms: scope review (admin allows it too) for reading, creating,
briefs and rules, arms and their status; admin for status moves, the control and
settings that change what is measured."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from service.core.deps import AdminKey, ReviewKey, SessionDep
from service.core.fields import IdPath
from service.experiments import repository as repo
from service.experiments import service as domain
from service.experiments.schemas import (
    ArmEditIn,
    ArmIn,
    ArmOut,
    ArmStatusChangeIn,
    ExperimentChangeOut,
    ExperimentCreate,
    ExperimentList,
    ExperimentOut,
    ExperimentSettings,
    StatusChangeOut,
)
from service.reporting import report as reporting
from service.reporting.schemas import HistoryOut, ReportOut
from variants.lifecycle import ArmStatus

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])


@router.post("", status_code=201, response_model=ExperimentOut)
def create_experiment(
    body: ExperimentCreate, session: SessionDep, caller: ReviewKey
) -> ExperimentOut:
    experiment = domain.create_experiment(session, body, actor=caller.name)
    return domain.experiment_out(session, experiment)


@router.get("", response_model=ExperimentList)
def list_experiments(
    session: SessionDep,
    _caller: ReviewKey,
    status: str | None = Query(None, pattern="^(draft|running|paused|archived)$"),
) -> ExperimentList:
    rows = repo.list_all(session, status=status)
    return ExperimentList(experiments=[domain.experiment_out(session, e) for e in rows])


@router.get("/{key}", response_model=ExperimentOut)
def read_experiment(key: str, session: SessionDep, _caller: ReviewKey) -> ExperimentOut:
    return domain.experiment_out(session, domain.get_experiment(session, key))


@router.patch("/{key}", response_model=ExperimentOut)
def patch_experiment(
    key: str, body: ExperimentSettings, session: SessionDep, caller: ReviewKey
) -> ExperimentOut:
    experiment = domain.update_settings(
        session, key, body, actor=caller.name, may_change_measurement=caller.allows("admin")
    )
    return domain.experiment_out(session, experiment)


@router.post("/{key}/pause", response_model=ExperimentOut)
def pause(key: str, session: SessionDep, admin: AdminKey) -> ExperimentOut:
    experiment = domain.move_status(session, key, "pause", actor=admin.name)
    return domain.experiment_out(session, experiment)


@router.post("/{key}/resume", response_model=ExperimentOut)
def resume(key: str, session: SessionDep, admin: AdminKey) -> ExperimentOut:
    experiment = domain.move_status(session, key, "resume", actor=admin.name)
    return domain.experiment_out(session, experiment)


@router.post("/{key}/archive", response_model=ExperimentOut)
def archive(key: str, session: SessionDep, admin: AdminKey) -> ExperimentOut:
    experiment = domain.move_status(session, key, "archive", actor=admin.name)
    return domain.experiment_out(session, experiment)


@router.post("/{key}/arms", status_code=201, response_model=ArmOut)
def add_arm(key: str, body: ArmIn, session: SessionDep, caller: ReviewKey) -> ArmOut:
    arm = domain.add_arm(session, key, body, actor=caller.name)
    return domain.arm_out(arm, domain.get_experiment(session, key))


@router.post("/{key}/arms/{arm_id}/edit", status_code=201, response_model=ArmOut)
def edit_arm(
    key: str, arm_id: IdPath, body: ArmEditIn, session: SessionDep, caller: ReviewKey
) -> ArmOut:
    """Content never changes in place: the edit is a new arm whose parent_id is this one."""
    arm = domain.edit_arm(session, key, arm_id, body, actor=caller.name)
    return domain.arm_out(arm, domain.get_experiment(session, key))


@router.post("/{key}/arms/{arm_id}/control", response_model=ArmOut)
def mark_control(key: str, arm_id: IdPath, session: SessionDep, _admin: AdminKey) -> ArmOut:
    return domain.arm_out(domain.mark_control(session, key, arm_id))


def _status_route(target: ArmStatus, verb: str) -> None:
    def change(
        key: str, arm_id: IdPath, body: ArmStatusChangeIn, session: SessionDep, caller: ReviewKey
    ) -> ArmOut:
        arm = domain.change_arm_status(
            session, key, arm_id, target, reason=body.reason, actor=caller.name
        )
        return domain.arm_out(arm)

    change.__name__ = f"{verb}_arm"
    router.add_api_route(
        f"/{{key}}/arms/{{arm_id}}/{verb}",
        change,
        methods=["POST"],
        response_model=ArmOut,
        summary=f"{verb.capitalize()} an arm, with a reason",
    )


_status_route(ArmStatus.RETIRED, "retire")
_status_route(ArmStatus.SUSPENDED, "suspend")
_status_route(ArmStatus.LIVE, "restore")


@router.get("/{key}/arms/{arm_id}/history", response_model=list[StatusChangeOut])
def arm_history(
    key: str, arm_id: IdPath, session: SessionDep, _caller: ReviewKey
) -> list[StatusChangeOut]:
    experiment = domain.get_experiment(session, key)
    arm = domain.get_arm(session, experiment, arm_id)
    assert arm.id is not None
    return [
        StatusChangeOut(
            from_status=c.from_status,
            to_status=c.to_status,
            actor=c.actor,
            reason=c.reason,
            created_at=c.created_at,
        )
        for c in repo.status_history(session, arm_id=arm.id)
    ]


@router.get("/{key}/changes", response_model=list[ExperimentChangeOut])
def experiment_changes(
    key: str, session: SessionDep, _caller: ReviewKey
) -> list[ExperimentChangeOut]:
    """Who created the experiment and changed its settings or status, with what, oldest
    first (arms have their own history)."""
    return [
        ExperimentChangeOut(
            action=c.action, actor=c.actor, changes=c.changes or {}, created_at=c.created_at
        )
        for c in domain.change_history(session, key)
    ]


@router.get("/{key}/report", response_model=ReportOut)
def report(key: str, session: SessionDep, _caller: ReviewKey) -> dict[str, Any]:
    """Per arm and segment figures from the latest snapshot; lift of the leader over the
    control; the off-policy evaluation of the policy against an even split; with a
    holdout, the served policy's lift over it."""
    return reporting.report(session, key)


@router.get("/{key}/history", response_model=HistoryOut)
def history(
    key: str,
    session: SessionDep,
    _caller: ReviewKey,
    limit: int = Query(500, ge=1, le=5000),
) -> dict[str, Any]:
    """Allocation and rates per snapshot version, oldest first, for charts over time."""
    return reporting.history(session, key, limit=limit)
