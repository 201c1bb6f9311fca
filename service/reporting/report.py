"""The experiment report: per arm and segment figures from the latest snapshot, and the
lift of the leader over the control with an interval. Everything comes from one snapshot,
so the figures agree with each other and with what /choose serves."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlmodel import Session

from bandits import PolicyConfig, beta_posterior, pooled_prior
from bandits.delay_model import JUDGED, MATURE_SHARE, TOO_EARLY, too_early
from service.core.vocabulary import OVERALL, SERVED_ARM_STATUSES
from service.experiments.service import experiment_out, get_experiment
from service.models import Experiment, PolicySnapshot
from service.policy import repository as snapshots_repo
from service.policy.snapshot import RetirementVerdict, SegmentFigures, Snapshot
from service.reporting.evaluation import evaluate_experiment
from service.reporting.value import report_holdout

LIFT_DRAWS = 20_000


def _arm_rows(
    snapshot: Snapshot, segment: SegmentFigures, min_exposures: int, name: str = OVERALL
) -> list[dict[str, Any]]:
    contents = {a.id: a for a in snapshot.arms}
    size = len(snapshot.arm_ids)
    # Snapshots written before the delay model carried maturity count as matured.
    maturity = segment.maturity or (1.0,) * size
    maturity_low = segment.maturity_low or maturity
    maturity_high = segment.maturity_high or maturity
    guard = snapshot.guardrails
    rates = (guard.rates if guard is not None else None) or {}
    breached = guard.breached if guard is not None else {}
    retirement = snapshot.retirement or {}
    not_eligible = RetirementVerdict(eligible=False, since=None)
    # The delay fit was contradicted here: how much is still to come is unknown.
    unknown = name in snapshot.contradicted
    rows = []
    for k, arm_id in enumerate(snapshot.arm_ids):
        exposures = segment.exposures[k]
        successes = segment.successes[k]
        breach = breached.get(arm_id)
        observed = successes / exposures if exposures else None
        # On the low end of the maturity range: an arm whose evidence may still be mostly to
        # come (a slow wave the data cannot see yet, a contradicted segment's share) is not
        # judged on the central figure (all traffic's arm 4 read "judged" at 0.52 while its
        # share of a contradicted segment put its low end at 0.35).
        immature = unknown or too_early(maturity_low[k], exposures, min_exposures)
        rows.append(
            {
                "arm_id": arm_id,
                "content": contents[arm_id].content,
                "control": contents[arm_id].control,
                "exposures": int(exposures),
                "successes": int(successes),
                "observed_rate": observed,
                "estimated_rate": segment.posterior_mean[k],
                "estimate_low": segment.ci_low[k],
                "estimate_high": segment.ci_high[k],
                "maturity": maturity[k],
                "maturity_low": maturity_low[k],
                "maturity_high": maturity_high[k],
                "judgement": TOO_EARLY if immature else JUDGED,
                "rate": observed,
                "effective_exposures": segment.effective_exposures[k],
                "posterior_mean": segment.posterior_mean[k],
                "ci_low": segment.ci_low[k],
                "ci_high": segment.ci_high[k],
                "probability_best": segment.probability_best[k],
                "expected_loss": segment.expected_loss[k],
                "allocation": segment.allocation[k],
                "warming_up": segment.warming_up[k],
                "guardrails": {
                    metric: {
                        "rate": figures.rate[k],
                        "reference_rate": figures.reference_rate[k],
                        "probability_exceeds": figures.probability_exceeds[k],
                        "breached": breach is not None and metric in breach.metrics,
                    }
                    for metric, figures in rates.items()
                },
                "retirement": retirement.get(arm_id, not_eligible).to_json(),
            }
        )
    return rows


def leader_lift(
    snapshot: Snapshot, rng: np.random.Generator, control_id: int | None
) -> dict[str, Any] | None:
    """The best challenger against the control, on the corrected rates, from posterior draws.

    The challenger is the leader; when the control itself leads, it is the best of the other
    arms (comparing the control with itself would say nothing), and the report says so.
    """
    segment = snapshot.overall
    if segment is None or control_id is None or control_id not in snapshot.arm_ids:
        return None
    eligible = np.asarray(segment.eligible, dtype=bool)
    means = np.where(eligible, np.asarray(segment.posterior_mean), -np.inf)
    leader = int(np.argmax(means))
    control = snapshot.arm_ids.index(control_id)
    control_leads = leader == control
    others = means.copy()
    others[control] = -np.inf
    if not np.isfinite(others).any():
        return None
    challenger = int(np.argmax(others))
    successes = np.asarray(segment.effective_successes, dtype=np.float64)
    exposures = np.asarray(segment.effective_exposures, dtype=np.float64)
    # The policy's own prior where the snapshot keeps it (see compute_snapshot).
    a0, b0 = segment.prior or pooled_prior(successes, exposures, PolicyConfig().prior_strength)
    # Shrunk with the counts by the delay model's doubt, as the policy's was.
    scale = np.asarray(segment.prior_scale or np.ones(len(successes)), dtype=np.float64)
    posterior = beta_posterior(successes, exposures, a0 * scale, b0 * scale)
    pair = [challenger, control]
    theta = rng.beta(posterior.alpha[pair], posterior.beta[pair], size=(LIFT_DRAWS, 2))
    # F is known only within the arms' maturity range (the delay fit's doubt; where the fit
    # is contradicted, between "a slow wave still to come" and "nothing more to come"): the
    # intervals also span the lift at each end (the point values stay on the policy's
    # posterior, the arms' central figures).
    spread = [theta, *_bound_draws(snapshot, segment, pair, (a0, b0), rng)]
    relative = theta[:, 0] / theta[:, 1] - 1.0
    absolute = theta[:, 0] - theta[:, 1]
    every = np.concatenate(spread)
    probability = float((every[:, 0] > every[:, 1]).mean())
    rel = _interval(relative, every[:, 0] / every[:, 1] - 1.0)
    challenger_id = snapshot.arm_ids[challenger]
    maturity = segment.maturity
    arrived = min(maturity[challenger], maturity[control]) if maturity is not None else 1.0
    unseen = [snapshot.arm_ids[k] for k in pair if segment.exposures[k] <= 0]
    if unseen:
        # A maturity of "all arrived" for an arm with no decisions says nothing: say so.
        summary = (
            "Nothing to compare yet: no decision has gone to "
            + " or ".join(f"arm {arm_id}" for arm_id in unseen)
            + "."
        )
    elif arrived < MATURE_SHARE:
        summary = (
            f"Too early to compare: at most {arrived:.0%} "
            "of the eventual evidence of these arms has arrived."
        )
    elif control_leads:
        summary = (
            f"The control leads; the best challenger (arm {challenger_id}) is "
            f"{rel['value']:+.1%} against it (95% interval {rel['ci_low']:+.1%} to "
            f"{rel['ci_high']:+.1%})."
        )
    else:
        summary = (
            f"Arm {challenger_id} leads the control by {rel['value']:+.1%} (95% interval "
            f"{rel['ci_low']:+.1%} to {rel['ci_high']:+.1%}), P(better) {probability:.2f}."
        )
    return {
        "leader_arm_id": snapshot.arm_ids[leader],
        "control_arm_id": control_id,
        "control_leads": control_leads,
        "challenger_arm_id": challenger_id,
        "relative": rel,
        "absolute": _interval(absolute, every[:, 0] - every[:, 1]),
        "probability_leader_beats_control": probability,
        "summary": summary,
    }


def correction_line(snapshot: Snapshot) -> str | None:
    """One sentence on what the delay correction did to the overall figures."""
    segment = snapshot.overall
    delay = snapshot.delay or {}
    if segment is None or segment.maturity is None or "median_hours" not in delay:
        return None
    exposures = np.asarray(segment.exposures, dtype=np.float64)
    if exposures.sum() <= 0:
        return None
    metric = snapshot.experiment.success_metric
    maturity = float(np.average(segment.maturity, weights=exposures))
    observations = int(delay.get("observations", 0))
    if observations == 0:
        return (
            f"No {metric} has arrived yet; the estimates are the prior's, and the share of "
            f"eventual {metric}s already due is unknown."
        )
    observed = np.asarray(segment.observed_rate or (0.0,) * len(exposures), dtype=np.float64)
    estimated = np.asarray(segment.posterior_mean, dtype=np.float64)
    seen = observed > 0
    factors = estimated[seen] / observed[seen] if seen.any() else np.ones(1)
    # Two log-normals beat one by BIC (bandits.delay_mixture): the estimate_low/high allow for
    # the slower part, and the sentence says so while it matters.
    tail = (
        " The delays are a mix of a fast and a slow part (two delay curves fit them better "
        "than one), so the interval allows for more of the slow part still to come."
        if delay.get("mixed") and maturity < 1.0
        else ""
    )
    if OVERALL in snapshot.contradicted:
        # The fitted curve said fewer successes were due than some arm already has: the
        # delays so far fit both "all have arrived" and "a slow wave is starting".
        return (
            f"Delay correction: the {metric} delays so far ({learnt_count(observations, metric)}) "
            f"cannot tell how many more are coming: they fit both all {metric}s having "
            f"arrived and a slow wave still to come, so every arm is too early to judge and "
            f"each interval runs from about its observed rate to what a slow wave would give."
            f"{tail}"
        )
    low, high = f"{factors.min():.2f}x", f"{factors.max():.2f}x"
    span = low if low == high else f"{low} to {high}"
    learnt = learnt_count(observations, metric)
    segments = [name for name in snapshot.contradicted if name != OVERALL]
    unknown = (
        f" In {_segment_list(segments)} the {metric}s so far cannot tell how many more are "
        f"coming (all arrived, or a slow wave still to come): there, and in all traffic's "
        f"share of it, the intervals span both."
        if segments
        else ""
    )
    # The slow wave the data cannot see yet (``bandits.delay_unseen``) moved the low end only.
    lowest = (
        float(np.average(segment.maturity_low, weights=exposures))
        if segment.maturity_low is not None
        else maturity
    )
    wave = (
        f" The decisions are too young to rule out a slower wave of {metric}s still to come "
        f"(as few as {lowest:.0%} may have arrived): the intervals' upper ends allow for it."
        if not tail and not segments and lowest < MATURE_SHARE <= maturity
        else ""
    )
    return (
        f"Delay correction: a {metric} arrives a median {_duration(delay['median_hours'])} "
        f"after exposure (learnt from {learnt}); about {maturity:.0%} of the "
        f"eventual {metric}s of these exposures have arrived, so the estimated rates are "
        f"{span} the observed rates (prior included).{tail}{unknown}{wave}"
    )


def _segment_list(names: list[str]) -> str:
    """'segment "a"', 'segments "a" and "b"', 'segments "a", "b" and 3 more'."""
    quoted = [f'"{name}"' for name in names[:3]]
    if len(names) == 1:
        return f"segment {quoted[0]}"
    if len(names) > 3:
        return f"segments {', '.join(quoted)} and {len(names) - 3} more"
    return f"segments {', '.join(quoted[:-1])} and {quoted[-1]}"


def learnt_count(observations: int, metric: str) -> str:
    """The count and the metric: "1 click", "12 clicks"."""
    return f"{observations} {metric}" + ("" if observations == 1 else "s")


def _duration(hours: float) -> str:
    seconds = hours * 3600.0
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _interval(draws: np.ndarray, spread: np.ndarray | None = None) -> dict[str, float]:
    """The median of ``draws`` and the 95% interval of ``spread`` (default: ``draws``)."""
    low, high = np.quantile(draws if spread is None else spread, [0.025, 0.975])
    mid = np.quantile(draws, 0.5)
    return {"value": float(mid), "ci_low": float(low), "ci_high": float(high)}


def _bound_draws(
    snapshot: Snapshot,
    segment: SegmentFigures,
    pair: list[int],
    prior: tuple[float, float],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Posterior draws of the ``pair``'s rates at each end of the arms' maturity range.

    The range is the delay model's doubt about F: the fit's sigma points, or where the fit is
    contradicted (``Snapshot.contradicted``: all traffic or a segment of it) its two bounds
    (``bandits.delay_model._uncontradicted``, and ``pool_rows`` for a contradicted
    segment's share of all traffic): "slow wave" (``maturity_low``, one F shared by the
    arms, so their ratio stays) and "nothing more to come" (``maturity_high``). At an end F
    is known, so each is an untempered Beta on the counts it implies, with the policy's
    prior. A doubt shared by the arms hardly moves the relative lift, but the absolute one
    scales with 1/F: a young email send read half an hour in (maturity 0.12 to 0.39) gave
    +59 points with an interval of 49 to 69 from the policy's posterior alone, where the
    two ends of the range give +25 and +80.
    """
    if segment.maturity_low is None or segment.maturity_high is None:
        return []
    exposures = np.asarray(segment.exposures, dtype=np.float64)[pair]
    successes = np.asarray(segment.successes, dtype=np.float64)[pair]
    draws = []
    for share in (segment.maturity_low, segment.maturity_high):
        effective = np.maximum(exposures * np.asarray(share, dtype=np.float64)[pair], successes)
        bound = beta_posterior(successes, effective, *prior)
        draws.append(rng.beta(bound.alpha, bound.beta, size=(LIFT_DRAWS, 2)))
    return draws


def build_report(
    *,
    experiment: dict[str, Any],
    arms: list[dict[str, Any]],
    snapshot: Any | None,
    evaluation: dict[str, Any] | None,
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "experiment": experiment,
        "policy_version": None,
        "computed_at": None,
        "arms": [],
        "segments": {},
        "lift_over_control": None,
        "evaluation": evaluation,
        "not_served": [a for a in arms if a["status"] not in SERVED_ARM_STATUSES],
    }
    if snapshot is None:
        return report
    payload = Snapshot.from_json(snapshot.payload)
    report["policy_version"] = snapshot.version
    report["computed_at"] = snapshot.payload.get("computed_at")
    segments = payload.segments
    statuses = {a["id"]: a["status"] for a in arms}
    min_exposures = int(experiment.get("min_exposures", 0) or 0)
    if OVERALL in segments:
        report["arms"] = _arm_rows(payload, segments[OVERALL], min_exposures)
        for row in report["arms"]:
            row["status"] = statuses.get(row["arm_id"])
    report["segments"] = {
        name: _arm_rows(payload, seg, min_exposures, name)
        for name, seg in segments.items()
        if name != OVERALL
    }
    control = next((a["id"] for a in arms if a["control"]), None)
    report["lift_over_control"] = leader_lift(
        payload, np.random.default_rng([snapshot.experiment_id, snapshot.version]), control
    )
    report["correction"] = correction_line(payload)
    report["guardrail_looks"] = payload.guardrails.looks if payload.guardrails else None
    report["delay"] = payload.delay
    report["changes"] = {str(k): v.isoformat() for k, v in (payload.changes or {}).items()}
    return report


def report(session: Session, key: str) -> dict[str, Any]:
    experiment = get_experiment(session, key)
    assert experiment.id is not None
    out = experiment_out(session, experiment).model_dump(mode="json")
    arms = out.pop("arms")
    snapshot = snapshots_repo.latest(session, experiment_id=experiment.id)
    evaluation = _evaluation(session, experiment, as_of=evaluation_time(snapshot, experiment))
    built = build_report(experiment=out, arms=arms, snapshot=snapshot, evaluation=evaluation)
    holdout = report_holdout(session, experiment)
    if holdout is not None:
        built["holdout"] = holdout
    return built


# The report answers in about a second: its evaluation looks at the newest matured
# decisions only. `banditloop evaluate` uses the full log.
REPORT_EVALUATION_DECISIONS = 20_000
REPORT_EVALUATION_BOOTSTRAP = 300


def evaluation_time(snapshot: PolicySnapshot | None, experiment: Experiment) -> datetime | None:
    """When the report's evaluation reads the log: when the arms' figures were computed.

    The arms come from the latest snapshot, computed at its ``computed_at`` with F at its
    cohorts' ages then; the evaluation reads the log as of that moment (decisions made and
    successes arrived by then, ages then), so the page states one maturity and the lift is
    made of the same corrected evidence as the arms. Read at the request's time instead, a
    send read seconds after its clicks had two maturities (the arms' and, seconds older, the
    evaluation's) on one page. None (read now) when the snapshot has no figures for the
    current epoch (paused, no live arm, a reset).
    """
    if snapshot is None or snapshot.epoch != experiment.epoch:
        return None
    payload = Snapshot.from_json(snapshot.payload)
    return payload.computed_at if payload.overall is not None else None


def _evaluation(
    session: Session, experiment: Experiment, *, as_of: datetime | None
) -> dict[str, Any]:
    assert experiment.id is not None
    result: dict[str, Any] = evaluate_experiment(
        session,
        experiment_id=experiment.id,
        rng=np.random.default_rng(experiment.id),
        max_decisions=REPORT_EVALUATION_DECISIONS,
        n_boot=REPORT_EVALUATION_BOOTSTRAP,
        now=as_of,
    )
    return result


def history(session: Session, key: str, *, limit: int) -> dict[str, Any]:
    experiment = get_experiment(session, key)
    assert experiment.id is not None
    points = []
    for snap in snapshots_repo.history(session, experiment_id=experiment.id, limit=limit):
        snapshot = Snapshot.from_json(snap.payload)
        overall = snapshot.overall
        arm_ids = list(snapshot.arm_ids)
        contents = {a.id: a.content for a in snapshot.arms}
        observed = None
        if overall:
            observed = list(overall.observed_rate or ()) or [
                s / e if e else 0.0
                for s, e in zip(overall.successes, overall.exposures, strict=True)
            ]
        points.append(
            {
                "version": snap.version,
                "epoch": snap.epoch,
                "at": snap.created_at.isoformat(),
                "arm_ids": arm_ids,
                "arms": [{"id": i, "content": contents.get(i, "")} for i in arm_ids],
                "allocation": list(overall.allocation) if overall else None,
                "posterior_mean": list(overall.posterior_mean) if overall else None,
                "observed_rate": observed,
                "maturity": list(overall.maturity or ()) or None if overall else None,
                "exposures": list(overall.exposures) if overall else None,
                "successes": list(overall.successes) if overall else None,
            }
        )
    return {"experiment": key, "points": points}
