"""How young decisions count in the evaluation: the policy's delay CDF, and how to redraw it.

The policy discounts a decision of age a to F(a) of an exposure, with F from the snapshot
(``payload["delay"]``). The evaluation applies the same F, so its figures and the policy's
posteriors agree on what a young decision is worth. The bootstrap also needs F's own error:
it re-estimates F from each resample's successes with the policy's estimator
(``bandits.delay.estimate_delay_cdf``) and moves the snapshot's F by the ratio to the estimate
on every success, at a few dozen age nodes (F is smooth in age; the nodes are log-spaced so
seconds-old decisions get as fine a node as day-old ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from bandits.delay import DelayCDF, estimate_delay_cdf
from service.evaluation.estimates import DelayCorrection
from service.repositories.evaluation import LoggedDecisions

FloatArray = npt.NDArray[np.float64]

AGE_NODES = 40
SMALLEST_NODE_HOURS = 1.0 / 3600.0


def snapshot_cdf(payload: Mapping[str, Any] | None, window_hours: float) -> DelayCDF | None:
    """The delay CDF the snapshot's policy used, if the snapshot carries it for this window."""
    delay = (payload or {}).get("delay") or {}
    try:
        if not np.isclose(float(delay["window_hours"]), window_hours):
            return None  # another epoch's window: not this evaluation's correction
        return DelayCDF(
            float(window_hours),
            np.asarray(delay["edges_hours"], dtype=np.float64),
            np.asarray(delay["values"], dtype=np.float64),
            float(delay.get("observations", 0.0)),
            float(delay.get("prior_weight", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        return None  # an older snapshot without the curve: the log's own estimate stands in


def _estimate(
    delays: FloatArray, ages: FloatArray, window_hours: float, weights: FloatArray | None
) -> DelayCDF:
    return estimate_delay_cdf(delays, ages, window_hours, weights=weights)


def age_nodes(window_hours: float) -> FloatArray:
    return np.geomspace(SMALLEST_NODE_HOURS, window_hours, AGE_NODES)


def nearest_node(ages: FloatArray, nodes: FloatArray) -> npt.NDArray[np.int64]:
    """The node nearest each age on a log scale (ages at or past the window: the last)."""
    log_nodes = np.log(nodes)
    midpoints = (log_nodes[1:] + log_nodes[:-1]) / 2.0
    safe = np.log(np.clip(ages, nodes[0], nodes[-1]))
    return np.searchsorted(midpoints, safe, side="left").astype(np.int64)


def delay_correction(
    decisions: LoggedDecisions,
    *,
    window_hours: float,
    policy_cdf: DelayCDF | None,
) -> tuple[DelayCorrection, dict[str, Any]]:
    """The correction for this log, and what to say about it in the result.

    Without the snapshot's F (an older snapshot), F is estimated from the log's own successes
    with the same estimator; the result says which was used.
    """
    ages = np.asarray(decisions.age_hours, dtype=np.float64)
    won = np.asarray(decisions.success, dtype=bool)
    delay_column = np.asarray(decisions.delay_hours, dtype=np.float64)
    success_ages = ages[won]
    success_delays = np.minimum(delay_column[won], success_ages)
    log_cdf = _estimate(success_delays, success_ages, window_hours, None)
    cdf = policy_cdf or log_cdf
    nodes = age_nodes(window_hours)
    base = log_cdf(nodes)
    safe_base = np.where(base > 0.0, base, 1.0)

    def redraw(weights: FloatArray) -> FloatArray:
        if success_ages.size == 0:
            return np.ones(nodes.size)
        moved = _estimate(success_delays, success_ages, window_hours, weights)(nodes)
        return np.asarray(np.where(base > 0.0, moved / safe_base, 1.0), dtype=np.float64)

    exposure = np.where(ages >= window_hours, 1.0, cdf(np.minimum(ages, window_hours)))
    correction = DelayCorrection(
        exposure=np.asarray(exposure, dtype=np.float64),
        node=nearest_node(ages, nodes),
        redraw=redraw,
    )
    info = {
        "source": "snapshot" if policy_cdf is not None else "log",
        "median_hours": cdf.median_hours(),
        "observations": cdf.observations,
    }
    return correction, info
