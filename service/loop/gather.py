"""Gather a loop run's input from the database: the brief, the rules, every arm with its
figures and retirement eligibility, the learnings and what reviewers rejected and why."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session

from bandits.delay import DelayCDF
from bandits.posterior import beta_posterior, pooled_prior
from service.core.vocabulary import EXPOSURE, OVERALL, ArmStatus, success_metric
from service.experiments import repository as experiments_repo
from service.libraries import service as library_domain
from service.loop import repository as loop_repo
from service.loop.hold import held_arms
from service.measuring import stats_repository as stats_repo
from service.models import Arm, Experiment, LearningRow, PolicySnapshot
from service.policy import repository as snapshots_repo
from service.policy.cohorts import build_cohorts
from service.policy.inputs import StatRow
from service.policy.snapshot import Snapshot
from service.reporting.fatigue import fatigued_arms
from variants.inputs import (
    ArmView,
    Brief,
    FatiguedArm,
    LibraryArm,
    LoopInput,
    RejectedVariant,
    SegmentCount,
)
from variants.learnings import Learning
from variants.rules import ContentRules

PRIOR_STRENGTH = 2.0
MAX_STATUS_REASON = 300


def input_digest(loop_input: LoopInput) -> str:
    return hashlib.sha256(loop_input.model_dump_json().encode()).hexdigest()


def gather(
    session: Session,
    experiment: Experiment,
    *,
    now: datetime,
    learnings_cap: int,
    max_new_variants: int,
    use_learnings: bool = True,
) -> LoopInput:
    assert experiment.id is not None
    arms = experiments_repo.arms(session, experiment_id=experiment.id)
    arm_ids = [arm.id for arm in arms if arm.id is not None]
    metric = success_metric(experiment.primary_metric, experiment.conversion_name)
    rows = stats_repo.rows_for(
        session, experiment_id=experiment.id, epoch=experiment.epoch, metrics=[EXPOSURE, metric]
    )
    # Raw counts over every segment and hour: the gates use raw counts, as the policy does.
    index = {arm_id: i for i, arm_id in enumerate(arm_ids)}
    exposures = np.zeros(len(arm_ids))
    successes = np.zeros(len(arm_ids))
    by_segment: dict[int, dict[str, list[int]]] = {}
    for row in rows:
        i = index.get(row.arm_id)
        if i is not None:
            (exposures if row.metric == EXPOSURE else successes)[i] += row.count
            if row.segment != OVERALL:
                counts = by_segment.setdefault(row.arm_id, {}).setdefault(row.segment, [0, 0])
                counts[0 if row.metric == EXPOSURE else 1] += row.count
    successes = np.minimum(successes, exposures)

    snapshot = _snapshot(snapshots_repo.latest(session, experiment_id=experiment.id))
    figures = _snapshot_figures(snapshot)
    # As the report: where all traffic's delay fit was contradicted, every arm is too early.
    unknown = snapshot is not None and OVERALL in snapshot.contradicted
    fallback = _posterior_figures(
        successes, exposures, _maturities(rows, arm_ids, snapshot.delay if snapshot else None, now)
    )
    retirable = _retirable(session, experiment.id, snapshot, now=now)
    reasons = loop_repo.latest_status_reasons(
        session,
        arm_ids=[
            a.id
            for a in arms
            if a.id is not None and a.status not in (ArmStatus.LIVE, ArmStatus.PROPOSED)
        ],
    )

    views = [
        _arm_view(
            arm,
            exposures=int(exposures[i]),
            successes=int(successes[i]),
            figures=figures.get(arm_ids[i], fallback[i]),
            eligible=arm_ids[i] in retirable,
            reason=reasons.get(arm_ids[i]),
            maturity_unknown=unknown,
            segments={
                name: SegmentCount(exposures=n, successes=min(s, n))
                for name, (n, s) in by_segment.get(arm_ids[i], {}).items()
            },
        )
        for i, arm in enumerate(arms)
    ]
    # The experiment's learnings are its view of its library: the library's claims (faded
    # ones pruned) and the arms of its other campaigns, which a learning may cite.
    library = library_domain.library_of(session, experiment)
    learnings: list[Learning] = []
    library_arms: list[LibraryArm] = []
    if use_learnings:
        learnings, _faded = library_domain.faded(session, library, now=now)
        library_arms = library_domain.library_arms(
            session,
            library,
            exclude_experiment_id=experiment.id,
            min_exposures=max(1, experiment.min_exposures),
            min_successes=experiment.min_successes,
            channel=experiment.channel,
        )
    return LoopInput(
        experiment_key=experiment.key,
        brief=_brief(experiment.brief),
        rules=content_rules(experiment.content_rules),
        arms=views,
        learnings=learnings,
        max_live_arms=experiment.max_live_arms,
        auto_approve=experiment.auto_approve,
        auto_retire=experiment.auto_retire,
        min_exposures=max(1, experiment.min_exposures),
        min_successes=experiment.min_successes,
        learnings_cap=min(learnings_cap, library.cap),
        max_new_variants=max_new_variants,
        rejected=replaced_wordings(session, experiment_id=experiment.id),
        library=library.name,
        channel=experiment.channel,
        library_evidence=library_arms,
        fatigued=[
            FatiguedArm(arm_id=item["arm_id"], evidence=item["evidence"])
            for item in fatigued_arms(session, experiment, now=now)
        ],
    )


def replaced_wordings(session: Session, *, experiment_id: int) -> list[RejectedVariant]:
    """The loop's own wordings a reviewer replaced by an edit on approval. The arm now holds
    the edit, so without this the original is listed nowhere and comes back in the next
    run; listed here it is in the prompt and in every duplicate check, for good."""
    return [
        RejectedVariant(
            content=proposal.content,
            reason=f"replaced by a reviewer's edit: {proposal.edited_content!r}",
        )
        for proposal in loop_repo.edited_proposals(session, experiment_id=experiment_id)
        if proposal.edited_content is not None
    ]


def content_rules(raw: Mapping[str, Any] | None) -> ContentRules:
    known = {k: v for k, v in (raw or {}).items() if k in ContentRules.model_fields}
    return ContentRules(**known)


def _brief(raw: Mapping[str, Any] | None) -> Brief:
    known = {k: str(v) for k, v in (raw or {}).items() if k in Brief.model_fields and v}
    return Brief(**known)


def learning_of(row: LearningRow) -> Learning:
    return library_domain.learning_of(row)


# posterior mean, 95% low, 95% high, maturity, the low end of the maturity range
Figures = tuple[float, float, float, float, float]


def _snapshot(row: PolicySnapshot | None) -> Snapshot | None:
    """The newest snapshot, or None when there is none (or it cannot be read)."""
    if row is None:
        return None
    try:
        return Snapshot.from_json(row.payload)
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _snapshot_figures(snapshot: Snapshot | None) -> dict[int, Figures]:
    """The report's figures for the arms the snapshot serves (overall segment): the
    delay-corrected estimate, its interval and the maturity (1.0 for snapshots from before
    the delay model kept it)."""
    overall = snapshot.overall if snapshot is not None else None
    if snapshot is None or overall is None:
        return {}
    maturity = overall.maturity or (1.0,) * len(snapshot.arm_ids)
    maturity_low = overall.maturity_low or maturity
    try:
        return {
            arm_id: (
                overall.posterior_mean[i],
                overall.ci_low[i],
                overall.ci_high[i],
                maturity[i],
                maturity_low[i],
            )
            for i, arm_id in enumerate(snapshot.arm_ids)
        }
    except IndexError:
        return {}


def _maturities(
    rows: Sequence[StatRow],
    arm_ids: Sequence[int],
    delay: Mapping[str, Any] | None,
    now: datetime,
) -> np.ndarray:
    """Each arm's maturity now, by the snapshot's delay curve (1.0 without one)."""
    block = delay or {}
    try:
        cdf = DelayCDF(
            float(block["window_hours"]),
            np.asarray(block["edges_hours"], dtype=np.float64),
            np.asarray(block["values"], dtype=np.float64),
            float(block.get("observations", 0.0)),
            float(block.get("prior_weight", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        return np.ones(len(arm_ids))
    metrics = [EXPOSURE, *{r.metric for r in rows if r.metric != EXPOSURE}]
    cohorts = build_cohorts(rows, arm_ids=arm_ids, metrics=metrics, segmented=False, now=now)
    exposures = cohorts.counts[EXPOSURE][0]  # unsegmented: one slot holds all traffic
    arrived = (exposures * cohorts.discount(cdf)[0]).sum(axis=1)
    totals = exposures.sum(axis=1)
    return np.where(totals > 0, arrived / np.maximum(totals, 1.0), 1.0)


def _posterior_figures(
    successes: np.ndarray, exposures: np.ndarray, maturity: np.ndarray
) -> list[Figures]:
    """Figures for arms the snapshot does not serve (retired, rejected, proposed): the same
    weak prior centred on the pooled rate that the policy uses, and the maturity of their
    evidence by the snapshot's delay curve (a just-retired arm's last cohorts may be young)."""
    if len(exposures) == 0:
        return []
    alpha, beta = pooled_prior(successes, exposures, PRIOR_STRENGTH)
    posterior = beta_posterior(successes, exposures, alpha, beta)
    low, high = posterior.credible_interval(0.95)
    return [
        (float(m), float(lo), float(hi), float(f), float(f))
        for m, lo, hi, f in zip(posterior.mean, low, high, maturity, strict=True)
    ]


def _retirable(
    session: Session, experiment_id: int, snapshot: Snapshot | None, *, now: datetime
) -> set[int]:
    """Arms the snapshot has called eligible for at least a day, across two loop runs."""
    if snapshot is None or not snapshot.retirement:
        return set()
    return held_arms(
        snapshot.retirement,
        now=now,
        runs_since=lambda since: loop_repo.completed_runs_since(
            session, experiment_id=experiment_id, since=since
        ),
    )


def _arm_view(
    arm: Arm,
    *,
    exposures: int,
    successes: int,
    figures: Figures,
    eligible: bool,
    reason: str | None,
    segments: Mapping[str, SegmentCount],
    maturity_unknown: bool = False,
) -> ArmView:
    assert arm.id is not None
    rate, low, high, maturity, maturity_low = (min(1.0, max(0.0, value)) for value in figures)
    low, high = min(low, rate), max(high, rate)
    status = ArmStatus(arm.status)
    return ArmView(
        id=arm.id,
        content=arm.content,
        tags=list(arm.tags or []),
        status=status,
        exposures=exposures,
        successes=min(successes, exposures),
        rate=rate,
        ci_low=low,
        ci_high=high,
        eligible_for_retirement=eligible and status in (ArmStatus.LIVE, ArmStatus.SUSPENDED),
        is_control=arm.is_control,
        maturity=maturity,
        maturity_low=maturity_low,
        maturity_unknown=maturity_unknown,
        segments=dict(segments),
        status_reason=(reason or "")[:MAX_STATUS_REASON] or None
        if status not in (ArmStatus.LIVE, ArmStatus.PROPOSED)
        else None,
    )


def live_count(arms: Sequence[Arm]) -> int:
    return sum(1 for arm in arms if arm.status == ArmStatus.LIVE)
