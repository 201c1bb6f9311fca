"""With a half-life set, a bucket's evidence decays by the mean weight of its decisions' ages
(their mean and spread, as F of a cohort is: ``bandits.cohort_ages``), not by the weight of
its mean age: the weight is convex in age, so the mean age under-states a spread-out bucket's
weight. Main weighed two sends of one hour, at 10:00 and 10:58, read at 12:00 with a
half-life of 15 minutes, as 1.5% of their exposures; their decisions' weights average 3.0%."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from service.core.vocabulary import EXPOSURE
from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.inputs import StatRow
from tests.service.policy.factories import experiment_info
from tests.service.policy.test_segment_prior_once import ARMS

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
HALF_LIFE = 0.25
# Two equal sends in the 10:00 bucket, at 10:00 and at 10:58: their offsets' mean and spread.
OFFSET = SPREAD = 58 / 60 / 2


def test_a_spread_out_bucket_decays_by_its_decisions_mean_weight():
    info = experiment_info(
        attribution_window_hours=1.0,  # both sends matured by noon: F = 1
        segment_attribute=None,
        half_life_hours=HALF_LIFE,
    )
    arms = list(ARMS)
    hour = NOW.replace(hour=10)
    stats = []
    for arm_id, clicks in ((1, 40), (2, 60)):
        stats.append(StatRow("", arm_id, hour, EXPOSURE, 2000, OFFSET, SPREAD))
        stats.append(StatRow("", arm_id, hour, "click", clicks))
    snapshot = compute_snapshot(
        PolicyInputs(info, arms, stats), now=NOW, rng=np.random.default_rng(0)
    )
    overall = snapshot.overall
    assert overall is not None
    ages = np.array([2.0, 2.0 - 58 / 60])
    weight = float(np.mean(0.5 ** (ages / HALF_LIFE)))
    assert weight == pytest.approx(0.0304, abs=1e-4)
    np.testing.assert_allclose(overall.effective_exposures, [2000 * weight] * 2, rtol=1e-3)
    np.testing.assert_allclose(overall.effective_successes, [40 * weight, 60 * weight], rtol=1e-3)
