"""Evaluate one experiment from its decision log: lift over an even split, and off-policy
estimates of an even split, the current allocation and (optionally) one fixed arm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session

from service.errors import NotFound
from service.evaluation.estimates import EvaluationLog, Target, evaluate_log
from service.models import utcnow
from service.policy.cohorts import OVERALL
from service.policy.inputs import success_metric
from service.repositories import evaluation as evaluation_repo
from service.repositories import experiments as experiments_repo
from service.repositories import snapshots as snapshots_repo
from service.repositories.evaluation import LoggedDecision, ServedVersion

# The report calls this on every request: the newest 200k matured decisions and 500
# resamples keep it well under a second while the intervals stay stable to ~1e-3.
MAX_DECISIONS = 200_000
N_BOOT = 500
LEVEL = 0.95
# Summing allocations in floating point: a full mass can come out a hair under 1.
_FULL_MASS = 1.0 - 1e-9


def evaluate_experiment(
    session: Session,
    *,
    experiment_id: int,
    rng: np.random.Generator,
    arm_id: int | None = None,
    now: datetime | None = None,
    max_decisions: int = MAX_DECISIONS,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Lift and off-policy estimates from the experiment's matured decisions (JSON-able).

    Matured: made at least one attribution window before ``now`` in the current epoch, so
    every success it can earn is in; the reward is whether it earned a first success of the
    primary metric. Raises ``NotFound`` for an unknown experiment or an arm of another one.
    """
    experiment = experiments_repo.get(session, experiment_id=experiment_id)
    if experiment is None:
        raise NotFound(f"unknown experiment {experiment_id}", field="experiment")
    if arm_id is not None:
        if experiments_repo.get_arm(session, experiment_id=experiment_id, arm_id=arm_id) is None:
            raise NotFound(f"arm {arm_id} is not an arm of this experiment", field="arm")
    now = now or utcnow()
    window = experiment.attribution_window_hours
    matured_before = now - timedelta(hours=window)
    metric = success_metric(experiment.primary_metric, experiment.conversion_name)
    decisions = evaluation_repo.matured_decisions(
        session,
        experiment_id=experiment_id,
        epoch=experiment.epoch,
        metric=metric,
        matured_before=matured_before,
        limit=max_decisions,
    )
    matured = len(decisions)
    if matured >= max_decisions:
        matured = evaluation_repo.count_decisions(
            session, experiment_id=experiment_id, epoch=experiment.epoch, before=matured_before
        )
    pending = evaluation_repo.count_decisions(
        session, experiment_id=experiment_id, epoch=experiment.epoch, since=matured_before
    )
    served = evaluation_repo.served_versions(
        session,
        experiment_id=experiment_id,
        versions=sorted({d.policy_version for d in decisions}),
    )
    latest = snapshots_repo.latest(session, experiment_id=experiment_id)
    current = _current_allocation(latest.payload) if latest is not None else None
    log, targets, skipped = build_log(
        decisions,
        served,
        current=current,
        current_version=latest.version if latest is not None else None,
        arm_id=arm_id,
    )
    result = evaluate_log(log, targets, rng=rng, n_boot=n_boot, level=level)
    if current is None:
        result["off_policy"]["current"] = _unavailable(
            "current", "no snapshot serves traffic now (paused, archived or no live arm)"
        )
    result["off_policy"].setdefault("arm", None)
    result.update(
        {
            "experiment_id": experiment_id,
            "epoch": experiment.epoch,
            "metric": metric,
            "attribution_window_hours": window,
            "matured_before": matured_before.isoformat(),
            "matured": matured,
            "pending": pending,
            "capped": matured > len(decisions),
            "skipped": skipped,
        }
    )
    return result


CurrentAllocation = tuple[tuple[int, ...], Mapping[str, tuple[float, ...]]]


def _current_allocation(payload: Mapping[str, Any]) -> CurrentAllocation | None:
    """Arm ids and allocation per segment of the newest snapshot, if it serves traffic."""
    segments = payload.get("segments", {})
    if OVERALL not in segments or payload.get("experiment", {}).get("status") != "running":
        return None
    arm_ids = tuple(int(a) for a in payload["arm_ids"])
    return arm_ids, {
        name: tuple(float(x) for x in seg["allocation"]) for name, seg in segments.items()
    }


def _unavailable(name: str, reason: str) -> dict[str, Any]:
    empty = {"value": None, "ci_low": None, "ci_high": None}
    return {
        "n": 0,
        "coverage": 0.0,
        "support": False,
        "effective_sample_size": 0.0,
        "ips": dict(empty),
        "snips": dict(empty),
        "reason": reason,
    }


def build_log(
    decisions: Sequence[LoggedDecision],
    served: Mapping[int, ServedVersion],
    *,
    current: CurrentAllocation | None,
    current_version: int | None,
    arm_id: int | None,
) -> tuple[EvaluationLog, list[Target], int]:
    """Per-decision arrays for the estimators; decisions whose snapshot is gone are skipped.

    What the log could choose at a decision: the arms its snapshot made eligible with a
    positive allocation (a positive exploration share gives every eligible arm some). The even
    split is over the eligible arms. The current allocation and the fixed arm are evaluated on
    the decisions whose choosable arms cover every arm the target could pick.
    """
    supports: dict[int, tuple[frozenset[int], int]] = {}
    for version, info in served.items():
        choosable = frozenset(
            a
            for a, e, x in zip(info.arm_ids, info.eligible, info.allocation, strict=True)
            if e and x > 0.0
        )
        supports[version] = (choosable, sum(info.eligible))
    current_by_segment: dict[str, dict[int, float]] = {}
    if current is not None:
        arm_ids, allocations = current
        current_by_segment = {
            seg: {a: x for a, x in zip(arm_ids, alloc, strict=True) if x > 0.0}
            for seg, alloc in allocations.items()
        }
    group_cache: dict[tuple[int, str], tuple[float, bool]] = {}

    kept: list[LoggedDecision] = []
    uniform, uniform_mass, q_current, c_current, q_arm, c_arm = [], [], [], [], [], []
    for d in decisions:
        support = supports.get(d.policy_version)
        if support is None:
            continue
        choosable, eligible_count = support
        kept.append(d)
        uniform.append(1.0 / eligible_count if eligible_count and d.arm_id in choosable else 0.0)
        uniform_mass.append(len(choosable) / eligible_count if eligible_count else 0.0)
        if current is not None:
            target = current_by_segment.get(d.segment) or current_by_segment[OVERALL]
            key = (d.policy_version, d.segment)
            if key not in group_cache:
                mass = sum(x for a, x in target.items() if a in choosable)
                group_cache[key] = (mass, mass >= _FULL_MASS)
            q_current.append(target.get(d.arm_id, 0.0))
            c_current.append(group_cache[key][1])
        if arm_id is not None:
            q_arm.append(1.0 if d.arm_id == arm_id else 0.0)
            c_arm.append(arm_id in choosable)

    log = EvaluationLog(
        reward=np.array([1.0 if d.success else 0.0 for d in kept], dtype=np.float64),
        propensity=np.array([d.propensity for d in kept], dtype=np.float64),
        uniform=np.array(uniform, dtype=np.float64),
        uniform_mass=np.array(uniform_mass, dtype=np.float64),
    )
    targets = []
    if current is not None:
        targets.append(
            Target(
                "current",
                np.array(q_current, dtype=np.float64),
                np.array(c_current, dtype=bool),
                {"version": current_version},
            )
        )
    if arm_id is not None:
        targets.append(
            Target(
                "arm",
                np.array(q_arm, dtype=np.float64),
                np.array(c_arm, dtype=bool),
                {"arm_id": arm_id},
            )
        )
    return log, targets, len(decisions) - len(kept)
