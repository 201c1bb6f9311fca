"""The policy's drift step: which of each arm's hourly buckets still count, and how much.

Detection runs per arm on delay-discounted exposures (``bandits.drift.detect_change``); an arm
with a detected change forgets its buckets before it, and every arm's evidence older than the
latest detected change is bounded (``bandits.drift.stale_evidence_weights``). Gates (minimum
samples, eligibility) keep reading raw counts, so they do not flap.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from bandits.drift import detect_change, stale_evidence_weights
from service.core.vocabulary import EXPOSURE
from service.policy.cohorts import Cohorts

FloatArray = NDArray[np.float64]

# What an arm's evidence from before the latest detected change still counts for, as a share of
# the minimum sample: a prior of this many exposures at the arm's old rate.
STALE_RETAIN_SHARE = 0.2


def drift_weights(
    cohorts: Cohorts, metric: str, min_exposures: int, discount: FloatArray
) -> tuple[FloatArray, list[int | None]]:
    """(K, H) bucket weights, and per arm the index of its detected change (None if none).

    Forgetting is what lets the default settings follow a sudden change without giving up
    the statistical power of stationary traffic. Detection runs on delay-discounted
    exposures: on raw ones, the newest cohorts (whose successes have not arrived yet) look
    like a drop in rate, and the detector kept forgetting the leader's evidence.
    """
    exposures = cohorts.overall(EXPOSURE) * discount[None]
    successes = np.minimum(cohorts.overall(metric), exposures)
    changes: list[int | None] = []
    for k in range(exposures.shape[0]):
        change = None
        if exposures[k].sum() >= 2 * min_exposures:
            change = detect_change(
                successes[k], exposures[k], min_exposures_each_side=min_exposures
            )
        changes.append(change.index if change is not None else None)
    weights = stale_evidence_weights(
        exposures, changes, retain_exposures=STALE_RETAIN_SHARE * min_exposures
    )
    return weights, changes
