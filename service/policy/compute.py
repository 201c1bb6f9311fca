"""Turn an experiment's statistics into a policy snapshot payload (no I/O here).

The payload is everything /choose needs (the arms' content, the allocation per segment)
plus the figures behind it (posteriors, probability best, expected loss) for the report
and for charts of allocation over time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from bandits import PolicyConfig, allocate
from service.policy.inputs import EXPOSURE, ArmInfo, ExperimentInfo, StatRow

OVERALL = ""
MAX_SEGMENTS = 50
SERVED_STATUSES = ("live", "suspended")


def fallback_arm(arms: Sequence[ArmInfo]) -> ArmInfo | None:
    """The control arm, else the first arm: what a send gets when nothing can be decided."""
    for arm in arms:
        if arm.control:
            return arm
    return arms[0] if arms else None


def segment_counts(
    stats: Sequence[StatRow], metrics: Sequence[str], arm_ids: Sequence[int]
) -> dict[str, dict[str, np.ndarray]]:
    """Raw counts per segment and metric as arrays aligned with ``arm_ids``."""
    index = {arm_id: i for i, arm_id in enumerate(arm_ids)}
    wanted = set(metrics)
    out: dict[str, dict[str, np.ndarray]] = defaultdict(
        lambda: {m: np.zeros(len(arm_ids)) for m in metrics}
    )
    for row in stats:
        i = index.get(row.arm_id)
        if i is None or row.metric not in wanted:
            continue
        out[row.segment][row.metric][i] += row.count
        out[OVERALL][row.metric][i] += row.count if row.segment != OVERALL else 0
    return dict(out)


def compute_snapshot(
    experiment: ExperimentInfo,
    arms: Sequence[ArmInfo],
    stats: Sequence[StatRow],
    *,
    now: datetime,
    rng: np.random.Generator,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    served = [arm for arm in arms if arm.status in SERVED_STATUSES]
    fallback = fallback_arm(arms)
    payload: dict[str, Any] = {
        "computed_at": now.isoformat(),
        "experiment": {
            "key": experiment.key,
            "status": experiment.status,
            "epoch": experiment.epoch,
            "segment_attribute": experiment.segment_attribute,
            "exposure_event": experiment.exposure_event,
            "success_metric": experiment.success_metric,
        },
        # Every arm's content, not only the served ones: a keyed decision read back after
        # its arm was retired must still answer with the text it was given.
        "arms": [
            {"id": a.id, "content": a.content, "payload": a.payload, "control": a.control}
            for a in arms
        ],
        "arm_ids": [a.id for a in served],
        "fallback_arm_id": fallback.id if fallback else None,
        "segments": {},
    }
    live = np.array([a.status == "live" for a in served], dtype=bool)
    if experiment.status != "running" or not live.any():
        return payload

    arm_ids = [a.id for a in served]
    metric = experiment.success_metric
    counts = segment_counts(stats, [EXPOSURE, metric], arm_ids)
    counts.setdefault(OVERALL, {EXPOSURE: np.zeros(len(arm_ids)), metric: np.zeros(len(arm_ids))})
    config = PolicyConfig(
        exploration_share=experiment.exploration_share,
        min_exposures=experiment.min_exposures,
        min_successes=experiment.min_successes,
    )
    segments = [OVERALL]
    if experiment.segment_attribute:
        named = sorted(
            (s for s in counts if s != OVERALL),
            key=lambda s: -float(counts[s][EXPOSURE].sum()),
        )
        segments += named[:MAX_SEGMENTS]
    for segment in segments:
        exposures = counts[segment][EXPOSURE]
        successes = np.minimum(counts[segment][metric], exposures)
        result = allocate(
            successes=successes, exposures=exposures, config=config, rng=rng, suspended=~live
        )
        payload["segments"][segment] = {
            "exposures": exposures.tolist(),
            "successes": successes.tolist(),
            "allocation": result.allocation.tolist(),
            "exploit": result.exploit.tolist(),
            "eligible": result.eligible.tolist(),
            "exploration_share": result.exploration_share,
            "probability_best": result.probability_best.tolist(),
            "expected_loss": result.expected_loss.tolist(),
            "posterior_mean": result.posterior_mean.tolist(),
            "ci_low": result.ci_low.tolist(),
            "ci_high": result.ci_high.tolist(),
            "warming_up": result.warming_up.tolist(),
        }
    return payload
