"""Evaluate one experiment from its decision log: lift over an even split, and off-policy
estimates of an even split, the current allocation and (optionally) one fixed arm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session

from service.core.errors import NotFound
from service.core.sessions import now as now_of
from service.core.vocabulary import OVERALL, ExperimentStatus, success_metric
from service.experiments import repository as experiments_repo
from service.policy import repository as snapshots_repo
from service.policy.snapshot import Snapshot
from service.reporting import repository as evaluation_repo
from service.reporting.evaluation.estimates import EvaluationLog, Target, evaluate_log
from service.reporting.evaluation.maturity import delay_correction
from service.reporting.repository import LoggedDecisions, ServedVersion

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
    """Lift and off-policy estimates from the experiment's decision log (JSON-able).

    Every decision of the current epoch made before ``now`` counts, the young ones too: a
    decision of age a counts as F(a) of a decision, F the delay CDF the policy used (the
    latest snapshot's), so the figures are eventual rates from the first hour of a campaign
    on; ``maturity`` says how much of the eventual evidence has arrived. The reward is whether
    it earned a first success of the primary metric by ``now``. Raises ``NotFound`` for an
    unknown experiment or an arm of another one.
    """
    experiment = experiments_repo.get(session, experiment_id=experiment_id)
    if experiment is None:
        raise NotFound(f"unknown experiment {experiment_id}", field="experiment")
    if arm_id is not None:
        if experiments_repo.get_arm(session, experiment_id=experiment_id, arm_id=arm_id) is None:
            raise NotFound(f"arm {arm_id} is not an arm of this experiment", field="arm")
    now = now or now_of(session)
    window = experiment.attribution_window_hours
    matured_before = now - timedelta(hours=window)
    metric = success_metric(experiment.primary_metric, experiment.conversion_name)
    decisions = evaluation_repo.logged_decisions(
        session,
        experiment_id=experiment_id,
        epoch=experiment.epoch,
        metric=metric,
        now=now,
        limit=max_decisions,
    )
    total = len(decisions)
    if total >= max_decisions:
        total = evaluation_repo.count_decisions(
            session, experiment_id=experiment_id, epoch=experiment.epoch, before=now
        )
    matured = evaluation_repo.count_decisions(
        session, experiment_id=experiment_id, epoch=experiment.epoch, before=matured_before
    )
    served = evaluation_repo.served_versions(
        session,
        experiment_id=experiment_id,
        versions=sorted(set(decisions.policy_version)),
    )
    # Decisions whose snapshot is gone cannot be evaluated: dropped before anything is built,
    # so the log and its delay correction describe the same decisions.
    known = [v in served for v in decisions.policy_version]
    evaluated = _only(decisions, known)
    latest = snapshots_repo.latest(session, experiment_id=experiment_id)
    current = _current_allocation(latest.payload) if latest is not None else None
    log, targets, _ = build_log(
        evaluated,
        served,
        current=current,
        current_version=latest.version if latest is not None else None,
        arm_id=arm_id,
    )
    correction, delay_info = delay_correction(
        evaluated,
        window_hours=window,
        payload=latest.payload if latest is not None else None,
        now=now,
    )
    result = evaluate_log(log, targets, rng=rng, n_boot=n_boot, level=level, delay=correction)
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
            # The moment the log was read at (the report: its snapshot's computed_at).
            "as_of": now.isoformat(),
            "matured_before": matured_before.isoformat(),
            "matured": matured,
            # Younger than the window: evaluated through the delay correction, still maturing.
            "pending": total - matured,
            "young": sum(1 for age in evaluated.age_hours if age < window),
            "delay": delay_info,
            "capped": total > len(decisions),
            "skipped": len(decisions) - len(evaluated),
        }
    )
    return result


def _only(decisions: LoggedDecisions, keep: Sequence[bool]) -> LoggedDecisions:
    if all(keep):
        return decisions
    return LoggedDecisions(
        *(
            [value for value, kept in zip(getattr(decisions, name), keep, strict=True) if kept]
            for name in (f.name for f in fields(LoggedDecisions))
        )
    )


CurrentAllocation = tuple[tuple[int, ...], Mapping[str, tuple[float, ...]]]


def _current_allocation(payload: Mapping[str, Any]) -> CurrentAllocation | None:
    """Arm ids and allocation per segment of the newest snapshot, if it serves traffic."""
    snapshot = Snapshot.from_json(payload)
    if snapshot.overall is None or snapshot.experiment.status != ExperimentStatus.RUNNING:
        return None
    return snapshot.arm_ids, {name: seg.allocation for name, seg in snapshot.segments.items()}


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
    decisions: LoggedDecisions,
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
    the decisions whose choosable arms cover every arm the target could pick. Vectorised over
    (version x arm) and (segment x arm) tables: the report may pass 200k decisions.
    """
    versions = np.asarray(decisions.policy_version, dtype=np.int64)
    known = np.array([v in served for v in decisions.policy_version], dtype=bool)
    version_list = sorted(served)
    arm_list = sorted(
        {a for info in served.values() for a in info.arm_ids}
        | set(decisions.arm_id)
        | set(current[0] if current is not None else ())
        | ({arm_id} if arm_id is not None else set())
    )
    arm_column = {a: j for j, a in enumerate(arm_list)}
    # choosable[v, a]: the version's snapshot could serve arm a; eligible counts give K.
    choosable = np.zeros((len(version_list), len(arm_list)), dtype=bool)
    eligible_count = np.zeros(len(version_list))
    for i, version in enumerate(version_list):
        info = served[version]
        for a, eligible, share in zip(info.arm_ids, info.eligible, info.allocation, strict=True):
            choosable[i, arm_column[a]] = eligible and share > 0.0
        eligible_count[i] = sum(info.eligible)

    version_row = np.searchsorted(np.asarray(version_list, dtype=np.int64), versions[known])
    arm_col = np.array([arm_column[a] for a in decisions.arm_id], dtype=np.int64)[known]
    segments = np.asarray(decisions.segment, dtype=object)[known]
    count = eligible_count[version_row]
    safe = np.where(count > 0, count, 1.0)
    log = EvaluationLog(
        reward=np.asarray(decisions.success, dtype=np.float64)[known],
        propensity=np.asarray(decisions.propensity, dtype=np.float64)[known],
        uniform=np.where(choosable[version_row, arm_col] & (count > 0), 1.0 / safe, 0.0),
        uniform_mass=np.where(count > 0, choosable[version_row].sum(axis=1) / safe, 0.0),
    )
    targets = []
    if current is not None:
        current_ids, allocations = current
        names = sorted(allocations)
        table = np.zeros((len(names), len(arm_list)))
        for s, name in enumerate(names):
            for a, share in zip(current_ids, allocations[name], strict=True):
                table[s, arm_column[a]] = share
        # A decision's segment unknown to the snapshot is served the overall allocation.
        lookup = {name: s for s, name in enumerate(names)}
        overall = lookup[OVERALL]
        segment_row = np.array([lookup.get(x, overall) for x in segments], dtype=np.int64)
        mass = choosable.astype(np.float64) @ table.T  # (versions, segments)
        targets.append(
            Target(
                "current",
                table[segment_row, arm_col],
                mass[version_row, segment_row] >= _FULL_MASS,
                {"version": current_version},
            )
        )
    if arm_id is not None:
        column = arm_column[arm_id]
        targets.append(
            Target(
                "arm",
                (arm_col == column).astype(np.float64),
                choosable[version_row, column],
                {"arm_id": arm_id},
            )
        )
    return log, targets, int((~known).sum())
