"""Apply a validated loop plan inside one transaction: retirements, retire proposals, the
learnings that changed, new arms (live under auto-approval within the cap, else proposed
and waiting for review). The caller commits once, so a failure leaves nothing behind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from service.experiments import repository as experiments_repo
from service.experiments.arm_status import set_arm_status
from service.experiments.schemas import ArmIn
from service.experiments.service import _new_arm
from service.libraries import service as library_domain
from service.loop import repository as loop_repo
from service.models import Arm, Experiment, Proposal
from service.policy.refresher import republish
from variants.lifecycle import ArmStatus
from variants.loop import LoopPlan, NewVariant, PlanItem

MAX_TAG_LENGTH = 40
SERVED = (ArmStatus.LIVE, ArmStatus.SUSPENDED)


@dataclass
class Applied:
    """What the transaction did beyond the plan (ids, and items the database overruled)."""

    retired_arm_ids: list[int] = field(default_factory=list)
    live_arm_ids: list[int] = field(default_factory=list)
    proposal_ids: list[int] = field(default_factory=list)
    learning_ids: list[str] = field(default_factory=list)
    skipped: list[PlanItem] = field(default_factory=list)

    @property
    def arms_changed(self) -> bool:
        return bool(self.retired_arm_ids or self.live_arm_ids)

    def ids(self) -> dict[str, Any]:
        return {
            "retired_arm_ids": self.retired_arm_ids,
            "live_arm_ids": self.live_arm_ids,
            "proposal_ids": self.proposal_ids,
            "changed_learnings": self.learning_ids,
        }


def apply_plan(
    session: Session,
    experiment: Experiment,
    plan: LoopPlan,
    *,
    run_id: int,
    persist_learnings: bool = True,
) -> Applied:
    assert experiment.id is not None
    actor = f"loop run {run_id}"
    done = Applied()
    # Read again inside the transaction: a reviewer may have acted since the gather.
    arms = {arm.id: arm for arm in experiments_repo.arms(session, experiment_id=experiment.id)}

    for action in plan.retire_now:
        arm = arms.get(action.arm_id)
        if arm is None or arm.status not in SERVED:
            done.skipped.append(_skip(action.arm_id, arm))
            continue
        set_arm_status(
            session,
            arm,
            ArmStatus.RETIRED,
            reason=f"auto-retired: {action.reason}",
            actor=actor,
            evidence={"loop_run_id": run_id, "source": action.source},
        )
        done.retired_arm_ids.append(action.arm_id)

    pending = loop_repo.pending_retirement_arm_ids(session, experiment_id=experiment.id)
    for action in plan.retire_proposals:
        arm = arms.get(action.arm_id)
        if arm is None or arm.status not in SERVED:
            done.skipped.append(_skip(action.arm_id, arm))
            continue
        if action.arm_id in pending:
            done.skipped.append(
                PlanItem(
                    kind="retire_arm",
                    subject=f"arm {action.arm_id}",
                    reason="a retire_arm proposal for it is already pending",
                )
            )
            continue
        proposal = loop_repo.add_proposal(
            session,
            proposal=Proposal(
                experiment_id=experiment.id,
                loop_run_id=run_id,
                kind="retire_arm",
                content=arm.content,
                arm_id=action.arm_id,
                rationale=action.reason,
            ),
        )
        assert proposal.id is not None
        done.proposal_ids.append(proposal.id)

    if persist_learnings:
        done.learning_ids = library_domain.save(
            session,
            library_domain.library_of(session, experiment),
            experiment_id=experiment.id,
            learnings=plan.learnings,
        )

    live = sum(1 for arm in arms.values() if arm.status == ArmStatus.LIVE) - len(
        done.retired_arm_ids
    )
    for variant in plan.go_live:
        if live < experiment.max_live_arms:
            arm = _create_arm(session, experiment, variant, run_id, ArmStatus.LIVE, actor)
            assert arm.id is not None
            live += 1
            done.live_arm_ids.append(arm.id)
            proposal = _proposal(session, experiment, variant, run_id, arm)
            proposal.status = "approved"
            proposal.decided_by = "auto-approve"
            proposal.decided_at = proposal.created_at
            session.add(proposal)
            continue
        # A reviewer filled the cap since the plan was made: keep it for review instead.
        note = f"live-arm cap of {experiment.max_live_arms} reached: kept as a proposal"
        _propose(session, experiment, variant.model_copy(update={"note": note}), run_id, done)
    for variant in plan.new_arm_proposals:
        _propose(session, experiment, variant, run_id, done)

    if done.arms_changed:
        republish(session, experiment_id=experiment.id)
    return done


def _skip(arm_id: int, arm: Arm | None) -> PlanItem:
    state = "no longer exists" if arm is None else f"is {arm.status} now"
    return PlanItem(kind="retire_arm", subject=f"arm {arm_id}", reason=f"the arm {state}")


def _create_arm(
    session: Session,
    experiment: Experiment,
    variant: NewVariant,
    run_id: int,
    status: str,
    actor: str,
) -> Arm:
    tags = [tag[:MAX_TAG_LENGTH] for tag in variant.tags if tag][:20]
    reason = "auto-approved" if status == ArmStatus.LIVE else "proposed"
    return _new_arm(
        session,
        experiment,
        ArmIn(content=variant.content, tags=tags),
        actor=actor,
        reason=f"{reason} by loop run {run_id}",
        origin="llm",
        status=status,
        loop_run_id=run_id,
    )


def _proposal(
    session: Session, experiment: Experiment, variant: NewVariant, run_id: int, arm: Arm
) -> Proposal:
    assert experiment.id is not None
    return loop_repo.add_proposal(
        session,
        proposal=Proposal(
            experiment_id=experiment.id,
            loop_run_id=run_id,
            kind="new_arm",
            content=variant.content,
            tags=list(arm.tags),
            rationale=variant.rationale,
            tests_learning=variant.tests_learning,
            arm_id=arm.id,
            warnings=[warning.model_dump() for warning in variant.warnings],
        ),
    )


def _propose(
    session: Session, experiment: Experiment, variant: NewVariant, run_id: int, done: Applied
) -> None:
    """A pending proposal backed by an arm in status `proposed`: the next prompt lists it
    as waiting, and the duplicate check sees it."""
    arm = _create_arm(
        session, experiment, variant, run_id, ArmStatus.PROPOSED, f"loop run {run_id}"
    )
    proposal = _proposal(session, experiment, variant, run_id, arm)
    assert proposal.id is not None
    done.proposal_ids.append(proposal.id)
