"""Managing experiments and arms: the domain behind the admin API and the CLI.

Every change that affects serving writes a new policy snapshot in the same transaction,
so all replicas pick it up on their next load and this one right after the commit.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from service.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from service.core.sessions import now as now_of
from service.core.vocabulary import ExperimentStatus
from service.experiments import repository as repo
from service.experiments.arm_status import set_arm_status
from service.experiments.schemas import (
    ArmEditIn,
    ArmIn,
    ArmOut,
    ContentWarning,
    ExperimentCreate,
    ExperimentOut,
    ExperimentSettings,
)
from service.libraries import service as library_domain
from service.models import (
    Arm,
    ArmStatusChange,
    Experiment,
    ExperimentChange,
    ExperimentEpoch,
)
from service.policy.refresher import republish
from variants.lifecycle import ArmStatus, InvalidTransition, check_transition
from variants.rules import ContentReport, ContentRules, check_content

# Changing any of these changes what is measured, so it starts a new analysis epoch.
MEASURED_FIELDS = (
    "primary_metric",
    "conversion_name",
    "exposure_event",
    "attribution_window_hours",
    "segment_attribute",
    "half_life_hours",
)
STATUS_MOVES = {
    "pause": ({ExperimentStatus.RUNNING}, ExperimentStatus.PAUSED),
    "resume": ({ExperimentStatus.PAUSED}, ExperimentStatus.RUNNING),
    "archive": (
        {ExperimentStatus.RUNNING, ExperimentStatus.PAUSED, ExperimentStatus.DRAFT},
        ExperimentStatus.ARCHIVED,
    ),
}


def get_experiment(session: Session, key: str) -> Experiment:
    experiment = repo.get_by_key(session, key=key)
    if experiment is None:
        raise NotFound(f"unknown experiment {key!r}", field="experiment")
    return experiment


def get_arm(session: Session, experiment: Experiment, arm_id: int) -> Arm:
    assert experiment.id is not None
    arm = repo.get_arm(session, experiment_id=experiment.id, arm_id=arm_id)
    if arm is None:
        raise NotFound(f"experiment {experiment.key!r} has no arm {arm_id}", field="arm_id")
    return arm


def experiment_out(session: Session, experiment: Experiment) -> ExperimentOut:
    assert experiment.id is not None
    arms = repo.arms(session, experiment_id=experiment.id)
    data = experiment.model_dump()
    data["library"] = library_domain.library_of(session, experiment).name
    return ExperimentOut(**data, arms=[arm_out(a, experiment) for a in arms])


def content_report(experiment: Experiment, content: str) -> ContentReport:
    """The experiment's content rules applied to one text: the same check the loop runs on
    its own variants (variants.rules), for arms people write."""
    raw = experiment.content_rules or {}
    rules = ContentRules(**{k: v for k, v in raw.items() if k in ContentRules.model_fields})
    return check_content(content, rules)


def check_human_content(experiment: Experiment, content: str, *, field: str) -> ContentReport:
    """Refuse a person's text that breaks a hard rule, naming the rule; warnings pass."""
    report = content_report(experiment, content)
    if report.blocks:
        raise InvalidInput(
            f"{field} breaks the experiment's content rules: {report.reasons()}",
            details={
                "field": field,
                "rules": [violation.code for violation in report.blocks],
                "violations": [violation.model_dump() for violation in report.blocks],
            },
        )
    return report


def arm_out(arm: Arm, experiment: Experiment | None = None) -> ArmOut:
    """The arm; with its experiment, the content-rule warnings its text carries."""
    assert arm.id is not None
    warnings = content_report(experiment, arm.content).warnings if experiment else []
    return ArmOut(
        warnings=[ContentWarning(**w.model_dump()) for w in warnings],
        id=arm.id,
        content=arm.content,
        payload=arm.payload,
        tags=list(arm.tags),
        origin=arm.origin,
        status=arm.status,
        control=arm.is_control,
        parent_id=arm.parent_id,
        created_at=arm.created_at,
    )


def _measured(experiment: Experiment) -> dict[str, Any]:
    return {name: getattr(experiment, name) for name in MEASURED_FIELDS}


def _settings_values(settings: ExperimentSettings) -> dict[str, Any]:
    values = settings.model_dump(exclude_unset=True, exclude={"key", "arms"})
    for nested in ("brief", "content_rules"):
        if values.get(nested) is None:
            values.pop(nested, None)
    if "guardrails" in values and values["guardrails"] is None:
        values.pop("guardrails")
    return values


def _check_conversion(experiment: Experiment) -> None:
    if experiment.conversion_name and experiment.primary_metric != "conversion":
        raise InvalidInput(
            "conversion_name only applies when primary_metric is 'conversion'",
            field="conversion_name",
        )


def _republish(session: Session, experiment: Experiment) -> None:
    assert experiment.id is not None
    republish(session, experiment_id=experiment.id)


def create_experiment(session: Session, data: ExperimentCreate, *, actor: str) -> Experiment:
    if repo.get_by_key(session, key=data.key) is not None:
        raise Conflict(f"an experiment with key {data.key!r} exists", field="key")
    if sum(arm.control for arm in data.arms) > 1:
        raise InvalidInput("at most one arm can be the control", field="arms")
    values = _settings_values(data)
    values["library_id"] = library_domain.resolve(session, values.pop("library", None)).id
    if "guardrails" not in values:
        values["guardrails"] = [
            {"metric": "unsubscribe", "tolerance": 0.25},
            {"metric": "complaint", "tolerance": 0.25},
        ]
    experiment = Experiment(key=data.key, **values)
    if len(data.arms) > experiment.max_live_arms:
        raise InvalidInput(
            f"{len(data.arms)} arms exceed max_live_arms={experiment.max_live_arms}",
            field="arms",
        )
    _check_conversion(experiment)
    for index, arm_in in enumerate(data.arms):
        check_human_content(experiment, arm_in.content, field=f"arms.{index}.content")
    repo.add(session, experiment=experiment)
    assert experiment.id is not None
    repo.add_epoch(
        session,
        epoch=ExperimentEpoch(experiment_id=experiment.id, epoch=1, measured=_measured(experiment)),
    )
    _record(session, experiment, "created", actor=actor, changes={})
    for arm_in in data.arms:
        _new_arm(session, experiment, arm_in, actor=actor, reason="created with the experiment")
    _republish(session, experiment)
    return experiment


def _record(
    session: Session, experiment: Experiment, action: str, *, actor: str, changes: dict[str, Any]
) -> None:
    assert experiment.id is not None
    repo.record_change(
        session,
        change=ExperimentChange(
            experiment_id=experiment.id, action=action, actor=actor, changes=changes
        ),
    )


def change_history(session: Session, key: str) -> list[ExperimentChange]:
    """Who created the experiment and changed its settings or status, oldest first."""
    experiment = get_experiment(session, key)
    assert experiment.id is not None
    return repo.changes(session, experiment_id=experiment.id)


def _new_arm(
    session: Session,
    experiment: Experiment,
    arm_in: ArmIn,
    *,
    actor: str,
    reason: str,
    origin: str = "human",
    parent_id: int | None = None,
    status: str = ArmStatus.LIVE,
    loop_run_id: int | None = None,
) -> Arm:
    assert experiment.id is not None
    arm = Arm(
        experiment_id=experiment.id,
        content=arm_in.content,
        payload=arm_in.payload,
        tags=list(arm_in.tags),
        origin=origin,
        parent_id=parent_id,
        is_control=arm_in.control,
        status=status,
        loop_run_id=loop_run_id,
    )
    repo.add_arm(session, arm=arm)
    assert arm.id is not None
    repo.record_status_change(
        session,
        change=ArmStatusChange(arm_id=arm.id, to_status=status, actor=actor, reason=reason),
    )
    return arm


def update_settings(
    session: Session,
    key: str,
    patch: ExperimentSettings,
    *,
    actor: str,
    may_change_measurement: bool = True,
) -> Experiment:
    """Apply a settings patch. A review key or session (``may_change_measurement=False``)
    may change the brief, rules, guardrails and loop, not what is measured."""
    experiment = get_experiment(session, key)
    before = _measured(experiment)
    values = _settings_values(patch)
    if not may_change_measurement:
        for name in MEASURED_FIELDS:
            if name in values and values[name] != before[name]:
                raise Forbidden(
                    f"{name} changes what is measured: only an admin key may change it",
                    field=name,
                )
    if "library" in values:
        name = values.pop("library")
        if library_domain.library_of(session, experiment).name != name:
            _record(session, experiment, "settings", actor=actor, changes={"library": name})
        values["library_id"] = library_domain.resolve(session, name).id
    changed = {name: value for name, value in values.items() if getattr(experiment, name) != value}
    if changed:
        _record(session, experiment, "settings", actor=actor, changes=changed)
    for name, value in values.items():
        setattr(experiment, name, value)
    _check_conversion(experiment)
    live = _live_count(session, experiment)
    if live > experiment.max_live_arms:
        raise InvalidInput(
            f"{live} arms are live; retire some before lowering max_live_arms",
            field="max_live_arms",
        )
    experiment.updated_at = now_of(session)
    if _measured(experiment) != before:
        experiment.epoch += 1
        assert experiment.id is not None
        repo.add_epoch(
            session,
            epoch=ExperimentEpoch(
                experiment_id=experiment.id, epoch=experiment.epoch, measured=_measured(experiment)
            ),
        )
    session.add(experiment)
    session.flush()
    _republish(session, experiment)
    return experiment


def move_status(session: Session, key: str, move: str, *, actor: str) -> Experiment:
    experiment = get_experiment(session, key)
    sources, target = STATUS_MOVES[move]
    if experiment.status not in sources:
        raise Conflict(f"cannot {move} an experiment that is {experiment.status}", field="status")
    _record(session, experiment, move, actor=actor, changes={"status": target})
    experiment.status = target
    experiment.updated_at = now_of(session)
    session.add(experiment)
    session.flush()
    _republish(session, experiment)
    return experiment


def _live_count(session: Session, experiment: Experiment) -> int:
    assert experiment.id is not None
    return len(repo.arms(session, experiment_id=experiment.id, statuses=[ArmStatus.LIVE]))


def add_arm(session: Session, key: str, arm_in: ArmIn, *, actor: str) -> Arm:
    experiment = get_experiment(session, key)
    if _live_count(session, experiment) >= experiment.max_live_arms:
        raise Conflict(
            f"experiment already has max_live_arms={experiment.max_live_arms} live arms",
            field="arms",
        )
    check_human_content(experiment, arm_in.content, field="content")
    arm = _new_arm(session, experiment, arm_in, actor=actor, reason="added")
    if arm_in.control:
        _make_control(session, experiment, arm)
    _republish(session, experiment)
    return arm


def _make_control(session: Session, experiment: Experiment, arm: Arm) -> None:
    assert experiment.id is not None
    for other in repo.arms(session, experiment_id=experiment.id):
        if other.is_control != (other.id == arm.id):
            other.is_control = other.id == arm.id
            session.add(other)
    session.flush()


def mark_control(session: Session, key: str, arm_id: int) -> Arm:
    experiment = get_experiment(session, key)
    arm = get_arm(session, experiment, arm_id)
    _make_control(session, experiment, arm)
    _republish(session, experiment)
    return arm


def change_arm_status(
    session: Session,
    key: str,
    arm_id: int,
    target: ArmStatus,
    *,
    reason: str,
    actor: str,
    evidence: dict[str, Any] | None = None,
) -> Arm:
    experiment = get_experiment(session, key)
    arm = get_arm(session, experiment, arm_id)
    try:
        check_transition(arm.status, target)
    except InvalidTransition as exc:
        raise Conflict(str(exc), field="status") from exc
    if target == ArmStatus.LIVE and _live_count(session, experiment) >= experiment.max_live_arms:
        raise Conflict(
            f"experiment already has max_live_arms={experiment.max_live_arms} live arms",
            field="status",
        )
    set_arm_status(session, arm, target, reason=reason, actor=actor, evidence=evidence)
    _republish(session, experiment)
    return arm


def edit_arm(session: Session, key: str, arm_id: int, edit: ArmEditIn, *, actor: str) -> Arm:
    """An arm's content never changes: an edit retires it and adds its successor."""
    experiment = get_experiment(session, key)
    old = get_arm(session, experiment, arm_id)
    if old.status not in (ArmStatus.LIVE, ArmStatus.SUSPENDED):
        raise Conflict(
            f"only live or suspended arms can be edited (arm is {old.status})", field="arm_id"
        )
    check_human_content(experiment, edit.content, field="content")
    set_arm_status(
        session, old, ArmStatus.RETIRED, reason=f"replaced by an edit: {edit.reason}", actor=actor
    )
    arm_in = ArmIn(
        content=edit.content,
        tags=edit.tags if edit.tags is not None else list(old.tags),
        payload=edit.payload if edit.payload is not None else old.payload,
        control=old.is_control,
    )
    new = _new_arm(session, experiment, arm_in, actor=actor, reason=edit.reason, parent_id=old.id)
    if old.is_control:
        old.is_control = False
        session.add(old)
    _republish(session, experiment)
    return new
