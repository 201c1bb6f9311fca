"""The loop's own value: what the served policy earned over the holdout (per experiment,
and per library by month), and the best live arm's estimated rate by loop generation.

Only matured decisions count (older than the attribution window), so a success that is
still to come is never counted as a failure in one group more than in the other; the groups
are randomised by a hash of the unit, so the comparison needs nothing else. The lift's
interval is clustered by unit (`bandits.holdout`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session

from bandits.holdout import HoldoutLift, holdout_lift
from service.core.sessions import now as now_of
from service.core.vocabulary import success_metric
from service.libraries import service as library_domain
from service.loop import repository as loop_repo
from service.models import Experiment, Library, as_utc
from service.policy import repository as snapshots_repo
from service.policy.snapshot import Snapshot
from service.reporting import value_repository as holdout_repo
from service.reporting.value_repository import KeyedOutcome

LEVEL = 0.95
MAX_GENERATIONS = 500


def _outcomes(session: Session, experiment: Experiment, now: datetime) -> list[KeyedOutcome]:
    assert experiment.id is not None
    return holdout_repo.keyed_outcomes(
        session,
        experiment_id=experiment.id,
        epoch=experiment.epoch,
        metric=success_metric(experiment.primary_metric, experiment.conversion_name),
        made_before=now - timedelta(hours=experiment.attribution_window_hours),
        now=now,
    )


def lift_of(outcomes: Iterable[KeyedOutcome], *, level: float = LEVEL) -> HoldoutLift | None:
    """Per-unit sums in each group, then the clustered lift; None without two units each."""
    sums: dict[tuple[bool, str], list[int]] = defaultdict(lambda: [0, 0])
    for item in outcomes:
        entry = sums[(item.holdout, item.unit_hash)]
        entry[0] += 1
        entry[1] += int(item.success)
    groups = {flag: [v for (h, _u), v in sums.items() if h == flag] for flag in (False, True)}
    if not groups[False] or not groups[True]:
        return None
    served = np.array(groups[False], dtype=np.float64)
    held = np.array(groups[True], dtype=np.float64)
    return holdout_lift(served[:, 1], served[:, 0], held[:, 1], held[:, 0], level=level)


def lift_json(lift: HoldoutLift | None, *, note: str) -> dict[str, Any]:
    if lift is None:
        return {"available": False, "note": note}
    return {
        "available": True,
        "served": _group(lift.served),
        "holdout": _group(lift.holdout),
        "lift": lift.lift,
        "interval": [lift.ci_low, lift.ci_high],
        "relative_lift": lift.relative_lift,
        "gained": lift.gained,
        "gained_interval": [lift.gained_low, lift.gained_high],
        "level": lift.level,
    }


def _group(group: Any) -> dict[str, Any]:
    return {
        "units": group.units,
        "decisions": group.decisions,
        "successes": group.successes,
        "rate": group.rate,
        "std_error": None if np.isnan(group.std_error) else group.std_error,
    }


NO_HOLDOUT = (
    "no lift yet: it needs matured keyed decisions (older than the attribution window) from "
    "at least two units held out and two served; set holdout_share to hold units out"
)


def experiment_value(
    session: Session, experiment: Experiment, *, now: datetime | None = None
) -> dict[str, Any]:
    """The loop's value for one experiment: the lift over the holdout and the best live
    arm's estimated rate by loop generation."""
    now = now or now_of(session)
    outcomes = _outcomes(session, experiment, now)
    return {
        "experiment": experiment.key,
        "holdout_share": experiment.holdout_share,
        "holdout": lift_json(lift_of(outcomes), note=NO_HOLDOUT),
        "generations": best_by_generation(session, experiment),
    }


def report_holdout(
    session: Session, experiment: Experiment, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """The report's holdout block: the served policy's lift over the holdout with its
    interval, the successes gained and the groups' sizes; None without a holdout."""
    if not experiment.holdout_share:
        return None
    now = now or now_of(session)
    lift = lift_of(_outcomes(session, experiment, now))
    return {"share": experiment.holdout_share, **lift_json(lift, note=NO_HOLDOUT)}


def library_value(
    session: Session, library: Library, *, now: datetime | None = None
) -> dict[str, Any]:
    """Per calendar month (UTC, by decision time): the lift over the holdout and the
    successes gained, pooled over the library's experiments (each unit's decisions summed
    within its experiment: a unit's group is the same in all of them)."""
    now = now or now_of(session)
    by_month: dict[str, list[KeyedOutcome]] = defaultdict(list)
    for experiment in library_domain.experiments_of(session, library):
        for item in _outcomes(session, experiment, now):
            by_month[item.created_at.strftime("%Y-%m")].append(
                KeyedOutcome(
                    f"{experiment.id}:{item.unit_hash}", item.holdout, item.created_at, item.success
                )
            )
    months = [
        {"month": month, **lift_json(lift_of(items), note=NO_HOLDOUT)}
        for month, items in sorted(by_month.items())
    ]
    return {"library": library.name, "months": months}


def best_by_generation(session: Session, experiment: Experiment) -> list[dict[str, Any]]:
    """For each loop run (a generation), the best live arm's estimated (delay-corrected)
    rate in the newest snapshot before it: whether the loop compounds."""
    assert experiment.id is not None
    runs = sorted(
        loop_repo.runs(session, experiment_id=experiment.id, limit=MAX_GENERATIONS),
        key=lambda run: run.id or 0,
    )
    history = sorted(
        snapshots_repo.history(session, experiment_id=experiment.id),
        key=lambda row: as_utc(row.created_at),
    )
    result: list[dict[str, Any]] = []
    for generation, run in enumerate(runs, start=1):
        started = as_utc(run.started_at)
        before = [row for row in history if as_utc(row.created_at) <= started]
        best = _best_live(before[-1].payload) if before else None
        result.append(
            {
                "generation": generation,
                "loop_run_id": run.id,
                "at": started,
                "best_arm_id": best[0] if best else None,
                "best_estimated_rate": best[1] if best else None,
            }
        )
    return result


def _best_live(payload: dict[str, Any]) -> tuple[int, float] | None:
    try:
        snapshot = Snapshot.from_json(payload)
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    overall = snapshot.overall
    if overall is None:
        return None
    candidates: Sequence[tuple[int, float]] = [
        (arm_id, overall.posterior_mean[i])
        for i, arm_id in enumerate(snapshot.arm_ids)
        if overall.eligible[i]
    ]
    return max(candidates, key=lambda item: item[1]) if candidates else None
