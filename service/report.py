"""The experiment report: per arm and segment figures from the latest snapshot, and the
lift of the leader over the control with an interval. Everything comes from one snapshot,
so the figures agree with each other and with what /choose serves."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlmodel import Session

from bandits import PolicyConfig, beta_posterior, pooled_prior
from service.evaluation import evaluate_experiment
from service.experiments import experiment_out, get_experiment
from service.models import Experiment
from service.policy.cohorts import OVERALL
from service.repositories import snapshots as snapshots_repo

LIFT_DRAWS = 20_000


def _arm_rows(payload: dict[str, Any], segment: dict[str, Any]) -> list[dict[str, Any]]:
    contents = {a["id"]: a for a in payload["arms"]}
    guard = payload.get("guardrails", {})
    rates = guard.get("rates", {})
    breached = guard.get("breached", {})
    retirement = payload.get("retirement", {})
    rows = []
    for k, arm_id in enumerate(payload["arm_ids"]):
        exposures = segment["exposures"][k]
        successes = segment["successes"][k]
        rows.append(
            {
                "arm_id": arm_id,
                "content": contents[arm_id]["content"],
                "control": contents[arm_id]["control"],
                "exposures": int(exposures),
                "successes": int(successes),
                "rate": successes / exposures if exposures else None,
                "effective_exposures": segment["effective_exposures"][k],
                "posterior_mean": segment["posterior_mean"][k],
                "ci_low": segment["ci_low"][k],
                "ci_high": segment["ci_high"][k],
                "probability_best": segment["probability_best"][k],
                "expected_loss": segment["expected_loss"][k],
                "allocation": segment["allocation"][k],
                "warming_up": segment["warming_up"][k],
                "guardrails": {
                    metric: {
                        "rate": figures["rate"][k],
                        "reference_rate": figures["reference_rate"][k],
                        "probability_exceeds": figures["probability_exceeds"][k],
                        "breached": metric in breached.get(str(arm_id), {}).get("metrics", []),
                    }
                    for metric, figures in rates.items()
                },
                "retirement": retirement.get(str(arm_id), {"eligible": False, "since": None}),
            }
        )
    return rows


def leader_lift(
    payload: dict[str, Any], rng: np.random.Generator, control_id: int | None
) -> dict[str, Any] | None:
    """Relative lift of the leader's rate over the control's, from posterior draws."""
    segment = payload["segments"].get(OVERALL)
    if segment is None or control_id is None or control_id not in payload["arm_ids"]:
        return None
    eligible = np.asarray(segment["eligible"], dtype=bool)
    means = np.where(eligible, np.asarray(segment["posterior_mean"]), -np.inf)
    leader = int(np.argmax(means))
    control = payload["arm_ids"].index(control_id)
    successes = np.asarray(segment["effective_successes"], dtype=np.float64)
    exposures = np.asarray(segment["effective_exposures"], dtype=np.float64)
    a0, b0 = pooled_prior(successes, exposures, PolicyConfig().prior_strength)
    posterior = beta_posterior(successes, exposures, a0, b0)
    theta = rng.beta(
        posterior.alpha[[leader, control]], posterior.beta[[leader, control]], size=(LIFT_DRAWS, 2)
    )
    relative = theta[:, 0] / theta[:, 1] - 1.0
    absolute = theta[:, 0] - theta[:, 1]
    return {
        "leader_arm_id": payload["arm_ids"][leader],
        "control_arm_id": control_id,
        "relative": _interval(relative),
        "absolute": _interval(absolute),
        "probability_leader_beats_control": float((absolute > 0).mean()),
    }


def _interval(draws: np.ndarray) -> dict[str, float]:
    low, mid, high = np.quantile(draws, [0.025, 0.5, 0.975])
    return {"value": float(mid), "ci_low": float(low), "ci_high": float(high)}


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
        "not_served": [a for a in arms if a["status"] not in ("live", "suspended")],
    }
    if snapshot is None:
        return report
    payload = snapshot.payload
    report["policy_version"] = snapshot.version
    report["computed_at"] = payload.get("computed_at")
    segments = payload.get("segments", {})
    statuses = {a["id"]: a["status"] for a in arms}
    if OVERALL in segments:
        report["arms"] = _arm_rows(payload, segments[OVERALL])
        for row in report["arms"]:
            row["status"] = statuses.get(row["arm_id"])
    report["segments"] = {
        name: _arm_rows(payload, seg) for name, seg in segments.items() if name != OVERALL
    }
    control = next((a["id"] for a in arms if a["control"]), None)
    report["lift_over_control"] = leader_lift(
        payload, np.random.default_rng([snapshot.experiment_id, snapshot.version]), control
    )
    report["guardrail_looks"] = payload.get("guardrails", {}).get("looks")
    report["delay"] = payload.get("delay")
    report["changes"] = payload.get("changes", {})
    return report


def report(session: Session, key: str) -> dict[str, Any]:
    experiment = get_experiment(session, key)
    assert experiment.id is not None
    out = experiment_out(session, experiment).model_dump(mode="json")
    arms = out.pop("arms")
    snapshot = snapshots_repo.latest(session, experiment_id=experiment.id)
    return build_report(
        experiment=out, arms=arms, snapshot=snapshot, evaluation=_evaluation(session, experiment)
    )


# The report answers in about a second: its evaluation looks at the newest matured
# decisions only. `banditloop evaluate` uses the full log.
REPORT_EVALUATION_DECISIONS = 20_000
REPORT_EVALUATION_BOOTSTRAP = 300


def _evaluation(session: Session, experiment: Experiment) -> dict[str, Any]:
    assert experiment.id is not None
    result: dict[str, Any] = evaluate_experiment(
        session,
        experiment_id=experiment.id,
        rng=np.random.default_rng(experiment.id),
        max_decisions=REPORT_EVALUATION_DECISIONS,
        n_boot=REPORT_EVALUATION_BOOTSTRAP,
    )
    return result


def history(session: Session, key: str, *, limit: int) -> dict[str, Any]:
    experiment = get_experiment(session, key)
    assert experiment.id is not None
    points = []
    for snap in snapshots_repo.history(session, experiment_id=experiment.id, limit=limit):
        overall = snap.payload.get("segments", {}).get("")
        points.append(
            {
                "version": snap.version,
                "epoch": snap.epoch,
                "at": snap.created_at.isoformat(),
                "arm_ids": snap.payload.get("arm_ids", []),
                "allocation": overall["allocation"] if overall else None,
                "posterior_mean": overall["posterior_mean"] if overall else None,
                "exposures": overall["exposures"] if overall else None,
            }
        )
    return {"experiment": key, "points": points}
