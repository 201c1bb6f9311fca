"""A best-arm swap through the policy: when the leader's drop is detected, the other arms'
older evidence is bounded, so an arm that rose while seen only through exploration is
credited with its new rate (issue 10, round 6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from service.core.vocabulary import EXPOSURE, OVERALL
from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.inputs import ArmInfo, StatRow
from tests.service.policy.factories import experiment_info

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
SWAP_HOURS_AGO = 24
# (exposures per hour, rate before, rate after) for arms 1-4: arm 4 led at 4% and fell to
# 1.8%; arm 2 rose from 2.5% to 4.5% on the exploration share's few exposures.
ARMS = {1: (10, 0.02, 0.02), 2: (10, 0.025, 0.045), 3: (20, 0.03, 0.03), 4: (200, 0.04, 0.018)}


def _inputs() -> PolicyInputs:
    info = experiment_info(
        key="swap", attribution_window_hours=24.0, min_exposures=500, segment_attribute=None
    )
    arms = [ArmInfo(k, f"arm {k}", None, k == 1, "live") for k in ARMS]
    stats = []
    # Whole-number clicks per hour for a rate over many hours: spread the fractions.
    carried = dict.fromkeys(ARMS, 0.0)
    for hours_ago in range(96, 0, -1):
        hour = NOW - timedelta(hours=hours_ago + 24)  # every cohort past the window
        for k, (n, before, after) in ARMS.items():
            rate = before if hours_ago > SWAP_HOURS_AGO else after
            carried[k] += n * rate
            clicks = int(carried[k])
            carried[k] -= clicks
            stats.append(StatRow(OVERALL, k, hour, EXPOSURE, n, 0.5))
            stats.append(StatRow(OVERALL, k, hour, "click", clicks))
    return PolicyInputs(info, arms, stats)


def test_a_risen_arm_is_credited_once_the_leaders_drop_is_detected() -> None:
    snapshot = compute_snapshot(_inputs(), now=NOW, rng=np.random.default_rng(0))
    overall = snapshot.overall
    assert overall is not None
    # The leader's drop is found at the swap (within a few hours), the risen arm's is not:
    # 240 exposures after it are too few to show it by itself.
    assert set(snapshot.changes) == {4}
    swap = NOW - timedelta(hours=SWAP_HOURS_AGO + 24)
    assert abs((snapshot.changes[4] - swap).total_seconds()) <= 4 * 3600
    mean = dict(zip(snapshot.arm_ids, overall.posterior_mean, strict=True))
    # Arm 2's 72 hours at 2.5% count as a bounded prior: its posterior follows its 24 hours
    # at 4.5% and it leads. With all its evidence weighed alike it read about 3.0%, tied with
    # arm 3, and the fallen leader's drop did nothing for it.
    assert mean[2] > 0.036
    assert mean[2] == max(mean.values())
    exploit = dict(zip(snapshot.arm_ids, overall.exploit, strict=True))
    assert exploit[2] == max(exploit.values())
    # Gates stay on raw counts: every arm keeps its whole sample.
    assert overall.exposures == tuple(float(n * 96) for n, _, _ in ARMS.values())
