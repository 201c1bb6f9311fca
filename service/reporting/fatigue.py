"""Fatigue of live arms: does an arm's rate fall as the same units see it again, or week
over week, and is that a trend (wear-out) or a sudden change? The math is in
`bandits.fatigue`; this reads the evidence.

Only matured evidence counts (decisions and hours older than the attribution window):
repeat exposures are the later decisions, and counting their still-arriving successes as
failures would manufacture fatigue out of delay.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlmodel import Session

from bandits.fatigue import Slope, TimePattern, slope, time_pattern
from service.core.sessions import now as now_of
from service.core.vocabulary import EXPOSURE, ArmStatus, success_metric
from service.experiments import repository as experiments_repo
from service.measuring import stats_repository as stats_repo
from service.models import Experiment, as_utc
from service.reporting import value_repository as decisions_read

MAX_REPEATS = 4  # exposure groups 0, 1, 2, 3 and "4 or more"
MAX_DECISIONS = 200_000
WEEK_HOURS = 24 * 7


def experiment_fatigue(
    session: Session,
    experiment: Experiment,
    *,
    now: datetime | None = None,
    segment: str | None = None,
) -> list[dict[str, Any]]:
    """Per live arm: the slope by repeat exposure of the same units, the weekly pattern
    (of one segment when given), and whether the arm fatigues, with the evidence."""
    assert experiment.id is not None
    now = now or now_of(session)
    matured = now - timedelta(hours=experiment.attribution_window_hours)
    metric = success_metric(experiment.primary_metric, experiment.conversion_name)
    live = [
        arm
        for arm in experiments_repo.arms(
            session, experiment_id=experiment.id, statuses=[ArmStatus.LIVE]
        )
        if arm.id is not None
    ]
    repeats = _by_repeat(session, experiment, metric, matured, now)
    weeks = _by_week(session, experiment, metric, matured, segment)
    result = []
    for arm in live:
        assert arm.id is not None
        n, s = repeats.get(arm.id, (np.zeros(MAX_REPEATS + 1), np.zeros(MAX_REPEATS + 1)))
        by_exposure = slope(s, n)
        wn, ws = weeks.get(arm.id, (np.zeros(0), np.zeros(0)))
        by_week = time_pattern(ws, wn) if wn.size else None
        result.append(_verdict(arm.id, arm.content, n, s, by_exposure, wn, ws, by_week))
    return result


def fatigued_arms(
    session: Session, experiment: Experiment, *, now: datetime
) -> list[dict[str, Any]]:
    """The live arms that fatigue, with their evidence (what the loop cites)."""
    return [item for item in experiment_fatigue(session, experiment, now=now) if item["fatigued"]]


def _by_repeat(
    session: Session, experiment: Experiment, metric: str, matured: datetime, now: datetime
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    assert experiment.id is not None
    rows = decisions_read.keyed_exposures(
        session,
        experiment_id=experiment.id,
        epoch=experiment.epoch,
        metric=metric,
        made_before=matured,
        now=now,
        limit=MAX_DECISIONS,
    )
    seen: dict[tuple[str, int], int] = defaultdict(int)
    counts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for row in rows:  # oldest first: the count so far is the unit's earlier exposures
        k = min(seen[(row.unit_hash, row.arm_id)], MAX_REPEATS)
        seen[(row.unit_hash, row.arm_id)] += 1
        n, s = counts.setdefault(row.arm_id, (np.zeros(MAX_REPEATS + 1), np.zeros(MAX_REPEATS + 1)))
        n[k] += 1
        s[k] += row.success
    return counts


def _by_week(
    session: Session, experiment: Experiment, metric: str, matured: datetime, segment: str | None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    assert experiment.id is not None
    rows = [
        row
        for row in stats_repo.rows_for(
            session, experiment_id=experiment.id, epoch=experiment.epoch, metrics=[EXPOSURE, metric]
        )
        if as_utc(row.hour) < matured and (segment is None or row.segment == segment)
    ]
    if not rows:
        return {}
    start = min(as_utc(row.hour) for row in rows)
    span = int((matured - start).total_seconds() // 3600 // WEEK_HOURS) + 1
    counts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for row in rows:
        week = int((as_utc(row.hour) - start).total_seconds() // 3600 // WEEK_HOURS)
        n, s = counts.setdefault(row.arm_id, (np.zeros(span), np.zeros(span)))
        (n if row.metric == EXPOSURE else s)[min(week, span - 1)] += row.count
    return {arm: (n, np.minimum(s, n)) for arm, (n, s) in counts.items()}


def _verdict(
    arm_id: int,
    content: str,
    n: np.ndarray,
    s: np.ndarray,
    by_exposure: Slope | None,
    wn: np.ndarray,
    ws: np.ndarray,
    by_week: TimePattern | None,
) -> dict[str, Any]:
    reasons = []
    if by_exposure is not None and by_exposure.falls:
        reasons.append(
            f"its rate falls with repeat exposure of the same units: {by_exposure.slope:+.3f} "
            f"log-odds per repeat (95% {by_exposure.ci_low:+.3f} to {by_exposure.ci_high:+.3f})"
        )
    if by_week is not None and by_week.kind == "trend" and by_week.trend.falls:
        reasons.append(
            f"its rate falls week over week: {by_week.trend.slope:+.3f} log-odds a week "
            f"(95% {by_week.trend.ci_low:+.3f} to {by_week.trend.ci_high:+.3f}), a trend, "
            "not a sudden change"
        )
    return {
        "arm_id": arm_id,
        "content": content,
        "fatigued": bool(reasons),
        "evidence": "; ".join(reasons) or None,
        "by_exposure": {
            "exposures": n.astype(int).tolist(),
            "successes": s.astype(int).tolist(),
            **_slope_json(by_exposure),
        },
        "by_week": {
            "exposures": wn.astype(int).tolist(),
            "successes": ws.astype(int).tolist(),
            "pattern": by_week.kind if by_week else None,
            "change_at_week": by_week.change_at if by_week and by_week.kind == "change" else None,
            **_slope_json(by_week.trend if by_week else None),
        },
    }


def _slope_json(value: Slope | None) -> dict[str, Any]:
    if value is None:
        return {"slope": None, "interval": None}
    return {"slope": value.slope, "interval": [value.ci_low, value.ci_high]}
