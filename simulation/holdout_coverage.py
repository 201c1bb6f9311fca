"""How often the holdout's lift interval covers the true lift, over simulated runs.

Each run: a population of units (each with its own propensity to click, so one unit's sends
are correlated), held out by the service's own rule (`service.deciding.holdout.in_holdout`
on a random unit hash), several sends per unit; served units get arms by Thompson sampling
over the arms' running counts (the policy adapts, as the real one does), held-out units
always get the control. The estimate is the product's (`bandits.holdout.holdout_lift`). The
true lift is the mean click probability of the served decisions minus the population's mean
click probability on the control arm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandits.holdout import holdout_lift
from service.deciding.holdout import in_holdout

RATES = (0.030, 0.036, 0.042, 0.026)  # the control first


@dataclass(frozen=True)
class CoverageResult:
    runs: int
    level: float
    covered: int
    mean_true_lift: float
    mean_estimate: float

    @property
    def coverage(self) -> float:
        return self.covered / self.runs


def one_run(
    rng: np.random.Generator, *, units: int = 4000, sends: int = 6, share: float = 0.2
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """True lift, and per-unit (successes, decisions) for served and held-out units."""
    rates = np.array(RATES)
    propensity = rng.gamma(2.0, 0.5, size=units)  # mean 1, a unit's own click propensity
    hashes = [f"{int(x):032x}" for x in rng.integers(0, 2**63, size=units)]
    held = np.array([in_holdout(h, share) for h in hashes])
    successes = np.zeros(units)
    alpha, beta = np.ones(len(rates)), np.ones(len(rates))
    served_probability: list[float] = []
    for _ in range(sends):
        # Thompson sampling on the counts so far: one draw per served unit this send.
        draws = rng.beta(alpha, beta, size=(units, len(rates)))
        arms = np.where(held, 0, draws.argmax(axis=1))
        probability = np.minimum(1.0, propensity * rates[arms])
        clicks = rng.random(units) < probability
        successes += clicks
        served_probability.extend(probability[~held])
        for arm in range(len(rates)):
            mine = (arms == arm) & ~held
            alpha[arm] += clicks[mine].sum()
            beta[arm] += (~clicks[mine]).sum()
    control = float(np.mean(np.minimum(1.0, propensity * rates[0])))
    true_lift = float(np.mean(served_probability)) - control
    decisions = np.full(units, float(sends))
    return true_lift, successes[~held], decisions[~held], successes[held], decisions[held]


def coverage(runs: int = 400, *, level: float = 0.90, seed: int = 14) -> CoverageResult:
    rng = np.random.default_rng(seed)
    covered = 0
    truths, estimates = [], []
    for _ in range(runs):
        truth, s_served, n_served, s_held, n_held = one_run(rng)
        lift = holdout_lift(s_served, n_served, s_held, n_held, level=level)
        assert lift is not None
        covered += lift.ci_low <= truth <= lift.ci_high
        truths.append(truth)
        estimates.append(lift.lift)
    return CoverageResult(runs, level, covered, float(np.mean(truths)), float(np.mean(estimates)))


def main() -> None:  # pragma: no cover - the bench entry point
    for level in (0.90, 0.95):
        result = coverage(level=level)
        print(  # noqa: T201
            f"level {level:.0%}: the interval covered the true lift in {result.covered} of "
            f"{result.runs} runs ({result.coverage:.1%}); mean true lift "
            f"{result.mean_true_lift:.4%}, mean estimate {result.mean_estimate:.4%}"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
