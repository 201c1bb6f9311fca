"""The estimators behind the evaluation, without a database: exact agreement with
``bandits.offpolicy`` and interval coverage over repeated seeds on adaptively logged data."""

from __future__ import annotations

import numpy as np
import pytest

from bandits.offpolicy import ips, lift_over_even_split, snips
from service.reporting.evaluation import EvaluationLog, Target, evaluate_log
from service.reporting.evaluation.estimates import resampled_sums

RATES = np.array([0.04, 0.08, 0.12, 0.16])


def thompson_log(
    rng: np.random.Generator, n: int, batch: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arms, propensities and rewards from batched Thompson sampling with a 10% floor.

    Adaptive logging: each batch's allocation depends on the rewards before it, which is what
    makes naive intervals too narrow and what the bootstrap has to cope with.
    """
    k = RATES.size
    successes, exposures = np.zeros(k), np.zeros(k)
    arms, propensities, rewards = [], [], []
    for _ in range(n // batch):
        draws = rng.beta(1 + successes, 1 + exposures - successes, size=(400, k))
        best = np.bincount(draws.argmax(axis=1), minlength=k) / 400
        allocation = 0.1 / k + 0.9 * best
        picked = rng.choice(k, size=batch, p=allocation)
        won = rng.random(batch) < RATES[picked]
        np.add.at(exposures, picked, 1)
        np.add.at(successes, picked, won)
        arms.append(picked)
        propensities.append(allocation[picked])
        rewards.append(won.astype(float))
    return np.concatenate(arms), np.concatenate(propensities), np.concatenate(rewards)


def test_point_values_match_bandits_offpolicy():
    rng = np.random.default_rng(1)
    arms, p, r = thompson_log(rng, 3000)
    target = np.array([0.1, 0.2, 0.3, 0.4])
    log = EvaluationLog(r, p, np.full(r.size, 0.25), np.ones(r.size))
    result = evaluate_log(
        log,
        [Target("current", target[arms], np.ones(r.size, dtype=bool), {})],
        rng=rng,
    )
    lift = lift_over_even_split(r, p, 0.25, np.random.default_rng(0), 10)
    assert result["lift"]["policy"]["value"] == pytest.approx(lift.policy.value, rel=1e-12)
    assert result["lift"]["uniform"]["value"] == pytest.approx(lift.uniform.value, rel=1e-12)
    assert result["lift"]["difference"]["value"] == pytest.approx(lift.difference.value, rel=1e-9)
    current = result["off_policy"]["current"]
    assert current["ips"]["value"] == pytest.approx(ips(r, p, target[arms]), rel=1e-12)
    assert current["snips"]["value"] == pytest.approx(snips(r, p, target[arms]), rel=1e-12)


def test_cell_resampling_matches_resampling_rows():
    """Poisson resampling over cells has the spread of resampling decisions one by one."""
    rng = np.random.default_rng(2)
    columns = np.column_stack([rng.integers(0, 2, 5000), rng.choice([0.5, 2.0, 4.0], 5000)])
    cells, counts = np.unique(columns, axis=0, return_counts=True)
    sums = resampled_sums(cells, counts.astype(float), rng=rng, n_boot=4000)
    rows = np.array([columns[rng.integers(0, 5000, 5000)].sum(axis=0) for _ in range(4000)])
    assert sums.mean(axis=0) == pytest.approx(columns.sum(axis=0), rel=0.01)
    # The Poisson bootstrap adds the resample-size noise: the ratio's spread is what counts.
    ratio_cells = sums[:, 0] / sums[:, 1]
    ratio_rows = rows[:, 0] / rows[:, 1]
    assert ratio_cells.std() == pytest.approx(ratio_rows.std(), rel=0.08)


def test_intervals_cover_the_truth_at_the_stated_level():
    """90% intervals over 200 Thompson-logged runs of 2,000 decisions each."""
    seeds, level = 200, 0.90
    target = np.array([0.1, 0.1, 0.2, 0.6])
    truths = {
        "uniform": float(RATES.mean()),
        "current": float(target @ RATES),
        "arm": float(RATES[3]),
    }
    hits = {name: {"ips": 0, "snips": 0} for name in truths}
    lift_hits = 0
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        arms, p, r = thompson_log(rng, 2000)
        n = r.size
        log = EvaluationLog(r, p, np.full(n, 0.25), np.ones(n))
        targets = [
            Target("current", target[arms], np.ones(n, dtype=bool), {}),
            Target("arm", (arms == 3).astype(float), np.ones(n, dtype=bool), {}),
        ]
        result = evaluate_log(log, targets, rng=rng, n_boot=300, level=level)
        for name, truth in truths.items():
            for estimator in ("ips", "snips"):
                figure = result["off_policy"][name][estimator]
                hits[name][estimator] += figure["ci_low"] <= truth <= figure["ci_high"]
        # The lift's truth: what this log's allocations were expected to earn, minus uniform.
        expected_policy = float(np.mean(RATES[arms]))
        difference = result["lift"]["difference"]
        lift_hits += (
            difference["ci_low"] <= expected_policy - truths["uniform"] <= difference["ci_high"]
        )
    for name, by_estimator in hits.items():
        for estimator, count in by_estimator.items():
            assert 0.82 <= count / seeds <= 0.97, (name, estimator, count / seeds)
    assert 0.82 <= lift_hits / seeds <= 0.98, lift_hits / seeds
