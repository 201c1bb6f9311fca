"""The typed policy snapshot: what compute_snapshot produces survives storage as JSON, and
snapshots stored before later figures existed still load."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from service.core.vocabulary import EXPOSURE, OVERALL
from service.policy.compute import PolicyInputs, compute_snapshot
from service.policy.inputs import ArmInfo, ExperimentInfo, StatRow
from service.policy.loaded import load_policy
from service.policy.snapshot import Snapshot
from tests.service.policy.factories import experiment_info

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def _inputs(**overrides: Any) -> PolicyInputs:
    info = experiment_info(attribution_window_hours=24.0, guardrails=(("unsubscribe", 0.25),))
    arms = [ArmInfo(1, "a", None, True, "live"), ArmInfo(2, "b", {"x": 1}, False, "live")]
    stats = []
    for hours_ago in range(1, 48):
        hour = NOW - timedelta(hours=hours_ago)
        for segment in ("fr", "de"):
            for arm_id, rate in ((1, 0.05), (2, 0.08)):
                stats.append(StatRow(segment, arm_id, hour, EXPOSURE, 100, 0.5))
                stats.append(StatRow(segment, arm_id, hour, "click", int(100 * rate)))
                stats.append(StatRow(segment, arm_id, hour, "unsubscribe", 1))
    return PolicyInputs(info, arms, stats, **overrides)


def test_a_computed_snapshot_round_trips_through_stored_json():
    snapshot = compute_snapshot(_inputs(), now=NOW, rng=np.random.default_rng(0))
    stored = json.loads(json.dumps(snapshot.to_json()))
    assert Snapshot.from_json(stored) == snapshot
    assert set(snapshot.segments) == {OVERALL, "fr", "de"}
    overall = snapshot.overall
    assert overall is not None
    assert overall.exposures == (9400.0, 9400.0)
    assert overall.prior is not None
    assert snapshot.segments["fr"].prior is None
    assert sum(overall.allocation) == pytest.approx(1.0)
    assert snapshot.guardrails is not None
    assert snapshot.guardrails.looks == 1
    assert set(snapshot.retirement or {}) == {1, 2}
    # The stored form keeps its keys: a segment's figures as lists, arm ids as strings.
    assert stored["segments"][OVERALL]["exposures"] == [9400.0, 9400.0]
    assert set(stored["retirement"]) == {"1", "2"}


def test_the_previous_snapshot_feeds_the_next_one():
    first = compute_snapshot(_inputs(), now=NOW, rng=np.random.default_rng(0))
    later = NOW + timedelta(hours=1)
    second = compute_snapshot(_inputs(previous=first), now=later, rng=np.random.default_rng(1))
    assert second.guardrails is not None
    assert second.guardrails.looks == 2


def test_a_snapshot_stored_before_the_delay_model_still_loads():
    old = {
        "computed_at": NOW.isoformat(),
        "experiment": {"key": "subject", "status": "running", "epoch": 1},
        "arms": [{"id": 1, "content": "a", "control": True}, {"id": 2, "content": "b"}],
        "arm_ids": [1, 2],
        "segments": {
            OVERALL: {
                "exposures": [10, 20],
                "successes": [1, 2],
                "allocation": [0.5, 0.5],
                "exploit": [0.5, 0.5],
                "eligible": [True, True],
                "exploration_share": 0.1,
                "probability_best": [0.4, 0.6],
                "expected_loss": [0.01, 0.0],
                "posterior_mean": [0.1, 0.1],
                "ci_low": [0.0, 0.0],
                "ci_high": [0.3, 0.3],
            }
        },
    }
    snapshot = Snapshot.from_json(old)
    overall = snapshot.overall
    assert overall is not None
    assert overall.maturity is None
    assert overall.observed_rate is None
    assert overall.warming_up == (False, False)
    assert snapshot.fallback_arm_id is None
    assert snapshot.guardrails is None
    policy = load_policy(1, 3, snapshot)
    assert policy.servable
    assert [a.id for a in policy.arms] == [1, 2]
    assert policy.counts_exposure_at_decision


def test_a_stopped_experiment_has_no_segments_and_serves_nothing():
    inputs = _inputs()
    paused = PolicyInputs(
        ExperimentInfo(**{**inputs.experiment.__dict__, "status": "paused"}),
        inputs.arms,
        inputs.stats,
    )
    snapshot = compute_snapshot(paused, now=NOW, rng=np.random.default_rng(0))
    assert snapshot.segments == {}
    assert snapshot.overall is None
    assert snapshot.fallback_arm_id == 1
    assert not load_policy(1, 1, Snapshot.from_json(snapshot.to_json())).servable
