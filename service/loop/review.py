"""Human review of the loop's proposals, and the read side of runs and learnings.

Approving a `new_arm` proposal puts its arm live (with the reviewer's edit, re-validated
against the content rules and the other arms, if there is one) under the live-arm cap; the
allocation then gives it warm-up traffic. Approving `retire_arm` retires the arm. A
rejection's reason stays on the arm's status history, which the next run's prompt reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from service.core.errors import Conflict, InvalidInput, NotFound
from service.core.sessions import now as now_of
from service.experiments import repository as experiments_repo
from service.experiments.arm_status import set_arm_status
from service.experiments.service import get_experiment
from service.libraries import service as library_domain
from service.loop import repository as loop_repo
from service.loop.gather import content_rules
from service.loop.schemas import (
    ApproveIn,
    EvidenceOut,
    LearningOut,
    LoopRunOut,
    ProposalOut,
    RejectIn,
    VerdictOut,
)
from service.models import Arm, Experiment, Library, LoopRun, Proposal
from service.policy.refresher import republish
from variants.learnings import Learning, render_markdown
from variants.library import applicable, freshness
from variants.lifecycle import ArmStatus
from variants.loop import check_variant
from variants.rules import structural_tags

MAX_RUNS = 200


def _proposal(session: Session, proposal_id: int) -> tuple[Proposal, Experiment]:
    proposal = loop_repo.get_proposal(session, proposal_id=proposal_id, for_update=True)
    if proposal is None:
        raise NotFound(f"unknown proposal {proposal_id}", field="proposal_id")
    if proposal.status != "pending":
        raise Conflict(f"proposal {proposal_id} is already {proposal.status}", field="proposal_id")
    experiment = experiments_repo.get(session, experiment_id=proposal.experiment_id)
    assert experiment is not None
    return proposal, experiment


def _arm(session: Session, experiment: Experiment, proposal: Proposal) -> Arm:
    assert experiment.id is not None
    arm = None
    if proposal.arm_id is not None:
        arm = experiments_repo.get_arm(session, experiment_id=experiment.id, arm_id=proposal.arm_id)
    if arm is None:
        raise Conflict(f"the arm of proposal {proposal.id} no longer exists", field="arm_id")
    return arm


def approve(session: Session, proposal_id: int, body: ApproveIn, *, actor: str) -> Proposal:
    proposal, experiment = _proposal(session, proposal_id)
    arm = _arm(session, experiment, proposal)
    if proposal.kind == "retire_arm":
        if body.content is not None or body.tags is not None:
            raise InvalidInput(
                "only new_arm proposals take edited content or tags", field="content"
            )
        if arm.status not in (ArmStatus.LIVE, ArmStatus.SUSPENDED):
            raise Conflict(f"arm {arm.id} is already {arm.status}", field="arm_id")
        set_arm_status(
            session,
            arm,
            ArmStatus.RETIRED,
            reason=f"retirement approved (proposal {proposal.id}): {proposal.rationale}",
            actor=actor,
            evidence={"proposal_id": proposal.id, "loop_run_id": proposal.loop_run_id},
        )
    else:
        _approve_new_arm(session, experiment, proposal, arm, body, actor=actor)
    _decide(session, proposal, "approved", reason=body.note, actor=actor)
    assert experiment.id is not None
    republish(session, experiment_id=experiment.id)
    return proposal


def _approve_new_arm(
    session: Session,
    experiment: Experiment,
    proposal: Proposal,
    arm: Arm,
    body: ApproveIn,
    *,
    actor: str,
) -> None:
    assert experiment.id is not None
    if arm.status != ArmStatus.PROPOSED:
        raise Conflict(f"arm {arm.id} is {arm.status}, not proposed", field="arm_id")
    edited = body.content if body.content is not None and body.content != arm.content else None
    content = edited if edited is not None else arm.content
    others = [
        (f"arm {other.id} ({other.status})", other.content)
        for other in experiments_repo.arms(session, experiment_id=experiment.id)
        if other.id != arm.id
    ]
    verdict = check_variant(content, rules=content_rules(experiment.content_rules), existing=others)
    if not verdict.ok:
        raise InvalidInput(
            f"the content breaks the experiment's rules: {verdict.reason()}",
            details={
                "field": "content",
                "rules": [violation.code for violation in verdict.blocks] or ["near_duplicate"],
                "violations": [violation.model_dump() for violation in verdict.blocks],
                "duplicate_of": verdict.duplicate_of,
            },
        )
    live = len(
        experiments_repo.arms(session, experiment_id=experiment.id, statuses=[ArmStatus.LIVE])
    )
    if live >= experiment.max_live_arms:
        raise Conflict(
            f"experiment already has max_live_arms={experiment.max_live_arms} live arms; "
            "retire one before approving",
            field="max_live_arms",
        )
    if edited is not None:
        # The arm has never been served, so it carries no evidence: the edit may replace its
        # text before it goes live. The proposal keeps the original beside the edit.
        proposal.edited_content = edited
        arm.content = edited
    tags = body.tags if body.tags is not None else list(arm.tags)
    arm.tags = list(dict.fromkeys([*tags, *sorted(structural_tags(content))]))[:20]
    proposal.tags = list(arm.tags)
    reason = f"approved proposal {proposal.id}" + (" with an edit" if edited else "")
    set_arm_status(session, arm, ArmStatus.LIVE, reason=reason, actor=actor)


def reject(session: Session, proposal_id: int, body: RejectIn, *, actor: str) -> Proposal:
    proposal, experiment = _proposal(session, proposal_id)
    if proposal.kind == "new_arm":
        arm = _arm(session, experiment, proposal)
        if arm.status == ArmStatus.PROPOSED:
            # The reason stays on the arm's history: the next prompt lists it with the text.
            set_arm_status(session, arm, ArmStatus.REJECTED, reason=body.reason, actor=actor)
    _decide(session, proposal, "rejected", reason=body.reason, actor=actor)
    return proposal


def _decide(
    session: Session, proposal: Proposal, status: str, *, reason: str | None, actor: str
) -> None:
    proposal.status = status
    proposal.reason = reason
    proposal.decided_by = actor
    proposal.decided_at = now_of(session)
    session.add(proposal)
    session.flush()


def list_proposals(
    session: Session, *, status: str | None, experiment_key: str | None, limit: int
) -> list[ProposalOut]:
    experiment_id = None
    if experiment_key is not None:
        experiment_id = get_experiment(session, experiment_key).id
    rows = loop_repo.proposals(session, status=status, experiment_id=experiment_id, limit=limit)
    keys: dict[int, str] = {}
    for row in rows:
        if row.experiment_id not in keys:
            found = experiments_repo.get(session, experiment_id=row.experiment_id)
            keys[row.experiment_id] = found.key if found else ""
    return [proposal_out(row, keys[row.experiment_id]) for row in rows]


def proposal_out(row: Proposal, experiment_key: str) -> ProposalOut:
    assert row.id is not None
    return ProposalOut(
        id=row.id,
        experiment=experiment_key,
        loop_run_id=row.loop_run_id,
        kind=row.kind,
        content=row.content,
        edited_content=row.edited_content,
        tags=list(row.tags or []),
        rationale=row.rationale,
        tests_learning=row.tests_learning,
        arm_id=row.arm_id,
        warnings=list(row.warnings or []),
        status=row.status,
        reason=row.reason,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        created_at=row.created_at,
    )


def run_out(run: LoopRun, experiment_key: str) -> LoopRunOut:
    assert run.id is not None
    return LoopRunOut(
        id=run.id,
        experiment=experiment_key,
        status=run.status,
        trigger=run.trigger,
        actor=run.actor,
        started_at=run.started_at,
        finished_at=run.finished_at,
        model=run.model,
        prompt_digest=run.prompt_digest,
        input_digest=run.input_digest,
        requested_proposals=run.requested_proposals,
        summary=run.summary,
        output=run.output,
        applied=list(run.applied or []),
        dropped=list(run.dropped or []),
        prompt_tokens=run.prompt_tokens,
        completion_tokens=run.completion_tokens,
        latency_ms=run.latency_ms,
        error=run.error,
        error_kind=run.error_kind,
    )


def list_runs(session: Session, key: str, *, limit: int) -> list[LoopRunOut]:
    experiment = get_experiment(session, key)
    assert experiment.id is not None
    rows = loop_repo.runs(session, experiment_id=experiment.id, limit=min(limit, MAX_RUNS))
    return [run_out(run, experiment.key) for run in rows]


def _view(session: Session, key: str) -> tuple[Experiment, Library, list[Learning]]:
    """The experiment's view of its library: the learnings of its channel."""
    experiment = get_experiment(session, key)
    library = library_domain.library_of(session, experiment)
    view = applicable(library_domain.learnings(session, library), channel=experiment.channel)
    return experiment, library, view


def list_learnings(session: Session, key: str) -> tuple[str, list[LearningOut]]:
    """The library's name and the experiment's view of it."""
    _experiment, library, view = _view(session, key)
    return library.name, learnings_out(
        view, now=now_of(session), half_life_days=library.half_life_days
    )


def learnings_out(
    learnings: Sequence[Learning], *, now: datetime, half_life_days: float
) -> list[LearningOut]:
    return [
        LearningOut(
            id=item.id,
            claim=item.claim,
            evidence=[EvidenceOut(**evidence.model_dump()) for evidence in item.evidence],
            support=item.support,
            status=item.status.value,
            status_reason=item.status_reason,
            superseded_by=item.superseded_by,
            created_at=item.created_at,
            last_confirmed_at=item.last_confirmed_at,
            holds=[VerdictOut(**verdict.model_dump()) for verdict in item.holds],
            failed=[VerdictOut(**verdict.model_dump()) for verdict in item.failed],
            channel=item.channel,
            tags=list(item.tags),
            freshness=round(freshness(item, now=now, half_life_days=half_life_days), 4),
        )
        for item in learnings
    ]


def learnings_markdown(session: Session, key: str) -> str:
    experiment, _library, view = _view(session, key)
    return render_markdown(experiment.key, view)


def experiment_key(session: Session, experiment_id: int) -> str:
    experiment = experiments_repo.get(session, experiment_id=experiment_id)
    return experiment.key if experiment is not None else ""
