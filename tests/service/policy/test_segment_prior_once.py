"""A segment's prior is built from the other segments' evidence before the delay model's
doubt shrinks it, and then shrunk once, with the segment's own counts.

On main the segment priors were built from the counts already shrunk by the policy's
certainty (``CorrectedEvidence.successes``/``exposures``), and the prior so built was then
tempered again with the segment's own counts (``CorrectedEvidence.tempered``): half an hour
into an email-like send the other segments' clicks reached a small segment's prior at a
fraction of their number, and a second time at that fraction again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bandits import pooling
from service.core.vocabulary import EXPOSURE
from service.policy import compute
from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.inputs import ArmInfo, StatRow, SuccessDelay
from tests.service.policy.factories import experiment_info

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
# (segment, exposures per arm, clicks per arm): two large segments and a small one. Arm 1
# was sent six hours ago, arm 2 (added later) six minutes ago, so the delay model's doubt
# differs between the arms and the policy's certainty is far below 1.
SEGMENTS = (("de", 2000, (40, 31)), ("fr", 2000, (42, 29)), ("be", 40, (1, 1)))
AGES = (6.0, 0.1)


ARMS = (ArmInfo(1, "a", None, True, "live"), ArmInfo(2, "b", None, False, "live"))


def young_inputs() -> PolicyInputs:
    info = experiment_info()
    arms = list(ARMS)
    stats, delays = [], []
    rng = np.random.default_rng(5)
    for segment, exposures, clicks in SEGMENTS:
        for arm_id, count, age in zip((1, 2), clicks, AGES, strict=True):
            hour = NOW - timedelta(hours=int(np.ceil(age)))
            offset = (NOW - hour).total_seconds() / 3600.0 - age
            stats.append(StatRow(segment, arm_id, hour, EXPOSURE, exposures, offset, 0.0))
            stats.append(StatRow(segment, arm_id, hour, "click", count))
            # Log-normal delays (median 1 h), as read at the cohort's age.
            for _ in range(count):
                delay = float(np.exp(rng.normal(0.0, 1.0)))
                while delay > age:
                    delay = float(np.exp(rng.normal(0.0, 1.0)))
                delays.append(SuccessDelay(delay, age))
    return PolicyInputs(info, arms, stats, tuple(delays))


def test_segment_priors_read_the_counts_before_the_shrink_and_shrink_them_once(
    monkeypatch: Any,
):
    """Arm 2 sent six minutes ago, arm 1 six hours ago. On main the other segments' 31 and
    29 clicks of arm 2 reached the small segment's prior as 0.05 and 0.04 (shrunk by the
    policy's certainty), whose smoothed mean then read 34% where those segments show 12%,
    and the small segment's arm 2 (1 click in 40 sends) read 56% (9% to 96%)."""
    seen: list[tuple[np.ndarray, ...]] = []
    original = pooling.segment_priors

    def spy(successes: Any, exposures: Any, **kwargs: Any) -> Any:
        alpha, beta = original(successes, exposures, **kwargs)
        seen.append((np.array(successes, dtype=float), np.array(exposures, dtype=float)))
        seen[-1] += (alpha, beta, np.asarray(kwargs.get("evidence", exposures), dtype=float))
        return alpha, beta

    monkeypatch.setattr(compute, "segment_priors", spy)
    snapshot = compute_snapshot(young_inputs(), now=NOW, rng=np.random.default_rng(0))
    assert len(seen) == 1
    successes, exposures, alpha, beta, worth = seen[0]
    # Rows: de, fr, be (the largest first, then by name), then other traffic (none here).
    clicks = np.array([c for _, _, c in SEGMENTS] + [(0, 0)], dtype=float)
    np.testing.assert_allclose(successes, clicks)
    # The effective exposures are each row's exposures at its maturity, unshrunk.
    for i, (name, n, _) in enumerate(SEGMENTS):
        maturity = np.asarray(snapshot.segments[name].maturity)
        np.testing.assert_allclose(exposures[i], np.maximum(n * maturity, clicks[i]), rtol=2e-3)
    # Each prior is centred on the other segments' corrected rate of the arm ...
    for i in range(len(SEGMENTS)):
        others = np.arange(len(SEGMENTS)) != i
        rate = clicks[:3][others].sum(axis=0) / exposures[:3][others].sum(axis=0)
        np.testing.assert_allclose(alpha[i] / (alpha[i] + beta[i]), rate, rtol=0.1)
        # ... and weighs no more than their evidence after the delay model's doubt.
        weight = np.maximum(worth[:3][others].sum(axis=0), 2.0)
        assert np.all(alpha[i] + beta[i] <= weight + 1e-9), (alpha[i] + beta[i], weight)
    assert np.all(worth <= exposures + 1e-9), worth
    assert worth[0, 1] < 0.5 * exposures[0, 1], worth
    # The small segment's arm 2 stays below its main-branch 56%, its interval covers the
    # rate the other segments show, and it is no narrower than all traffic's.
    be, overall = snapshot.segments["be"], snapshot.overall
    assert overall is not None
    assert be.posterior_mean[1] < 0.5, be.posterior_mean
    low, high = be.policy_interval()
    all_low, all_high = overall.policy_interval()
    assert low[1] <= 0.125 <= high[1], (low, high)
    assert high[1] - low[1] >= all_high[1] - all_low[1], (low, high, all_low, all_high)
