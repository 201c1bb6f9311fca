"""Turn an experiment's statistics into a typed policy snapshot (no I/O here).

Per refresh: forget an arm's evidence before a detected change in its rate, decay old
cohorts (half-life), discount young cohorts by the delay distribution, check guardrails on
the overall traffic, allocate per segment (each named segment with a prior from the others),
and track retirement eligibility streaks. The snapshot holds what /choose needs (arms and
allocations) and the figures behind it, for the report and for charts over time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bandits import Allocation, PolicyConfig, allocate
from bandits.delay import DelayCDF
from bandits.delay_mixture import MixtureEvidence
from bandits.delay_model import (
    CorrectedEvidence,
    DelayModel,
    corrected_evidence,
    fit_delay_model,
)
from bandits.drift import decay_weights
from bandits.eligibility import Streak, eligible_now, update_streaks
from bandits.guardrails import check_guardrails, combine_guardrails
from bandits.pooling import segment_priors
from bandits.posterior import pooled_prior
from service.core.vocabulary import (
    EXPOSURE,
    OVERALL,
    SERVED_ARM_STATUSES,
    ArmStatus,
    ExperimentStatus,
)
from service.policy.cohorts import Cohorts, build_cohorts
from service.policy.drift import drift_weights
from service.policy.figures import (
    contradicted_curves,
    flat,
    once,
    refresh_hint,
    reported_interval,
    segment_evidence,
    segment_figures,
    too_early_mask,
)
from service.policy.inputs import ArmInfo, ExperimentInfo, StatRow, SuccessDelay
from service.policy.snapshot import (
    Breach,
    GuardrailFigures,
    GuardrailRates,
    RetirementVerdict,
    SegmentFigures,
    Snapshot,
    SnapshotArm,
    SnapshotExperiment,
)

MIN_GUARDRAIL_EVENTS = 5
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PolicyInputs:
    experiment: ExperimentInfo
    arms: Sequence[ArmInfo]
    stats: Sequence[StatRow]
    success_delays: Sequence[SuccessDelay] = ()
    previous: Snapshot | None = None


def fallback_arm(arms: Sequence[ArmInfo]) -> ArmInfo | None:
    """The control arm, else the first arm: what a send gets when nothing can be decided."""
    for arm in arms:
        if arm.control:
            return arm
    return arms[0] if arms else None


def _base_snapshot(inputs: PolicyInputs, served: Sequence[ArmInfo], now: datetime) -> Snapshot:
    experiment = inputs.experiment
    fallback = fallback_arm(inputs.arms)
    return Snapshot(
        computed_at=now,
        experiment=SnapshotExperiment(
            key=experiment.key,
            status=experiment.status,
            epoch=experiment.epoch,
            segment_attribute=experiment.segment_attribute,
            exposure_event=experiment.exposure_event,
            success_metric=experiment.success_metric,
            holdout_share=experiment.holdout_share,
        ),
        arms=tuple(SnapshotArm(a.id, a.content, a.payload, a.control) for a in inputs.arms),
        arm_ids=tuple(a.id for a in served),
        fallback_arm_id=fallback.id if fallback else None,
    )


def compute_snapshot(
    inputs: PolicyInputs,
    *,
    now: datetime,
    rng: np.random.Generator,
    delay_correction: bool = True,
) -> Snapshot:
    """The snapshot of ``inputs`` at ``now``.

    ``delay_correction=False`` is an ablation for the simulator's benchmark only: every
    cohort counts as fully exposed however young (the naive posterior), guardrails included.
    """
    experiment = inputs.experiment
    served = [arm for arm in inputs.arms if arm.status in SERVED_ARM_STATUSES]
    base = _base_snapshot(inputs, served, now)
    live = np.array([a.status == ArmStatus.LIVE for a in served], dtype=bool)
    if experiment.status != ExperimentStatus.RUNNING or not live.any():
        return base

    arm_ids = [a.id for a in served]
    success = experiment.success_metric
    guard_metrics = [m for m, _ in experiment.guardrails if m not in (EXPOSURE, success)]
    cohorts = build_cohorts(
        inputs.stats,
        arm_ids=arm_ids,
        metrics=[EXPOSURE, success, *guard_metrics],
        segmented=bool(experiment.segment_attribute),
        now=now,
    )
    delay = DelayModel.of(
        _delay_cdf(experiment, inputs.success_delays, inputs.previous)
        if delay_correction
        else _no_delay(experiment.attribution_window_hours)
    )
    discount = cohorts.hour_discount(delay.cdf) if cohorts.hours else np.zeros(0)
    kept, change_index = drift_weights(cohorts, success, experiment.min_exposures, discount)
    weights = decay_weights(cohorts.age_hours, experiment.half_life_hours, cohorts.age_spread_hours)

    config = PolicyConfig(
        exploration_share=experiment.exploration_share,
        min_exposures=experiment.min_exposures,
        min_successes=experiment.min_successes,
    )
    breached_mask, guardrails = _guardrails(inputs, served, cohorts, live, rng)
    suspended = ~live | breached_mask
    refresh = refresh_hint(cohorts, experiment.attribution_window_hours)
    if suspended.all():
        return replace(base, refresh=refresh, guardrails=guardrails)

    ev = _evidence(cohorts, success, kept[None] * weights[None, None], delay)
    overall, overall_figures = _overall_allocation(ev, config, rng, suspended)
    segments: dict[str, SegmentFigures] = {OVERALL: overall_figures}
    raw_e_all, raw_s_all = ev.raw_exposures.sum(axis=0), ev.raw_successes.sum(axis=0)
    by_segment, leads = _segment_allocations(
        cohorts.segments, ev, config, rng, suspended, experiment.min_exposures
    )
    segments.update(by_segment)
    changes = {
        arm_ids[k]: cohorts.hours[index]
        for k, index in enumerate(change_index)
        if index is not None
    }
    streaks, retirement = _retirement(
        inputs,
        arm_ids,
        overall,
        live & ~suspended & ~too_early_mask(ev.overall_maturity, raw_e_all, experiment),
        leads,
        raw_e_all,
        raw_s_all,
        now,
    )
    return replace(
        base,
        segments=segments,
        refresh=refresh,
        guardrails=guardrails,
        delay=_delay_block(delay, ev, cohorts.segments),
        changes=changes,
        streaks=streaks,
        retirement=retirement,
    )


@dataclass(frozen=True)
class _Evidence:
    """The delay-corrected evidence of one refresh. ``by_segment`` (S + 1, K) and ``overall``
    (K,) are on the kept, decayed counts and feed the posteriors; the maturities are on the
    raw counts (what share of them has arrived); the raw totals are per segment (S + 1, K)."""

    by_segment: CorrectedEvidence
    overall: CorrectedEvidence
    segment_maturity: CorrectedEvidence
    overall_maturity: CorrectedEvidence
    raw_exposures: np.ndarray
    raw_successes: np.ndarray


def _evidence(cohorts: Cohorts, success: str, kept: np.ndarray, delay: DelayModel) -> _Evidence:
    raw_e, raw_s = cohorts.counts[EXPOSURE], cohorts.counts[success]
    ages, spread = cohorts.exposure_age_hours, cohorts.exposure_age_spread_hours
    flat_ages, flat_spread = flat(ages), flat(spread)

    def by_cell(s: np.ndarray, e: np.ndarray) -> CorrectedEvidence:
        return corrected_evidence(s, e, ages, delay, age_spread=spread)

    segment_maturity = by_cell(raw_s, raw_e)
    flags = segment_maturity.contradicted
    contradicted_segment = flags is not None and bool(flags.any())

    def by_arm(s: np.ndarray, e: np.ndarray) -> CorrectedEvidence:
        if contradicted_segment:
            # A segment whose fit is contradicted joins all traffic with its bounds.
            return corrected_evidence(s, e, ages, delay, age_spread=spread, pool_rows=True)
        return corrected_evidence(flat(s), flat(e), flat_ages, delay, age_spread=flat_spread)

    return _Evidence(
        by_segment=by_cell(raw_s * kept, raw_e * kept),
        overall=by_arm(raw_s * kept, raw_e * kept),
        segment_maturity=segment_maturity,
        overall_maturity=by_arm(raw_s, raw_e),
        raw_exposures=raw_e.sum(axis=2),
        raw_successes=raw_s.sum(axis=2),
    )


def _delay_block(delay: DelayModel, ev: _Evidence, segments: Sequence[str]) -> dict[str, Any]:
    """The snapshot's ``delay`` block, with the segments whose fit the data contradict.

    Where all traffic's fit is contradicted, ``values`` is the curve the arms' figures used
    (the fit scaled by the shared factor of ``bandits.delay_model.corrected_evidence``,
    capped at 1) and ``fitted_values`` the fit's own: the report's evaluation and the loop
    read F from this block, and the fit's own said a maturity of 2e-6 where the arms read
    0.35 (every rate of the evaluation then read 100%, with an interval of 100% to 100%).
    """
    contradicted = _contradicted(ev, segments)
    block = {**delay.to_json(), "contradicted": contradicted}
    # Per contradicted segment (``OVERALL``: all traffic), the curves its arms' figures used:
    # the central one and the "slow wave" bound (``service.policy.figures.contradicted_curves``).
    rows = {OVERALL: (ev.overall_maturity, ev.raw_exposures.sum(axis=0))}
    rows.update(
        (name, (segment_evidence(ev.segment_maturity, i), ev.raw_exposures[i]))
        for i, name in enumerate(segments)
        if name in contradicted
    )
    values = np.asarray(delay.cdf.values, dtype=np.float64)
    bounds = {name: contradicted_curves(values, *rows[name]) for name in contradicted}
    if bounds:
        block["bounds"] = bounds
    if OVERALL in bounds:
        block["fitted_values"] = block["values"]
        block["values"] = bounds[OVERALL]["values"]
    return block


def _contradicted(ev: _Evidence, segments: Sequence[str]) -> list[str]:
    """The segments (``OVERALL`` for all traffic) whose fitted delay curve the data contradict
    (``bandits.delay_model.contradicted_rows``): the report says it cannot tell how many more
    successes are still to come there, and labels their arms too early to judge."""

    def rows(*evidence: CorrectedEvidence) -> np.ndarray:
        flags = [e.contradicted for e in evidence if e.contradicted is not None]
        return np.any(flags, axis=(0, -1)) if flags else np.zeros(0, dtype=bool)

    overall = rows(ev.overall, ev.overall_maturity)
    by_segment = rows(ev.by_segment, ev.segment_maturity)
    names = [OVERALL] if overall.size and bool(overall) else []
    return names + [s for s, flag in zip(segments, by_segment.tolist(), strict=False) if flag]


def _overall_allocation(
    ev: _Evidence, config: PolicyConfig, rng: np.random.Generator, suspended: np.ndarray
) -> tuple[Allocation, SegmentFigures]:
    """The all-traffic allocation (what /choose serves) and its figures."""
    # The prior is centred on the pooled corrected rate of the unshrunk evidence: with the
    # shrunk counts, a young experiment's prior would be centred by its own pseudo-counts.
    prior = pooled_prior(
        ev.overall.observed_successes, ev.overall.effective_exposures, config.prior_strength
    )
    pooled = np.full(len(suspended), prior[0]), np.full(len(suspended), prior[1])
    # The delay model's doubt shrinks prior and counts alike (``CorrectedEvidence.tempered``):
    # it widens every arm's posterior and leaves its mean on the arm's own evidence.
    own = ev.overall.tempered(*pooled)
    raw_e_all, raw_s_all = ev.raw_exposures.sum(axis=0), ev.raw_successes.sum(axis=0)
    overall = allocate(
        successes=own.successes,
        exposures=own.exposures,
        raw_successes=raw_s_all,
        raw_exposures=raw_e_all,
        config=config,
        rng=rng,
        suspended=suspended,
        prior_alpha=own.prior_alpha,
        prior_beta=own.prior_beta,
    )
    figures = segment_figures(
        overall,
        raw_e_all,
        raw_s_all,
        own,
        ev.overall_maturity,
        reported_interval(overall, ev.overall, *pooled),
        prior=(float(prior[0]), float(prior[1])),
    )
    return overall, figures


def _segment_allocations(
    segments: Sequence[str],
    ev: _Evidence,
    config: PolicyConfig,
    rng: np.random.Generator,
    suspended: np.ndarray,
    min_exposures: int,
) -> tuple[dict[str, SegmentFigures], np.ndarray]:
    """Each segment's figures (its own posteriors under a prior from all segments) and which
    arms lead a segment with at least the minimum sample (such an arm is never retired)."""
    figures: dict[str, SegmentFigures] = {}
    leads = np.zeros(len(suspended), dtype=bool)
    if not segments:
        return figures, leads
    # Each segment's evidence is shrunk by the delay model's doubt once: its own counts here
    # (``tempered``), the others' in its prior (their shrunk exposures bound its weight,
    # ``segment_priors``), whose mean reads the unshrunk counts. It used to be built from
    # the shrunk counts and then shrunk again with the segment's own.
    alpha, beta = segment_priors(
        ev.by_segment.observed_successes,
        ev.by_segment.effective_exposures,
        evidence=ev.by_segment.exposures,
    )
    for i, segment in enumerate(segments):
        evidence = segment_evidence(ev.by_segment, i)
        own = once(evidence.tempered(alpha[i], beta[i]), alpha[i], beta[i])
        result = allocate(
            successes=own.successes,
            exposures=own.exposures,
            raw_successes=ev.raw_successes[i],
            raw_exposures=ev.raw_exposures[i],
            config=config,
            rng=rng,
            suspended=suspended,
            prior_alpha=own.prior_alpha,
            prior_beta=own.prior_beta,
        )
        figures[segment] = segment_figures(
            result,
            ev.raw_exposures[i],
            ev.raw_successes[i],
            own,
            segment_evidence(ev.segment_maturity, i),
            reported_interval(result, evidence, alpha[i], beta[i]),
        )
        if ev.raw_exposures[i].sum() >= min_exposures:
            means = np.where(suspended, -np.inf, result.posterior_mean)
            leads[int(np.argmax(means))] = True
    return figures, leads


def _delay_cdf(
    experiment: ExperimentInfo, delays: Sequence[SuccessDelay], previous: Snapshot | None
) -> DelayModel | DelayCDF:
    """The primary metric's delay model, learnt from the observed delays (no setting).

    The previous snapshot's mixture verdict is reused while the successes have grown by less
    than a tenth (``MixtureEvidence.still_holds``): the test costs several fits.
    """
    known = None
    if previous is not None and previous.experiment.epoch == experiment.epoch:
        known = MixtureEvidence.from_json((previous.delay or {}).get("mixture"))
    window = experiment.attribution_window_hours
    observed = [d for d in delays if 0 <= d.delay_hours <= min(d.cohort_age_hours, window)]
    return fit_delay_model(
        np.array([d.delay_hours for d in observed], dtype=np.float64),
        np.array([min(d.cohort_age_hours, window) for d in observed], dtype=np.float64),
        window,
        earliest_hours=np.array([d.earliest_hours for d in observed], dtype=np.float64),
        known_mixture=known,
    )


def _no_delay(window_hours: float) -> DelayCDF:
    """F(age) = 1 at every age: every success has arrived at once."""
    return DelayCDF(window_hours, np.array([0.0, window_hours]), np.array([1.0, 1.0]), 0.0, 0.0)


def _guardrails(
    inputs: PolicyInputs,
    served: Sequence[ArmInfo],
    cohorts: Cohorts,
    live: NDArray[np.bool_],
    rng: np.random.Generator,
) -> tuple[NDArray[np.bool_], GuardrailFigures]:
    """Check every guardrail metric on the overall traffic; breaching live arms are suspended.

    An arm a human restored is judged only on cohorts that start after the hour of the
    restore, so the restore sticks unless fresh evidence breaches again.

    Rates here are raw, not delay-corrected (a departure from DESIGN.md): the delay
    distribution we can estimate is the primary metric's, and dividing unsubscribes by
    click-delay-discounted exposures inflates young cohorts' rates without bound, which would
    suspend new variants on no evidence. The reference is the other arms over the same hours,
    so raw rates are biased only for an arm younger than the rest, and then towards waiting.
    """
    experiment = inputs.experiment
    previous = inputs.previous.guardrails if inputs.previous is not None else None
    looks = (previous.looks if previous is not None else 0) + 1
    breached_mask = np.zeros(len(served), dtype=bool)
    evidence: dict[int, Breach] = {}
    if not cohorts.hours or not experiment.guardrails:
        return breached_mask, GuardrailFigures(looks=looks)
    since = np.ones((len(served), len(cohorts.hours)), dtype=bool)
    for k, arm in enumerate(served):
        if arm.restored_at is not None:
            restored_hour = arm.restored_at.replace(minute=0, second=0, microsecond=0)
            since[k] = [h > restored_hour for h in cohorts.hours]
    raw_e = cohorts.overall(EXPOSURE) * since
    retired = _retired_totals(inputs.stats, {a.id for a in served})
    # The retired arms' history joins the reference as one more (never flagged) member:
    # without it, every arm the loop retires shrinks the reference, and a trap arm that
    # wins on clicks outlives its competitors' evidence and can no longer be judged.
    pooled = np.append(live, retired[EXPOSURE] > 0)
    results = {}
    for metric, tolerance in experiment.guardrails:
        if metric not in cohorts.counts:
            continue
        exposures = np.append(raw_e.sum(axis=1), retired[EXPOSURE])
        own = np.append((cohorts.overall(metric) * since).sum(axis=1), retired.get(metric, 0.0))
        events = np.minimum(own, exposures)
        results[metric] = check_guardrails(
            events,
            exposures,
            eligible=pooled,
            tolerance=tolerance,
            min_exposures=experiment.min_exposures,
            min_events=MIN_GUARDRAIL_EVENTS,
            looks=looks,
            rng=rng,
            raw_exposures=exposures,
        )
    n = len(served)
    rates = {
        metric: GuardrailRates(
            rate=tuple(np.nan_to_num(r.rate[:n]).round(6).tolist()),
            reference_rate=tuple(np.nan_to_num(r.reference_rate[:n]).round(6).tolist()),
            probability_exceeds=tuple(np.nan_to_num(r.probability_exceeds[:n]).round(6).tolist()),
            events=tuple(r.events[:n].tolist()),
        )
        for metric, r in results.items()
    }
    if results:
        combined = combine_guardrails(results)
        breached_mask = combined.breached[:n] & live
        for k in np.flatnonzero(breached_mask).tolist():
            evidence[served[k].id] = Breach(
                metrics=tuple(combined.breached_metrics[k]),
                figures={m: r.evidence(k) for m, r in results.items()},
            )
    return breached_mask, GuardrailFigures(looks=looks, breached=evidence, rates=rates)


def _retired_totals(stats: Sequence[StatRow], served_ids: set[int]) -> dict[str, float]:
    """Exposures and events per metric of the arms no longer served, over the epoch."""
    totals: dict[str, float] = {EXPOSURE: 0.0}
    for row in stats:
        if row.arm_id not in served_ids:
            totals[row.metric] = totals.get(row.metric, 0.0) + row.count
    return totals


def _retirement(
    inputs: PolicyInputs,
    arm_ids: Sequence[int],
    overall: Any,
    candidates: NDArray[np.bool_],
    leads: NDArray[np.bool_],
    raw_e: FloatArray,
    raw_s: FloatArray,
    now: datetime,
) -> tuple[dict[int, Streak], dict[int, RetirementVerdict]]:
    """Eligibility now, and streaks (persisted in the snapshot) for the 24-hour hold."""
    experiment = inputs.experiment
    leader_rate = float(np.max(np.where(candidates, overall.posterior_mean, 0.0)))
    eligible = (
        eligible_now(
            raw_exposures=raw_e,
            raw_successes=raw_s,
            probability_best=overall.probability_best,
            expected_loss=overall.expected_loss,
            leader_rate=leader_rate,
            leads_any_segment=leads,
            min_exposures=experiment.min_exposures,
            min_successes=experiment.min_successes,
        )
        & candidates
    )
    previous = (inputs.previous.streaks if inputs.previous is not None else None) or {}
    streaks = update_streaks(previous, list(arm_ids), eligible, now.timestamp())
    retirement = {
        arm_id: RetirementVerdict(
            eligible=bool(eligible[k]),
            since=(
                datetime.fromtimestamp(streaks[arm_id].since, now.tzinfo)
                if arm_id in streaks
                else None
            ),
        )
        for k, arm_id in enumerate(arm_ids)
    }
    return streaks, retirement
